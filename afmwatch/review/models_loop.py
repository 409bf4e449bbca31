"""From corrections to a better model, for the review page: how many scans people have checked since the
active model was trained, a background job that trains a candidate on them and compares it with the
active model, and promotion and rollback through the model store.

The job is a separate process (`afmwatch.training.candidate`), started in its own session so that it
outlives the request and a page reload; its progress and result are one JSON file in the state folder
(`candidates/job.json`). One job at a time: the job holds an exclusive lock on `candidates/job.lock`
for its whole life (inherited from the page, which took it before starting the process), so "is a job
running" is asked of the kernel, not of a file that a killed process could leave behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from afmwatch.config import Config
from afmwatch.durable import make_dirs
from afmwatch.errors import AfmwatchError
from afmwatch.names import text_path
from afmwatch.networks import store
from afmwatch.networks.model_file import read_metadata
from afmwatch.training.candidate import read_job, write_job

CANDIDATES = "candidates"
JOB_NAME = "job.json"
LOCK_NAME = "job.lock"
LABELS = ("good", "bad")
SCOPES = ("checked", "sorted")  # the scans people checked, or everything in good/ and bad/
TRAIN_OPTIONS = {"arch": str, "epochs": int, "folds": int, "seed": int, "batch_size": int, "metrics_features": str}
# the options the page may set, with their types; the rest are `afmwatch train`'s defaults


class LoopRefused(AfmwatchError):
    """A model-loop action that cannot be done as asked; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _folder(state_folder: Path) -> Path:
    return Path(state_folder) / CANDIDATES


# -- what the active model has not seen yet -------------------------------------------------------
def active_model(config: Config) -> Path:
    """The model the daemon runs (`model`, else the store's active one, else the shipped default)."""
    return store.resolve_model(config.model, config.model_folder)


def trained_at(model: Path) -> float | None:
    """When the model file was made (its metadata's `created`), as epoch seconds."""
    created = read_metadata(model).get("created")
    if not created:
        return None
    return dt.datetime.fromisoformat(str(created)).timestamp()


def checked_since(db: sqlite3.Connection, since: float | None) -> int:
    """Scans a person checked (confirmed or corrected, not undone) after `since` (None: ever)."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "reviews" not in tables:
        return 0
    row = db.execute(
        "SELECT COUNT(DISTINCT file_id) FROM reviews WHERE state = 'done' AND undone = 0 AND undoes IS NULL AND at > ?",
        (since if since is not None else 0.0,),
    ).fetchone()
    return int(row[0])


def checked_files(db: sqlite3.Connection, output_root: Path) -> list[tuple[Path, str]]:
    """(where it is now, its label) of every checked scan that sits in good/ or bad/ of `output_root`."""
    rows = db.execute(
        "SELECT files.id, files.final_path FROM files WHERE files.id IN "
        "(SELECT file_id FROM reviews WHERE state = 'done' AND undone = 0 AND undoes IS NULL) ORDER BY files.id"
    ).fetchall()
    found = []
    root = output_root.resolve()
    for _, final_path in rows:
        if not final_path:
            continue
        path = text_path(final_path)
        try:
            label = path.resolve().relative_to(root).parts[0]
        except (ValueError, IndexError, OSError):
            continue
        if label in LABELS and path.is_file() and not path.is_symlink():
            found.append((path, label))
    return found


def link_checked(files: list[tuple[Path, str]], folder: Path) -> Path:
    """A training folder (good/, bad/) of hard links to the checked scans, so `afmwatch train` sees
    exactly those; a symbolic link where the state folder is on another file system."""
    for label in LABELS:
        make_dirs(folder / label)
    for n, (path, label) in enumerate(files):
        link = folder / label / f"{n:06d}-{path.name}"
        try:
            os.link(path, link)
        except OSError:
            link.symlink_to(path)
    return folder


# -- the background job ---------------------------------------------------------------------------
@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[int | None]:
    """The job lock's descriptor if it was free (held until the block ends), else None."""
    make_dirs(folder)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def job_status(state_folder: Path) -> dict[str, Any]:
    """The latest job as its file tells it, with `running`; a job whose process ended without finishing
    (killed, machine restarted) is reported failed."""
    folder = _folder(state_folder)
    path = folder / JOB_NAME
    if not path.is_file():
        return {"state": "none", "running": False}
    job = read_job(path)
    with _lock(folder) as free:
        running = free is None
    if not running and job.get("state") not in ("done", "failed"):
        job.update(state="failed", error="the training process ended before it finished")
    return {**job, "running": running}


def start_training(
    config: Config,
    config_path: Path,
    state_folder: Path,
    output_root: Path,
    db: sqlite3.Connection,
    request: dict[str, Any],
) -> dict[str, Any]:
    """Start a candidate job (LoopRefused: one is running, or the request is wrong); returns its status."""
    scope = request.get("scope", "checked")
    if scope not in SCOPES:
        raise LoopRefused(f"scope must be one of {', '.join(SCOPES)}", 400)
    options: dict[str, Any] = {}
    for name, kind in TRAIN_OPTIONS.items():
        if request.get(name) is not None:
            value = request[name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise LoopRefused(f"{name} must be {'an integer' if kind is int else 'a string'}", 400)
            options[name] = value
    options.setdefault("folds", 5)
    if options["folds"] < 2:
        raise LoopRefused("folds must be at least 2: the comparison is cross-validated", 400)
    folder = _folder(state_folder)
    with _lock(folder) as fd:
        if fd is None:
            raise LoopRefused("a candidate is being trained already; wait for it (GET /api/models/training)")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        name = f"candidate-{stamp}"
        work = folder / name
        if scope == "checked":
            files = checked_files(db, output_root)
            if not files:
                raise LoopRefused("no checked scans in good/ or bad/ yet: check some scans first", 400)
            data = link_checked(files, work / "data")
        else:
            data = output_root
        make_dirs(work)
        job = {
            "id": name,
            "state": "starting",
            "scope": scope,
            "data": str(data),
            "out": str(work / f"{name}.safetensors"),
            "active": str(active_model(config)),
            "config": str(config_path),
            "options": {**options, "name": name, "threads": 1},
            "command": f"afmwatch train --data {data} (review page: train a candidate)",
            "created_at": time.time(),
            "log": str(work / "train.log"),
        }
        job_path = folder / JOB_NAME
        write_job(job_path, job)
        with open(work / "train.log", "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "afmwatch.training.candidate", str(job_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),  # the lock passes to the job and lasts as long as it runs
                start_new_session=True,  # outlives the page's request and the page itself
                close_fds=True,
            )
        # reaped by a thread of its own: no zombie left behind in a long-running page
        threading.Thread(target=process.wait, name="afmwatch-candidate-wait", daemon=True).start()
    return {**job, "pid": process.pid, "running": True}


def candidate_path(state_folder: Path) -> Path:
    """The finished candidate's model file (LoopRefused when there is none)."""
    status = job_status(state_folder)
    if status.get("state") != "done":
        raise LoopRefused("no finished candidate to promote", 404)
    return Path(status["out"])
