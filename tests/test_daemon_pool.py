"""The reader pool under a real service: a reader process killed with kill -9 is replaced (not leaked),
the file it was reading is read again, and SIGTERM still ends the service within its drain timeout,
leaving no reader process behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from daemon_support import (
    Daemon,
    assert_each_input_exactly_once,
    processed_count,
    stage_scans,
    tiny_model,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow


def _children(pid: int) -> set[int]:
    """The service's live reader processes (spawned workers, not multiprocessing's resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid") == str(pid) and "\nState:\tZ" not in status and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_a_reader_killed_with_kill_9_is_replaced_not_leaked_and_sigterm_still_ends_the_service(tmp_path):
    model = tiny_model(tmp_path / "tiny.safetensors")
    config = write_config(tmp_path, model, workers={"reader_processes": True, "drain_timeout_seconds": 20.0})
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    expected = stage_scans(staging, [f"k{i:02d}.tif" for i in range(16)], 700)
    daemon = Daemon(config).wait_ready()
    try:
        first = wait_until(lambda: len(_children(daemon.process.pid)) == 2 and _children(daemon.process.pid))
        for name in list(expected)[:8]:
            (staging / name).replace(inbox / name)
        wait_until(lambda: processed_count(out) >= 1, interval=0.01, what="reading under way")
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not _alive(victim), what="the killed reader gone")
        for name in list(expected)[8:]:
            (staging / name).replace(inbox / name)
        wait_until(lambda: processed_count(out) >= len(expected), what="every scan sorted after the kill")
        readers = wait_until(lambda: len(_children(daemon.process.pid)) == 2 and _children(daemon.process.pid))
        assert victim not in readers, "the killed reader was replaced"
        assert len(_children(daemon.process.pid)) == 2, "no reader process leaked"
        all_readers = first | readers
    finally:
        code = daemon.terminate(timeout=20.0 + 60.0)  # the drain timeout and a generous margin
    assert code == 0
    wait_until(lambda: not any(_alive(pid) for pid in all_readers), what="no reader outliving the service")
    assert_each_input_exactly_once(out, inbox, expected)
