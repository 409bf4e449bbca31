"""One service per journal: a second `afmwatch run` on the same state folder refuses to start (exit 75,
naming the first one's PID) and the first goes on sorting every scan exactly once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from daemon_support import (
    REPO,
    Daemon,
    assert_each_input_exactly_once,
    journal_states,
    processed_count,
    stage_scans,
    tiny_model,
    wait_until,
    write_config,
)

from afmwatch.daemon.lock import AlreadyRunning, StateLock


def test_the_lock_is_exclusive_names_its_holder_and_is_free_again_once_released(tmp_path):
    first = StateLock(tmp_path / "state")
    first.acquire()
    with pytest.raises(AlreadyRunning) as raised:
        StateLock(tmp_path / "state").acquire()
    assert raised.value.pid == os.getpid() and f"pid {os.getpid()}" in str(raised.value)
    first.release()
    second = StateLock(tmp_path / "state")
    second.acquire()  # released: a restart is never blocked by the file left behind
    second.release()


@pytest.mark.slow
def test_a_second_run_on_the_same_journal_refuses_with_exit_75_and_the_first_sorts_everything(tmp_path):
    model = tiny_model(tmp_path / "tiny.safetensors")
    config = write_config(tmp_path, model)
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    expected = stage_scans(staging, [f"l{i:02d}.tif" for i in range(12)], 300)
    daemon = Daemon(config).wait_ready()
    try:
        for name in list(expected)[:6]:
            (staging / name).replace(inbox / name)
        second = subprocess.run(
            [sys.executable, "-m", "afmwatch", "run", "--config", str(config)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 75, second.stderr
        assert f"pid {daemon.process.pid}" in second.stderr and "already running" in second.stderr
        for name in list(expected)[6:]:
            (staging / name).replace(inbox / name)
        wait_until(lambda: processed_count(out) >= len(expected), what="every scan sorted by the first service")
    finally:
        assert daemon.terminate() == 0
    assert_each_input_exactly_once(out, inbox, expected)
    assert set(journal_states(tmp_path / "state")) == {"done"}, "no scan counted twice or as vanished"
