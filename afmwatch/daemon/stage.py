"""One lifecycle for every daemon stage (settler, reader pool, inference worker, actor, retrier), as
watchdog's `BaseThread` and huey's consumer give each of theirs: `start`, `stop`, `alive`, `join`, and
the same `stage_died` log line, with the traceback, when a stage's loop raises; the service then stops
with a non-zero exit status (`on_died`), so that systemd restarts it. A stage's own loop handles what
goes wrong with one file; only a bug in the loop itself gets here.

`alive` is what the systemd watchdog pings depend on: every thread of the stage is running and has
come round its loop (`beat`) within `stall_seconds`. A thread waiting for work, or for room on the
next queue (`hand_on`), keeps beating: waiting is not a stall, a read or a batch that never ends is.

A stage is one or more threads running the same loop (`run`) over the shared `Runtime`. A stage fed
by a queue ends when a thread takes STOP from it, so that what was queued before is finished first;
the service stops the stages in the order the work flows, each after the one that feeds it has ended.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
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
        self.heartbeat = time.monotonic()  # the latest beat of any thread
        self._beats: dict[int, float] = {}  # thread ident -> its latest beat
        self.on_died: Callable[[str], None] | None = None  # the service: stop, exit non-zero

    def run(self) -> None:
        """One thread's loop; returns when the stage is stopped."""
        raise NotImplementedError

    def start(self) -> None:
        self.heartbeat = time.monotonic()
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
        """Every thread is running and, with a limit (`within_seconds`, else `stall_seconds`), each came
        round its loop within it; the service stops the systemd watchdog pings when a stage is not alive."""
        limit = within_seconds if within_seconds is not None else self.stall_seconds
        if not self.threads or not all(thread.is_alive() for thread in self.threads):
            return False
        if limit is None:
            return True
        now = time.monotonic()
        return all(now - self._beats.get(thread.ident or 0, self.heartbeat) < limit for thread in self.threads)

    def beat(self) -> None:
        """This thread's loop came round (called by `run` each time, and while it waits)."""
        self.heartbeat = now = time.monotonic()
        self._beats[threading.get_ident()] = now

    def hand_on(self, target: queue.Queue, item: Any) -> None:
        """Put `item` on the next stage's bounded queue, beating while it waits for room (back-pressure
        from a slower stage is waiting, not a stall; that stage's own `alive` says if it hangs)."""
        while True:
            self.beat()
            try:
                target.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _main(self) -> None:
        try:
            self.run()
        except Exception:  # a bug in a stage's loop: said once, loudly; the service stops, exit non-zero
            log.exception("stage_died", stage=self.name, thread=threading.current_thread().name)
            if self.on_died is not None:
                self.on_died(self.name)
