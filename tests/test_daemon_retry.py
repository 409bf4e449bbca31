"""Sorting that fails is retried in place while the service runs, and a full journal pauses intake:
real services, a real tmpfs filled and remounted read-only (root only: mount needs it), a scan the
service may not move. Each case ends with every input sorted exactly once, byte-identical, with a
sidecar naming its sha256, without a restart; no timed assertion (generous polling deadlines)."""

from __future__ import annotations

import contextlib
import errno
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_support import (
    Daemon,
    assert_each_input_exactly_once,
    journal_states,
    metric_samples,
    processed_count,
    sha256,
    sorted_files,
    stage_scans,
    wait_until,
    write_config,
)

from afmwatch.commands.status import collect
from afmwatch.config import load_config

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted on `folder` (skips the test where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its file system is full; returns it (delete it to make room)."""
    filler = folder / ".filler"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: every failing write raises here
        for block in (1 << 16, 1 << 12):  # what a 64 KiB block could not take, 4 KiB ones still might
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * block)
    with pytest.raises(OSError) as raised, open(folder / ".probe", "wb", buffering=0) as probe:
        probe.write(b"\0" * 8192)
    assert raised.value.errno == errno.ENOSPC
    (folder / ".probe").unlink(missing_ok=True)
    return filler


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        return metric_samples(response.read().decode())


def arrive(staging: Path, inbox: Path, names: list[str]) -> None:
    for name in names:
        (staging / name).replace(inbox / name)


def test_output_full_then_read_only_scans_wait_said_so_and_are_sorted_when_the_cause_goes(tmp_path, model):
    port = free_port()
    with tmpfs(tmp_path / "out", "2m") as out:
        config = write_config(
            tmp_path, model, metrics_port=port, sort_retry={"backoff_seconds": 0.2, "max_backoff_seconds": 1.0}
        )
        inbox, staging = tmp_path / "inbox", tmp_path / "staging"
        expected = stage_scans(staging, [f"f{i:02d}.tif" for i in range(12)], 900)
        names = sorted(expected)
        settings = load_config(config)
        daemon = Daemon(config).wait_ready()
        try:
            filler = fill(out)
            arrive(staging, inbox, names[:6])
            wait_until(
                lambda: collect(settings)["sort_waiting"] == {"output folder full": 6}, what="6 scans waiting (full)"
            )
            assert "output folder full: 6 scans waiting" in collect(settings)["trouble"]
            scraped = scrape(port)
            assert scraped['afmwatch_sort_waiting{cause="output folder full"}'] == 6
            assert scraped["afmwatch_sort_waiting"] == 6 and scraped["afmwatch_journal_unavailable"] == 0
            assert daemon.events("sort_waiting") and daemon.process.poll() is None
            assert all((inbox / name).exists() for name in names[:6]), "waiting scans stay in the watch folder"
            filler.unlink()  # room again: sorted without a restart
            wait_until(lambda: processed_count(out) >= 6, what="the 6 sorted once there is room")

            remount(out, "ro")
            arrive(staging, inbox, names[6:])
            wait_until(
                lambda: collect(settings)["sort_waiting"] == {"output folder read-only": 6},
                what="6 scans waiting (read-only)",
            )
            scraped = scrape(port)
            assert scraped['afmwatch_sort_waiting{cause="output folder read-only"}'] == 6
            assert scraped["afmwatch_sort_waiting"] == 6
            remount(out, "rw")
            wait_until(lambda: processed_count(out) >= 12, what="all 12 sorted once writable again")
            wait_until(lambda: not collect(settings)["sort_waiting"], what="nothing waiting any more")
            scraped = scrape(port)
            assert scraped["afmwatch_sort_waiting"] == 0
            assert not [key for key in scraped if key.startswith("afmwatch_sort_waiting{")], "no cause left"
        finally:
            remount(out, "rw")
            assert daemon.terminate() == 0
        assert_each_input_exactly_once(out, inbox, expected)
        assert set(journal_states(tmp_path / "state")) == {"done"}


def _immovable(path: Path) -> Iterator[None]:
    """Make `path` impossible to move or remove, also for root (the immutable attribute)."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a file immutable here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_scan_that_can_never_be_moved_ends_failed_in_place_and_the_next_start_is_clean(tmp_path, model):
    config = write_config(
        tmp_path, model, sort_retry={"backoff_seconds": 0.1, "max_backoff_seconds": 0.3, "max_attempts": 3}
    )
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    expected = stage_scans(staging, [f"p{i:02d}.tif" for i in range(6)], 1300)
    stuck = staging / "stuck.tif"
    stuck_hash = stage_scans(staging, ["stuck.tif"], 1400)["stuck.tif"]
    stuck.replace(inbox / "stuck.tif")
    with contextlib.contextmanager(_immovable)(inbox / "stuck.tif"):
        daemon = Daemon(config).wait_ready()
        try:
            arrive(staging, inbox, sorted(expected))
            wait_until(lambda: processed_count(out) >= len(expected), what="the movable scans sorted")
            wait_until(lambda: daemon.events("scan_failed_in_place"), what="the immovable scan given up")
            (event,) = daemon.events("scan_failed_in_place")
            assert "no permission" in event["reason"] and "tried 3 times" in event["reason"]
            assert daemon.process.poll() is None, "the service goes on"
        finally:
            assert daemon.terminate() == 0
        states = journal_states(tmp_path / "state")
        assert states == {"done": len(expected), "failed": 1}, "nothing left in acting"
        assert sha256(inbox / "stuck.tif") == stuck_hash, "the scan stays where it is, untouched"
        assert "stuck.tif" not in {p.name for p in sorted_files(out)}
        assert not list(out.rglob("stuck*")), "no copy, sidecar or preview of it in the output"
        again = Daemon(config).wait_ready()  # the next start: nothing to reconcile, nothing processed again
        try:
            wait_until(lambda: again.events("daemon_ready"), what="ready")
        finally:
            assert again.terminate() == 0
        assert not again.events("reconcile_waiting") and not again.events("scan_sorted")
        assert journal_states(tmp_path / "state") == states
    (inbox / "stuck.tif").unlink()
    assert_each_input_exactly_once(out, inbox, expected)


def test_a_full_journal_disk_pauses_intake_and_the_service_resumes_when_there_is_room(tmp_path, model):
    with tmpfs(tmp_path / "state", "8m") as state:
        config = write_config(tmp_path, model)
        inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
        expected = stage_scans(staging, [f"j{i:02d}.tif" for i in range(10)], 1700)
        names = sorted(expected)
        settings = load_config(config)
        daemon = Daemon(config).wait_ready()
        try:
            arrive(staging, inbox, names[:4])
            wait_until(lambda: processed_count(out) >= 4, what="the first 4 sorted")
            filler = fill(state)
            arrive(staging, inbox, names[4:])
            wait_until(lambda: daemon.events("journal_unavailable"), what="the journal found full")
            assert "intake paused" in collect(settings)["trouble"]
            assert daemon.process.poll() is None, "the service does not exit"
            filler.unlink()
            wait_until(lambda: processed_count(out) >= len(expected), what="every scan sorted once there is room")
            assert daemon.events("journal_available")
        finally:
            assert daemon.terminate() == 0
        assert_each_input_exactly_once(out, inbox, expected)
        assert set(journal_states(state)) == {"done"}
