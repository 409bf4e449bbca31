"""The review page's JSON API and its security: listing, one scan, corrections, undo, rules what-if,
token, CSRF, Host, path tricks, two people on one scan, read-only and the network login."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest
import yaml
from review_support import sorted_output
from starlette.testclient import TestClient

from afmwatch.daemon.sidecar import preview_path, sidecar_path, validate
from afmwatch.review.app import create_app
from afmwatch.review.context import ReviewContext
from afmwatch.review.security import Guard, load_or_create_token
from afmwatch.review.whatif import parse_rules, rule_to_dict
from afmwatch.rules import DEFAULT_RULES
from afmwatch.training.data import collect_files

BASE = "http://127.0.0.1:8787"


def _client(config: Path, *, read_only: bool = False, host: str = "127.0.0.1", **kwargs) -> tuple[TestClient, str]:
    token = load_or_create_token(config.parent / "state")
    ctx = ReviewContext.open(config, token=token, read_only=read_only)
    app = create_app(ctx, Guard.for_server(token, host, 8787, kwargs.pop("allow", ())))
    return TestClient(app, base_url=BASE, **kwargs), token


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return sorted_output(tmp_path_factory.mktemp("review") / "site", n=12)


@pytest.fixture
def site(pristine, tmp_path) -> Path:
    """A fresh copy of the sorted output for each test (corrections change it)."""
    import shutil

    target = tmp_path / "site"
    shutil.copytree(pristine.parent, target, symlinks=True)
    text = (target / "config.yaml").read_text().replace(str(pristine.parent), str(target))
    (target / "config.yaml").write_text(text)
    with sqlite3.connect(target / "state" / "journal.sqlite3") as db:
        for table, column in (("files", "path"), ("files", "final_path"), ("sidecars", "json")):
            db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (str(pristine.parent), str(target)))
    for sidecar in (target / "out").rglob("*.afmwatch.json"):
        sidecar.write_text(sidecar.read_text().replace(str(pristine.parent), str(target)))
    return target / "config.yaml"


def _files(out: Path, name: str) -> list[str]:
    """Every file of scan `name` (scan, sidecar, preview) below out/, as decision/relative paths."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob(f"{name}*"))


def _scan(client: TestClient, decision: str) -> dict:
    return client.get("/api/scans", params={"decision": decision, "limit": 1}).json()["scans"][0]


# -- reading ----------------------------------------------------------------------------------------
def test_lists_every_sorted_scan_newest_or_least_certain_first_with_filters(site):
    client, _ = _client(site)
    listed = client.get("/api/scans", params={"limit": 500}).json()
    assert listed["total"] == 12 and len(listed["scans"]) == 12
    ids = [s["id"] for s in listed["scans"]]
    assert ids == sorted(ids, reverse=True)
    first = listed["scans"][0]
    assert set(first) >= {"id", "path", "decision", "label", "confidence", "reasons", "reviewed", "preview_url"}
    uncertain = client.get("/api/scans", params={"order": "uncertain", "limit": 500}).json()["scans"]
    distance = [abs(s["p_bad"] - 0.5) for s in uncertain]
    assert distance == sorted(distance)
    for decision in ("good", "bad", "review"):
        part = client.get("/api/scans", params={"decision": decision}).json()
        assert part["total"] == sum(s["decision"] == decision for s in listed["scans"])
        assert all(s["decision"] == decision for s in part["scans"])
    scars = client.get("/api/scans", params={"reason": "scar_fraction"}).json()
    assert scars["total"] >= 1 and all("scars on" in s["reasons"][0] for s in scars["scans"])
    sample = client.get("/api/scans", params={"folder": "sample-a"}).json()
    assert sample["total"] == 6 and all("/sample-a/" in s["path"] for s in sample["scans"])
    page = client.get("/api/scans", params={"limit": 5, "offset": 10}).json()
    assert page["total"] == 12 and [s["id"] for s in page["scans"]] == ids[10:]
    assert client.get("/api/scans", params={"reviewed": "yes"}).json()["total"] == 0
    assert client.get("/api/scans", params={"from": "2999-01-01"}).json()["total"] == 0
    assert client.get("/api/scans", params={"decision": "maybe"}).status_code == 400


def test_one_scan_has_metrics_beside_thresholds_probabilities_reasons_and_links(site):
    client, _ = _client(site)
    bad = client.get("/api/scans", params={"reason": "scar_fraction"}).json()["scans"][0]
    scan = client.get(f"/api/scans/{bad['id']}").json()
    assert scan["probabilities"]["bad"] == pytest.approx(bad["p_bad"])
    scar = next(m for m in scan["metrics"] if m["metric"] == "scar_fraction")
    assert any(r["fired"] and r["decision"] == "bad" and r["threshold"] == 0.2 for r in scar["rules"])
    assert scan["reasons"][0].startswith("scars on")
    assert client.get(scan["preview_url"]).headers["content-type"] == "image/png"
    sidecar = client.get(scan["sidecar_url"]).json()
    assert sidecar["final_path"] == scan["path"]
    assert client.get(scan["original_url"]).content == Path(scan["path"]).read_bytes()
    assert client.get("/api/scans/9999").status_code == 404
    summary = client.get("/api/summary").json()
    assert summary["counts"]["all"]["total"] == 12 and sum(h["scans"] for h in summary["per_hour"]) == 12
    assert len(summary["trends"]["scar_fraction"]) == 12
    for page in ("/", "/grid", f"/scan/{bad['id']}", "/rules"):
        assert client.get(page).status_code == 200


# -- correcting -------------------------------------------------------------------------------------
def test_a_correction_moves_scan_sidecar_and_preview_records_it_and_makes_a_label(site):
    client, token = _client(site)
    out = site.parent / "out"
    scan = _scan(client, "bad")
    name, below = Path(scan["path"]).name, Path(scan["path"]).relative_to(out / "bad")
    response = client.post(
        f"/api/scans/{scan['id']}/decision",
        json={"decision": "good", "from": "bad", "who": "ana"},
        headers={"X-Afmwatch-Token": token},
    )
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["decision"] == "good" and moved["original_decision"] == "bad" and moved["reviewed"]
    target = out / "good" / below
    assert _files(out, name) == sorted(
        p.relative_to(out).as_posix() for p in (target, sidecar_path(target), preview_path(target))
    )
    sidecar = json.loads(sidecar_path(target).read_text())
    validate(sidecar)
    assert sidecar["decision"] == "bad" and sidecar["final_path"] == str(target)
    assert sidecar["preview"] == str(preview_path(target))
    assert sidecar["review"]["who"].startswith("ana") and (sidecar["review"]["from"], sidecar["review"]["to"]) == (
        "bad",
        "good",
    )
    with sqlite3.connect(site.parent / "state" / "journal.sqlite3") as db:
        rows = db.execute("SELECT file_id, from_decision, to_decision, undone, state FROM reviews").fetchall()
        files_row = db.execute("SELECT decision, final_path FROM files WHERE id = ?", (scan["id"],)).fetchone()
    assert rows == [(scan["id"], "bad", "good", 0, "done")]
    assert files_row == ("good", str(target))
    labels = {f.path.name: f.label for f in collect_files(out)[0]}
    assert labels[name] == 0  # CLASS_NAMES[0] == "good": the corrected folder is the training label
    folders = {f.path.relative_to(out).parts[0] for f in collect_files(out)[0]}
    assert folders == {"good", "bad"}  # review/ and failed/ are not labels
    assert client.get("/api/scans", params={"reviewed": "yes"}).json()["total"] == 1


def test_undo_moves_it_back_and_marks_the_correction_undone(site):
    client, token = _client(site)
    out = site.parent / "out"
    scan = _scan(client, "review")
    headers = {"X-Afmwatch-Token": token}
    client.post(f"/api/scans/{scan['id']}/decision", json={"decision": "bad"}, headers=headers)
    undone = client.post(f"/api/scans/{scan['id']}/undo", json={}, headers=headers)
    assert undone.status_code == 200 and undone.json()["decision"] == "review"
    original = Path(scan["path"])
    assert original.exists() and sidecar_path(original).exists() and preview_path(original).exists()
    assert not list((out / "bad").rglob(original.name + "*"))
    sidecar = json.loads(sidecar_path(original).read_text())
    assert "review" not in sidecar and sidecar["final_path"] == str(original)
    with sqlite3.connect(site.parent / "state" / "journal.sqlite3") as db:
        rows = db.execute("SELECT to_decision, undone, undoes FROM reviews ORDER BY id").fetchall()
    assert rows == [("bad", 1, None), ("review", 0, 1)]
    again = client.post(f"/api/scans/{scan['id']}/undo", headers=headers)  # no body, as `curl -X POST` sends
    assert again.status_code == 409 and "no correction to undo" in again.json()["error"]


def test_several_at_once_and_a_check_that_agrees(site):
    client, token = _client(site)
    headers = {"X-Afmwatch-Token": token}
    goods = client.get("/api/scans", params={"decision": "good"}).json()["scans"]
    ids = [s["id"] for s in goods]
    result = client.post("/api/decisions", json={"ids": ids, "decision": "review"}, headers=headers).json()
    assert result["changed"] == len(ids) and all(r["ok"] for r in result["results"])
    assert client.get("/api/scans", params={"decision": "good"}).json()["total"] == 0
    same = client.post(f"/api/scans/{ids[0]}/decision", json={"decision": "review"}, headers=headers).json()
    assert same["correction"]["changed"] is False and same["decision"] == "review" and same["reviewed"]


def test_two_people_on_one_scan_get_one_result_and_a_clear_message(site):
    client, token = _client(site)
    out = site.parent / "out"
    scan = _scan(client, "review")
    headers = {"X-Afmwatch-Token": token}
    answers: dict[str, object] = {}

    def press(decision: str) -> None:
        answers[decision] = client.post(
            f"/api/scans/{scan['id']}/decision", json={"decision": decision, "from": "review"}, headers=headers
        )

    threads = [threading.Thread(target=press, args=(d,)) for d in ("good", "bad")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers.values())  # type: ignore[attr-defined]
    assert codes == [200, 409]
    loser = next(a for a in answers.values() if a.status_code == 409)  # type: ignore[attr-defined]
    assert "no longer review" in loser.json()["error"]
    winner = next(d for d, a in answers.items() if a.status_code == 200)  # type: ignore[attr-defined]
    name = Path(scan["path"]).name
    assert [Path(p).parts[0] for p in _files(out, name)] == [winner] * 3


def test_what_if_lists_the_scans_a_threshold_would_change_and_saving_keeps_the_config_valid(site):
    client, token = _client(site)
    headers = {"X-Afmwatch-Token": token}
    site.write_text("# the lab's settings\n" + site.read_text())
    assert "scar_fraction" in client.get("/rules").text

    proposed = [rule_to_dict(r) for r in DEFAULT_RULES]
    unchanged = client.post("/api/rules/whatif", json={"rules": proposed}, headers=headers).json()
    assert unchanged["changed"] == 0 and unchanged["considered"] == 12
    lines = next(r for r in proposed if r["metric"] == "line_artefact_ratio")
    lines["threshold"] = 0.0  # every scan with line artefacts at all goes to review at least
    stricter = client.post("/api/rules/whatif", json={"rules": proposed}, headers=headers).json()
    goods = client.get("/api/scans", params={"decision": "good"}).json()["total"]
    assert stricter["changed"] == goods == stricter["transitions"]["good -> review"] > 0
    assert {s["now"] for s in stricter["scans"]} == {"good"} and "line noise" in stricter["scans"][0]["reason"]
    broken = [dict(proposed[0], metric="no_such_metric")]
    assert client.post("/api/rules/whatif", json={"rules": broken}, headers=headers).status_code == 422
    assert client.post("/api/rules", json={"rules": broken}, headers=headers).status_code == 422
    saved = client.post("/api/rules", json={"rules": proposed}, headers=headers)
    assert saved.status_code == 200 and "not running" in saved.json()["daemon"]
    text = site.read_text()
    assert text.startswith("# the lab's settings") and yaml.safe_load(text)["rules"][-1]["threshold"] == 0.0
    from afmwatch.config import load_config

    assert load_config(site).rules == parse_rules(proposed)


# -- security ---------------------------------------------------------------------------------------
def test_changes_need_the_token_from_this_origin_on_this_host(site):
    client, token = _client(site)
    scan = _scan(client, "review")
    url = f"/api/scans/{scan['id']}/decision"
    body = {"decision": "good"}
    assert client.post(url, json=body).status_code == 403
    assert client.post(url, json=body, headers={"X-Afmwatch-Token": "guess"}).status_code == 403
    cross = {"X-Afmwatch-Token": token, "Origin": "http://evil.example"}
    assert client.post(url, json=body, headers=cross).status_code == 403
    assert client.post(url, json=body, headers={"X-Afmwatch-Token": token, "Origin": "null"}).status_code == 403
    rebound = {"X-Afmwatch-Token": token, "Host": "evil.example:8787"}
    assert client.post(url, json=body, headers=rebound).status_code == 400
    assert client.get("/api/scans", headers={"Host": "evil.example:8787"}).status_code == 400
    assert client.get("/", headers={"Host": "127.0.0.1:9999"}).status_code == 400
    assert Path(scan["path"]).exists()  # nothing moved
    ours = {"X-Afmwatch-Token": token, "Origin": BASE}
    assert client.post(url, json=body, headers=ours).status_code == 200
    assert client.get("/").text.count(token) == 1  # the page carries the token for its own script
    mode = (site.parent / "state" / "review-token").stat().st_mode & 0o777
    assert mode == 0o600


def test_read_only_serves_the_page_without_actions(site):
    client, token = _client(site, read_only=True)
    scan = _scan(client, "review")
    response = client.post(
        f"/api/scans/{scan['id']}/decision", json={"decision": "good"}, headers={"X-Afmwatch-Token": token}
    )
    assert response.status_code == 403 and "read-only" in response.json()["error"]
    page = client.get(f"/scan/{scan['id']}").text
    assert "data-mark" not in page and Path(scan["path"]).exists()


def test_away_from_loopback_reading_needs_a_login(site):
    client, token = _client(site, host="0.0.0.0", allow=("127.0.0.1",), follow_redirects=False)
    assert client.get("/").status_code == 303 and client.get("/").headers["location"].startswith("/login")
    assert client.get("/api/scans").status_code == 401
    assert client.get("/files/1/preview").status_code == 303
    assert token not in client.get("/login").text
    assert client.post("/login", data={"token": "wrong", "next": "/"}).status_code == 403
    assert client.post("/login", data={"token": token, "next": "/grid"}).status_code == 303
    assert client.get("/grid").status_code == 200 and client.get("/api/scans").status_code == 200
    fresh, _ = _client(site, host="0.0.0.0", allow=("127.0.0.1",))
    assert fresh.get("/api/scans", headers={"X-Afmwatch-Token": token}).status_code == 200


def test_path_tricks_never_leave_the_output_folder(site, tmp_path):
    client, token = _client(site)
    headers = {"X-Afmwatch-Token": token}
    out = site.parent / "out"
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    for url in (
        "/files/..%2F..%2F..%2Fetc%2Fpasswd/preview",
        "/files/1/..%2F..%2Fsecret",
        "/files/1/%2e%2e%2fsidecar",
        "/api/scans/..%2F1",
        "/api/scans/1%2F..%2F2",
        "/static/..%2F..%2Fcontext.py",
        "/static/../app.py",
    ):
        response = client.get(url)
        assert response.status_code in (400, 404), url
        assert "not yours" not in response.text and "ReviewContext" not in response.text
    # a link put in place of a preview, and a linked folder: refused, nothing read or moved through them
    scans = client.get("/api/scans", params={"limit": 500}).json()["scans"]
    first, second = scans[0], scans[1]
    preview = preview_path(Path(first["path"]))
    preview.unlink()
    preview.symlink_to(secret)
    response = client.get(first["preview_url"])
    assert response.status_code == 403 and "not yours" not in response.text
    linked = out / "good" / "linked"
    linked.symlink_to(tmp_path, target_is_directory=True)
    moved_away = tmp_path / Path(second["path"]).name
    os.replace(second["path"], moved_away)
    with sqlite3.connect(site.parent / "state" / "journal.sqlite3") as db:
        db.execute("UPDATE files SET final_path = ? WHERE id = ?", (str(linked / moved_away.name), second["id"]))
    decided = client.post(f"/api/scans/{second['id']}/decision", json={"decision": "bad"}, headers=headers)
    assert decided.status_code == 403 and "link" in decided.json()["error"]
    assert client.get(f"/files/{second['id']}/original").status_code == 403
    with sqlite3.connect(site.parent / "state" / "journal.sqlite3") as db:
        db.execute(
            "UPDATE files SET final_path = ? WHERE id = ?", (str(out / "good" / ".." / ".." / "x.tif"), first["id"])
        )
    assert client.get(f"/files/{first['id']}/original").status_code == 403
    assert moved_away.exists() and secret.read_text() == "not yours"
