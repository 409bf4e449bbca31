"""Exactly once across crashes: kill -9 at random moments during a burst, and SIGTERM draining."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path

import pytest
from daemon_support import (
    Daemon,
    processed_count,
    scan_bytes_file,
    sha256,
    sidecars,
    sorted_files,
    wait_until,
    write_config,
)

from afmwatch.daemon.sidecar import sidecar_path, validate

pytestmark = pytest.mark.slow


def _stage(staging: Path, names: list[str], first_seed: int) -> dict[str, str]:
    return {name: sha256(scan_bytes_file(staging / name, first_seed + i, size=48)) for i, name in enumerate(names)}


def _assert_each_input_exactly_once(out: Path, inbox: Path, expected: dict[str, str]) -> None:
    files = sorted_files(out)
    names = [f.name for f in files]
    assert sorted(names) == sorted(expected), "every input in exactly one place, none twice, none lost"
    for path in files:
        assert sha256(path) == expected[path.name], f"{path} was modified"
        sidecar = json.loads(sidecar_path(path).read_text())
        validate(sidecar)
        assert sidecar["sha256"] == expected[path.name] and sidecar["final_path"] == str(path)
    assert len(sidecars(out)) == len(expected), "exactly one sidecar per input"
    assert not [p for p in inbox.rglob("*") if p.is_file()], "nothing left behind in the watch folder"
    assert not list(out.rglob("*.part")), "no temp files left behind"


def test_kill_9_at_random_moments_then_restart_processes_every_input_exactly_once(tmp_path, model):
    config = write_config(
        tmp_path,
        model,
        settle={"settle_seconds": 0.2},
        workers={"batch_size": 4, "max_batch_wait_ms": 20, "queue_size": 8},
    )
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    rounds, per_round = 10, 8
    expected: dict[str, str] = {}
    rng = random.Random(8)
    for round_ in range(rounds):
        names = [f"r{round_:02d}-{i:02d}.tif" for i in range(per_round)]
        expected.update(_stage(staging, names, 100 * round_))
        daemon = Daemon(config).wait_ready()
        for name in names:  # a burst, the daemon catching up with the previous rounds too
            (staging / name).replace(inbox / name)
        done_before = processed_count(out)
        if rng.random() < 0.8:  # mostly once it is busy (reading, classifying, moving, writing sidecars)
            wait_until(
                lambda before=done_before: processed_count(out) > before, interval=0.01, what="the burst under way"
            )
        time.sleep(rng.uniform(0.0, 0.4))
        daemon.kill()
    daemon = Daemon(config).wait_ready()
    try:
        wait_until(lambda: processed_count(out) >= len(expected), timeout=180, what="all inputs sorted after restart")
        time.sleep(1.0)
    finally:
        assert daemon.terminate() == 0
    _assert_each_input_exactly_once(out, inbox, expected)
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
    assert states.get("done", 0) + states.get("failed", 0) == len(expected)
    assert set(states) <= {"done", "failed", "vanished"}


def test_sigterm_drains_work_in_flight_and_exits_0(tmp_path, model):
    config = write_config(
        tmp_path,
        model,
        settle={"settle_seconds": 0.2},
        workers={"batch_size": 4, "max_batch_wait_ms": 20, "queue_size": 64},
    )
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    expected = _stage(staging, [f"s{i:02d}.tif" for i in range(24)], 5000)
    daemon = Daemon(config).wait_ready()
    for name in expected:
        (staging / name).replace(inbox / name)
    wait_until(lambda: processed_count(out) >= 1, interval=0.01, what="processing under way")
    assert daemon.terminate() == 0
    assert daemon.events("daemon_stopped")[0]["drained"] is True
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
    assert not {"settled", "processing", "acting"} & set(states), "work in flight was finished, not dropped"
    sorted_now = {f.name for f in sorted_files(out)}
    waiting = {p.name for p in inbox.iterdir()}
    assert sorted_now | waiting == set(expected) and not sorted_now & waiting
    assert all(sha256(inbox / name) == expected[name] for name in waiting)  # untouched, for the next start
    daemon = Daemon(config).wait_ready()  # and the next start finishes the rest
    try:
        wait_until(lambda: processed_count(out) >= len(expected), what="the rest sorted")
    finally:
        assert daemon.terminate() == 0
    _assert_each_input_exactly_once(out, inbox, expected)
