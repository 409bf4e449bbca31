"""Reading in worker processes: the same results as reading in the service, bad files reported with
their reason, and a worker that dies costs one attempt, not the service or the next file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from daemon_support import scan_bytes_file

from afmwatch.config import ReadingConfig
from afmwatch.daemon.reading import ReaderCrashed, ReaderProcesses, ReadTask, read_file
from afmwatch.networks.pipeline import make_pipeline, to_array
from afmwatch.scan import ScanError

SPEC = make_pipeline(1, "standardise", resize=48, crop=32)


def die(scan, argument):  # a reader library crashing the process (picklable by name)
    os._exit(3)


@pytest.fixture(scope="module")
def processes():
    pool = ReaderProcesses(2, "warning")
    yield pool
    pool.close()


def test_scan_errors_keep_file_and_reason_across_processes():
    error = pickle.loads(pickle.dumps(ScanError(Path("/x/a.nid"), "the file ends early")))
    assert isinstance(error, ScanError) and error.path == Path("/x/a.nid") and error.reason == "the file ends early"


def test_a_reader_process_gives_what_reading_in_the_service_gives(tmp_path, processes, samples):
    for path in (scan_bytes_file(tmp_path / "a.tif", seed=1), samples / "nid" / "circles.nid"):
        task = ReadTask(path, ReadingConfig(), to_array, SPEC)
        there, here = processes.read(task), read_file(task)
        assert [f.shape for f in there.frames] == [f.shape for f in here.frames]
        assert np.array_equal(there.frames[0].height, here.frames[0].height)
        assert there.quality == here.quality and there.quality["sq"] is not None
        assert all(np.array_equal(a, b) for a, b in zip(there.inputs, here.inputs))
        assert there.inputs[0].shape == (1, 32, 32) and set(there.seconds) == {"read", "quality", "preprocess"}


def test_a_bad_file_raises_its_scan_error_in_the_service(tmp_path, processes):
    bad = tmp_path / "cut.tif"
    bad.write_bytes(scan_bytes_file(tmp_path / "whole.tif", seed=2).read_bytes()[:300])
    with pytest.raises(ScanError) as raised:
        processes.read(ReadTask(bad, ReadingConfig(), to_array, SPEC))
    assert raised.value.path == bad and raised.value.reason


def test_a_dying_reader_process_is_replaced_and_the_next_file_is_read(tmp_path, processes):
    path = scan_bytes_file(tmp_path / "b.tif", seed=3)
    with pytest.raises(ReaderCrashed, match="reader process died"):
        processes.read(ReadTask(path, ReadingConfig(), die, None))
    result = processes.read(ReadTask(path, ReadingConfig(), to_array, SPEC))
    assert result.inputs[0].shape == (1, 32, 32)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie has exited


def test_reader_processes_exit_when_the_service_is_killed(tmp_path):
    """kill -9 of the service (or the system killing it) must not leave its workers behind."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import time\nfrom afmwatch.daemon.reading import ReaderProcesses\n"
        "pool = ReaderProcesses(2, 'warning')\nprint(*pool._pool._processes, flush=True)\ntime.sleep(600)\n"
    )
    service = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    workers = [int(pid) for pid in service.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    service.send_signal(signal.SIGKILL)
    service.wait(30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)
