"""One lifecycle for every daemon stage (settler, reader pool, inference worker, actor), as watchdog's
`BaseThread` and huey's consumer give each of theirs: `start`, `stop`, `alive`, `join`, and the same
`stage_died` log line, with the traceback, when a stage's loop raises.

A stage is one or more threads running the same loop (`run`) over the shared `Runtime`. A stage fed
by a queue ends when a thread takes STOP from it, so that what was queued before is finished first;
the service stops the stages in the order the work flows, each after the one that feeds it has ended.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import structlog

from afmwatch.daemon.runtime import Runtime

log = structlog.get_logger("afmwatch.stage")

STOP = None  # on a stage's input queue: the thread that takes it finishes its loop


def put_until(target: queue.Queue, item: Any, deadline: float) -> bool:
    """Put `item` on a bounded queue, waiting for room until `deadline` (time.monotonic()); True if put."""
    while time.monotonic() < deadline:
        try:
            target.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


class Stage:
    """`count` threads named `name-0`, `name-1`, ... (or one thread named `name` when `count` is None),
    each running `run` until it returns. `inbox` is the queue the stage takes its work from, if any."""

    # a loop that has not come round (`beat`) for this long counts as hung; None: it may wait for work
    # (or for room on the next queue) indefinitely, and only its threads' liveness counts
    stall_seconds: float | None = None

    def __init__(self, runtime: Runtime, name: str, *, count: int | None = None, inbox: queue.Queue | None = None):
        self.runtime = runtime
        self.name = name
        self.count = count
        self.inbox = inbox
        self.threads: list[threading.Thread] = []
        self.heartbeat = time.monotonic()

    def run(self) -> None:
        """One thread's loop; returns when the stage is stopped."""
        raise NotImplementedError

    def start(self) -> None:
        names = [self.name] if self.count is None else [f"{self.name}-{n}" for n in range(self.count)]
        for name in names:
            thread = threading.Thread(target=self._main, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self, deadline: float) -> None:
        """Ask every thread to finish the work in hand and end: one STOP per thread on `inbox`, after
        what is queued already (waiting for room until `deadline`, a time.monotonic())."""
        if self.inbox is not None:
            for _ in self.threads:
                put_until(self.inbox, STOP, deadline)

    def join(self, timeout: float) -> bool:
        """Wait for every thread (at most `timeout` seconds in all); True if all have ended."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)

    def alive(self, within_seconds: float | None = None) -> bool:
        """A thread is running and, with a limit (`within_seconds`, else `stall_seconds`), a loop came
        round within it; the service stops the systemd watchdog pings when a stage is not alive."""
        limit = within_seconds if within_seconds is not None else self.stall_seconds
        running = any(thread.is_alive() for thread in self.threads)
        return running and (limit is None or time.monotonic() - self.heartbeat < limit)

    def beat(self) -> None:
        """A loop came round (called by `run` each time)."""
        self.heartbeat = time.monotonic()

    def _main(self) -> None:
        try:
            self.run()
        except Exception:  # a bug in a stage's loop: said once, loudly, and the watchdog pings stop
            log.exception("stage_died", stage=self.name, thread=threading.current_thread().name)
