"""The review page's model loop: scans checked since the active model was trained, a candidate trained
in a background process on the checked scans and compared with the active model, promote, rollback."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from daemon_support import wait_until
from loop_support import labelled_folder, train_logistic, write_scan
from starlette.applications import Starlette
from starlette.testclient import TestClient

from afmwatch.daemon.journal import Journal, State
from afmwatch.networks import store
from afmwatch.review import models_loop
from afmwatch.review.context import ReviewContext
from afmwatch.review.loop_routes import loop_routes
from afmwatch.training import candidate as candidate_module


@pytest.fixture
def lab(tmp_path) -> dict:
    """An output root with 16 sorted scans (12 checked by a person), a store whose active model was
    trained on labels the wrong way round, and the review context over them."""
    out, state, models = tmp_path / "out", tmp_path / "state", tmp_path / "models"
    models.mkdir()
    wrong = train_logistic(labelled_folder(tmp_path / "wrong", n=16, seed=5, swap=True), tmp_path / "wrong.safetensors")
    assert store.promote(wrong, models)
    created = models_loop.trained_at(models / store.ACTIVE_NAME)
    rng = np.random.default_rng(11)
    journal = Journal(state)
    ids = []
    for i in range(16):
        lost = i % 2 == 1
        label = "bad" if lost else "good"
        scan = write_scan(out / label, f"k{i:03d}", lost, rng, tmp_path / "retrace", absolute=True)
        entry = journal.add(str(tmp_path / "inbox" / scan.name), 1, 1)
        journal.update(entry, state=State.DONE, decision=label, final_path=str(scan))
        ids.append(entry)
    journal.close()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"output_root": str(out), "state_folder": str(state), "model_folder": str(models)})
    )
    ctx = ReviewContext.open(config, token="t" * 32)
    with ctx.connect() as db:
        for n, file_id in enumerate(ids[:12]):
            at = created - 3600 if n == 0 else time.time()  # one check before the active model was trained
            db.execute(
                "INSERT INTO reviews (file_id, who, at, from_decision, to_decision, state, plan) "
                "VALUES (?, 'test', ?, 'good', 'good', 'done', '{}')",
                (file_id, at),
            )
    client = TestClient(Starlette(routes=loop_routes(ctx)))
    return {"ctx": ctx, "client": client, "models": models, "wrong": wrong, "out": out}


def test_checked_since_training_counts_the_scans_people_checked_after_the_active_model(lab):
    answer = lab["client"].get("/api/models")
    assert answer.status_code == 200
    body = answer.json()
    assert body["checked_since_training"]["count"] == 11  # 12 checked, one of them before the model
    assert body["active"]["name"] == "wrong" and body["active"]["active"] is True
    assert [entry["name"] for entry in body["history"]] == ["wrong"]
    assert body["training"] == {"state": "none", "running": False}


def test_one_candidate_job_at_a_time_and_a_dead_job_is_reported_failed(lab):
    ctx, client = lab["ctx"], lab["client"]
    folder = ctx.state_folder / models_loop.CANDIDATES
    folder.mkdir(parents=True)
    fd = os.open(folder / models_loop.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running job holds it
    try:
        answer = client.post("/api/models/train", json={"arch": "metrics-logistic"})
        assert answer.status_code == 409 and "being trained already" in answer.json()["error"]
    finally:
        os.close(fd)
    (folder / models_loop.JOB_NAME).write_text(json.dumps({"id": "x", "state": "training"}))
    status = client.get("/api/models/training").json()
    assert status["state"] == "failed" and status["running"] is False and "ended before it finished" in status["error"]
    assert client.post("/api/models/train", json={"folds": 1}).status_code == 400
    assert client.post("/api/models/train", json={"epochs": "many"}).status_code == 400
    assert client.post("/api/models/train", content=b"[1]").status_code == 400


@pytest.mark.slow
def test_train_a_candidate_compare_promote_and_roll_back(lab):
    client, models = lab["client"], lab["models"]
    started = client.post("/api/models/train", json={"arch": "metrics-logistic", "folds": 3})
    assert started.status_code == 202, started.text
    assert started.json()["running"] is True and started.json()["scope"] == "checked"

    def finished():
        status = client.get("/api/models/training").json()
        return status if status["state"] in ("done", "failed") else None

    status = wait_until(finished, what="the candidate job")
    assert status["state"] == "done", Path(status["log"]).read_text()[-3000:]
    assert status["report"]["data"]["count"] == 12  # the checked scans only
    assert status["step"]["event"] in candidate_module.PROGRESS_EVENTS  # progress came from the training log
    comparison = status["comparison"]
    assert comparison["scans"] == 12
    candidate_accuracy, active_accuracy = (comparison[m]["balanced_accuracy"] for m in ("candidate", "active"))
    assert comparison["candidate"]["folds"] == 3 and candidate_accuracy > 0.5
    assert comparison["active"]["name"] == "wrong" and active_accuracy < 0.5 < candidate_accuracy
    changes = comparison["diff"]["changes"]
    assert changes and comparison["diff"]["changed"] == len(changes)
    assert all(c["before"] != c["after"] for c in changes)
    assert {Path(c["path"]).name.split("-", 1)[1] for c in changes} <= {f"k{i:03d}.tif" for i in range(12)}
    assert sorted(p.name for p in (lab["out"]).rglob("*.tif")) == [f"k{i:03d}.tif" for i in range(16)]  # none moved

    promoted = client.post("/api/models/promote", json={"model": "candidate"})
    assert promoted.status_code == 200, promoted.text
    candidate = Path(status["out"])
    assert (models / store.ACTIVE_NAME).read_bytes() == candidate.read_bytes()
    assert (models / candidate.name).is_file()  # the store keeps it
    overview = client.get("/api/models").json()
    assert overview["active"]["name"] == status["id"] and overview["checked_since_training"]["count"] == 0

    rolled = client.post("/api/models/rollback", json={})
    assert rolled.status_code == 200 and rolled.json()["active"] == "wrong.safetensors"
    assert (models / store.ACTIVE_NAME).read_bytes() == lab["wrong"].read_bytes()
    assert [(e["action"], e["name"]) for e in rolled.json()["history"]] == [
        ("promote", "wrong"),
        ("promote", status["id"]),
        ("rollback", "wrong"),
    ]
    missing = client.post("/api/models/rollback", json={"model": "no-such-model"})
    assert missing.status_code == 409 and "no model of that name" in missing.json()["error"]


def test_through_the_page_every_model_change_needs_the_token_and_read_only_refuses_it(lab):
    from afmwatch.review.app import create_app
    from afmwatch.review.security import Guard

    ctx = lab["ctx"]
    base = "http://127.0.0.1:8787"
    page = TestClient(create_app(ctx, Guard.for_server(ctx.token, "127.0.0.1", 8787)), base_url=base)
    assert page.get("/api/models").json()["active"]["name"] == "wrong"  # reading needs no token on loopback
    assert page.get("/api/alerts").status_code == 200
    before = (lab["models"] / store.ACTIVE_NAME).read_bytes()
    for path, body in (
        ("/api/models/rollback", {"model": "wrong"}),
        ("/api/models/train", {}),
        ("/api/models/promote", {"model": "wrong"}),
    ):
        refused = page.post(path, json=body)
        assert refused.status_code == 403 and "X-Afmwatch-Token" in refused.json()["error"]
        forged = page.post(path, json=body, headers={"X-Afmwatch-Token": "x" * 32})
        assert forged.status_code == 403
    assert not (ctx.state_folder / models_loop.CANDIDATES / models_loop.JOB_NAME).exists()  # nothing started
    allowed = page.post("/api/models/rollback", json={"model": "wrong"}, headers={"X-Afmwatch-Token": ctx.token})
    assert allowed.status_code == 200 and (lab["models"] / store.ACTIVE_NAME).read_bytes() == before

    import dataclasses

    read_only = dataclasses.replace(ctx, read_only=True)
    viewer = TestClient(create_app(read_only, Guard.for_server(ctx.token, "127.0.0.1", 8787)), base_url=base)
    refused = viewer.post("/api/models/rollback", json={}, headers={"X-Afmwatch-Token": ctx.token})
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]


def test_the_models_page_shows_the_store_and_the_checked_count(lab):
    page = lab["client"].get("/models")
    assert page.status_code == 200
    assert "Active model: wrong" in page.text and '<strong id="checked-count">11</strong>' in page.text
    assert "/static/loop_models.js" in page.text and "Train a candidate" in page.text
    assert '<a href="/models" class="on">Models</a>' in page.text  # the menu shows where you are
