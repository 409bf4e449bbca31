"""The review page corrects scans whatever their names: a name that is not UTF-8, one with a backslash
and one too long for a plain sidecar name, each sorted by a real daemon, then moved by the page."""

from __future__ import annotations

import json
import os
from pathlib import Path

from daemon_support import (
    Daemon,
    processed_count,
    scan_bytes_file,
    sha256,
    sorted_files,
    tiny_model,
    wait_until,
    write_config,
)
from starlette.testclient import TestClient

from afmwatch.daemon.sidecar import preview_path, sidecar_path, validate
from afmwatch.names import path_text
from afmwatch.review.app import create_app
from afmwatch.review.context import ReviewContext
from afmwatch.review.security import Guard, load_or_create_token

NAMES = [os.fsdecode(b"odd\xff\xfe.tif"), "back\\slash.tif", "a" * 246 + ".tif"]


def test_scans_with_odd_names_are_corrected_with_their_sidecar_and_preview(tmp_path):
    model = tiny_model(tmp_path / "tiny.safetensors")
    config = write_config(tmp_path, model)
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    digests = {}
    daemon = Daemon(config).wait_ready()
    try:
        for i, name in enumerate(NAMES):
            staged = scan_bytes_file(staging / name, 40 + i)
            digests[name] = sha256(staged)
            os.replace(staged, inbox / name)
        wait_until(lambda: processed_count(out) == len(NAMES), what="the odd names sorted")
    finally:
        assert daemon.terminate() == 0
    token = load_or_create_token(tmp_path / "state")
    app = create_app(ReviewContext.open(config, token=token), Guard.for_server(token, "127.0.0.1", 8787, ()))
    client = TestClient(app, base_url="http://127.0.0.1:8787")
    listed = client.get("/api/scans", params={"limit": 50}).json()["scans"]
    assert len(listed) == len(NAMES)
    for scan in listed:
        before = next(p for p in sorted_files(out) if path_text(p) == scan["path"])
        decision = before.relative_to(out).parts[0]
        to = "good" if decision != "good" else "bad"
        response = client.post(
            f"/api/scans/{scan['id']}/decision",
            json={"decision": to, "from": decision, "who": "ana"},
            headers={"X-Afmwatch-Token": token},
        )
        assert response.status_code == 200, response.text
        target = out / to / before.name
        assert target.exists() and not os.path.lexists(before)
        assert sha256(target) == digests[before.name]
        assert preview_path(target).exists() and not os.path.lexists(preview_path(before))
        sidecar = json.loads(sidecar_path(target).read_bytes().decode("utf-8"))  # valid UTF-8 text
        validate(sidecar)
        assert sidecar["final_path"] == path_text(target) and sidecar["sidecar_path"] == path_text(sidecar_path(target))
        assert sidecar["review"]["to"] == to and not os.path.lexists(sidecar_path(before))
        assert client.get(f"/api/scans/{scan['id']}").json()["decision"] == to
        assert client.get(f"/scan/{scan['id']}").status_code == 200  # the page of one scan
        assert client.get(f"/files/{scan['id']}/original").content == target.read_bytes()
        assert client.get(f"/files/{scan['id']}/sidecar").json()["final_path"] == path_text(target)
    assert client.get("/grid").status_code == 200 and client.get("/").status_code == 200
    assert sorted(p.name for p in sorted_files(out)) == sorted(NAMES)
    assert not [p for p in Path(out).rglob("*") if p.is_file() and p.parent.name in ("bad", "review")]
