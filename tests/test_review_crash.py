"""A correction interrupted by kill -9 at each step ends exactly once: after the restart of `afmwatch
review` (or the daemon's start-up reconciliation) the scan, its sidecar and its preview are in the new
folder, once, and the journal says so. AFMWATCH_REVIEW_TEST_PAUSE stops the server after a step."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from review_support import Server, sorted_output

from afmwatch.config import load_config
from afmwatch.daemon.correct import correct
from afmwatch.daemon.journal import Journal
from afmwatch.daemon.reconcile import reconcile
from afmwatch.daemon.sidecar import preview_path, sidecar_path, validate

pytestmark = pytest.mark.slow


def _journal(site: Path) -> sqlite3.Connection:
    return sqlite3.connect(site / "state" / "journal.sqlite3")


def _first_bad(site: Path) -> tuple[int, Path]:
    with _journal(site) as db:
        row = db.execute("SELECT id, final_path FROM files WHERE decision = 'bad' ORDER BY id LIMIT 1").fetchone()
    return int(row[0]), Path(row[1])


def _exactly_once_in_good(site: Path, scan_id: int, before: Path) -> None:
    out = site / "out"
    after = out / "good" / before.relative_to(out / "bad")
    everywhere = sorted(p.relative_to(out).as_posix() for p in out.rglob(before.name + "*"))
    assert everywhere == sorted(
        p.relative_to(out).as_posix() for p in (after, sidecar_path(after), preview_path(after))
    )
    sidecar = json.loads(sidecar_path(after).read_text())
    validate(sidecar)
    assert sidecar["final_path"] == str(after) and sidecar["review"]["to"] == "good"
    with _journal(site) as db:
        assert db.execute("SELECT state, to_decision FROM reviews").fetchall() == [("done", "good")]
        assert db.execute("SELECT decision, final_path FROM files WHERE id = ?", (scan_id,)).fetchone() == (
            "good",
            str(after),
        )
        assert db.execute("SELECT decision, reviewed FROM scan_index WHERE id = ?", (scan_id,)).fetchone() == (
            "good",
            1,
        )
    assert not list(out.rglob("*.part"))


@pytest.mark.parametrize("step", ["planned", "moved", "written"])
def test_kill_9_during_a_correction_then_restart_finishes_it_exactly_once(tmp_path, step):
    config = sorted_output(tmp_path / "site", n=4, seed=5)
    site = config.parent
    scan_id, before = _first_bad(site)
    server = Server(config, pause=step)
    answers: list[object] = []

    def press_g() -> None:
        try:
            answers.append(
                httpx.post(
                    f"{server.url}/api/scans/{scan_id}/decision",
                    json={"decision": "good", "from": "bad"},
                    headers={"X-Afmwatch-Token": server.token},
                    timeout=120,
                )
            )
        except httpx.HTTPError as exc:  # the server dies under it
            answers.append(exc)

    thread = threading.Thread(target=press_g)
    thread.start()
    log = Path(server.log.name)
    deadline = time.monotonic() + 60
    while f"paused after {step}" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    server.kill()
    thread.join(30)
    assert answers and isinstance(answers[0], httpx.HTTPError)
    with _journal(site) as db:
        assert db.execute("SELECT state FROM reviews").fetchall() == [("moving",)]

    again = Server(config)  # the restart finishes the plan before it serves
    try:
        _exactly_once_in_good(site, scan_id, before)
        retried = httpx.post(
            f"{again.url}/api/scans/{scan_id}/decision",
            json={"decision": "good", "from": "bad"},
            headers={"X-Afmwatch-Token": again.token},
        )
        assert retried.status_code == 409 and "no longer bad" in retried.json()["error"]
        _exactly_once_in_good(site, scan_id, before)
    finally:
        again.stop()


class Killed(BaseException):
    """Stands in for kill -9 inside the test process: nothing after the step runs."""


def test_the_daemons_reconcile_finishes_an_interrupted_correction(tmp_path):
    config_path = sorted_output(tmp_path / "site", n=3, seed=7)
    site = config_path.parent
    config = load_config(config_path)
    scan_id, before = _first_bad(site)

    def crash(step: str) -> None:
        if step == "moved":
            raise Killed

    with pytest.raises(Killed):
        correct(site / "state", site / "out", scan_id, "good", "ana", expected_from="bad", pause=crash)
    journal = Journal(site / "state")
    try:
        counts = reconcile(journal, config)
    finally:
        journal.close()
    assert counts["corrections_finished"] == 1
    _exactly_once_in_good(site, scan_id, before)
