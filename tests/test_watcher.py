"""The native observer: every way a scan arrives is seen, and the daemon's own reading of a scan is not."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from daemon_support import wait_until

from afmwatch.config import WatchConfig
from afmwatch.daemon import watcher


@pytest.fixture
def observed(tmp_path, monkeypatch):
    """A native observer on tmp_path/inbox that records what it touches and every event it dispatches."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    touched: set[Path] = set()
    dispatched: list[str] = []
    lock = threading.Lock()
    dispatch = watcher._Handler.dispatch

    def recording(self, event):
        with lock:
            dispatched.append(event.event_type)
        dispatch(self, event)

    monkeypatch.setattr(watcher._Handler, "dispatch", recording)

    def touch(path: Path) -> None:
        with lock:
            touched.add(path)

    observer = watcher.start_observer(inbox, WatchConfig(observer="native"), touch)
    try:
        yield inbox, touched, dispatched, lock
    finally:
        observer.stop()
        observer.join()


def test_every_way_a_scan_arrives_is_seen(observed, tmp_path):
    inbox, touched, _, _ = observed
    (inbox / "written.tif").write_bytes(b"II*\x00" + bytes(1000))
    staging = inbox / ".renamed.tif.tmp"
    staging.write_bytes(b"II*\x00" + bytes(1000))
    os.replace(staging, inbox / "renamed.tif")  # rename into place
    outside = tmp_path / "session"
    outside.mkdir()
    (outside / "inside.tif").write_bytes(b"II*\x00" + bytes(1000))
    os.replace(outside, inbox / "session")  # a folder moved in whole
    expected = {inbox / "written.tif", inbox / "renamed.tif", inbox / "session" / "inside.tif"}
    wait_until(lambda: expected <= touched, what=f"all of {sorted(p.name for p in expected)} seen")
    assert not any(path.name.startswith(".") for path in touched)


def test_reading_and_moving_a_scan_out_is_not_delivered_to_the_handler(observed, tmp_path):
    inbox, touched, dispatched, lock = observed
    scan = inbox / "scan.tif"
    scan.write_bytes(b"II*\x00" + bytes(1000))
    wait_until(lambda: scan in touched, what="the new scan seen")
    time.sleep(0.3)  # the write's own events have arrived
    with lock:
        dispatched.clear()
    for _ in range(5):  # what the daemon does with a settled scan: open, read, close; then sort it away
        with open(scan, "rb") as handle:
            handle.read()
    os.replace(scan, tmp_path / "scan.tif")
    time.sleep(1.0)  # inotify delivers within milliseconds; a moved-out file's event is held 0.5 s
    with lock:
        events = list(dispatched)
    assert [e for e in events if e in ("opened", "closed_no_write", "deleted")] == [], events
