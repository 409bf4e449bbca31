"""The CPU work of reading one settled file, done in worker processes: read every frame, measure its
quality, level it and make the model's input.

Why processes: Python runs one thread's bytecode at a time, and this work is many small numpy steps,
so two threads measuring quality did 1.25 x the work of one (processes: 1.7 x, on the same 2 cores).
A reader library that crashes on a corrupt file also takes down one worker, not the service. The model stays in the
service: a worker gets the model's input pipeline as a plain function and its settings, and returns
numpy arrays (PyTorch is loaded in a worker only if a scan must be resized).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from afmwatch.errors import AfmwatchError
from afmwatch.examine import ReadResult, ReadTask, read_file

__all__ = ["ReadResult", "ReadTask", "ReaderCrashed", "ReaderProcesses", "read_file"]

PARENT_CHECK_SECONDS = 1.0


class ReaderCrashed(AfmwatchError):
    """The worker process reading a file died (a reader library crashed, or the system killed it)."""


def _start_worker(log_level: str, service: int) -> None:
    """In each worker: one thread for any numeric library (one worker per core already), leave
    SIGINT/SIGTERM to the service, which drains its work and then shuts the workers down, and exit
    if the service dies without doing so (kill -9, out of memory): a worker would otherwise wait
    for work forever, holding its memory. `service` is the service's PID, passed in rather than read
    here: a worker still starting when the service died is already re-parented, and would watch its
    new parent forever."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.getppid() != service:
        os._exit(0)
    threading.Thread(target=_exit_with_parent, args=(service,), name="afmwatch-parent-watch", daemon=True).start()
    from afmwatch.log import configure_logging

    configure_logging(log_level, json_lines=True)


def _exit_with_parent(parent: int, interval_s: float = PARENT_CHECK_SECONDS) -> None:
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent:  # re-parented: the service is gone
            os._exit(0)


def _warm_up(_: int) -> int:
    """Import the readers and quality metrics now, so the first file does not wait for them."""
    import afmwatch.quality
    import afmwatch.readers  # noqa: F401

    time.sleep(0.05)  # long enough that one worker does not take every warm-up call
    return os.getpid()


class ReaderProcesses:
    """A pool of `count` worker processes that run `read_file`; replaced whole if a worker dies.
    The workers are started and warmed up here, before the service says it is ready."""

    def __init__(self, count: int, log_level: str = "info"):
        self.count = count
        self.log_level = log_level
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the service has threads running, and a forked copy of their locks can hang
        pool = ProcessPoolExecutor(
            self.count,
            mp_context=get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.log_level, os.getpid()),
        )
        list(pool.map(_warm_up, range(self.count)))
        return pool

    def read(self, task: ReadTask) -> ReadResult:
        """`read_file(task)` in a worker; ScanError and other exceptions come back as raised there;
        ReaderCrashed if the worker died (every file in flight then gets another attempt)."""
        with self._lock:
            pool = self._pool
        try:
            return pool.submit(read_file, task).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:  # the first thread to notice replaces it
                    _end(pool)
                    self._pool = self._new_pool()
            raise ReaderCrashed(
                "the reader process died while reading the file (a crash in a reader "
                "library, or the system ran out of memory)"
            ) from None

    def close(self, *, wait: bool = True) -> None:
        """Shut the workers down after the reads in hand (`wait`), or kill them now (a read that
        never ends, say a FIFO, must not keep the service from exiting)."""
        with self._lock:
            if wait:
                self._pool.shutdown(wait=True, cancel_futures=True)
            else:
                _end(self._pool)


def _end(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's workers and shut it down without waiting. The executor's own clean-up of a broken
    pool only sends SIGTERM, which the workers ignore (the service drains first), and then waits for
    them forever: one leaked worker per crash, and a service that never exits (at exit Python joins
    the executor's thread)."""
    workers = list((pool._processes or {}).values())  # the executor keeps no public list
    for worker in workers:
        if worker.is_alive():
            worker.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.join(5.0)  # reaped: no zombie left
