"""The lifecycle every daemon stage shares: queued work is finished before a stage ends, a stage whose
loop raises says so once (`stage_died`, with the traceback) and is no longer alive, and a stage with a
stall limit is alive only while its loop keeps coming round."""

from __future__ import annotations

import queue
import threading
import time

from structlog.testing import capture_logs

from afmwatch.daemon.stage import STOP, Stage


class Collector(Stage):
    """Takes items from its queue until STOP, keeping them."""

    def __init__(self, inbox: queue.Queue, count: int | None = None):
        super().__init__(None, "afmwatch-collect", count=count, inbox=inbox)
        self.taken: list[int] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        while True:
            self.beat()
            item = self.inbox.get()
            if item is STOP:
                return
            with self._lock:
                self.taken.append(item)


def test_a_stage_finishes_what_was_queued_before_it_stops():
    inbox: queue.Queue = queue.Queue(maxsize=4)
    stage = Collector(inbox, count=3)
    stage.start()
    assert [t.name for t in stage.threads] == ["afmwatch-collect-0", "afmwatch-collect-1", "afmwatch-collect-2"]
    for n in range(20):
        inbox.put(n)
    stage.stop(time.monotonic() + 30)
    assert stage.join(30) and not stage.alive()
    assert sorted(stage.taken) == list(range(20))


def test_a_single_thread_stage_is_named_after_the_stage():
    stage = Collector(queue.Queue())
    stage.start()
    assert [t.name for t in stage.threads] == ["afmwatch-collect"] and stage.alive()
    stage.stop(time.monotonic() + 30)
    assert stage.join(30)


class Broken(Stage):
    def run(self) -> None:
        raise ZeroDivisionError("a bug in the loop")


def test_a_stage_whose_loop_raises_logs_stage_died_and_is_not_alive():
    stage = Broken(None, "afmwatch-broken")
    with capture_logs() as logs:
        stage.start()
        assert stage.join(30)
    (event,) = [e for e in logs if e["event"] == "stage_died"]
    assert event["stage"] == "afmwatch-broken" and event["thread"] == "afmwatch-broken"
    assert event["log_level"] == "error" and event["exc_info"] is True  # rendered as the traceback
    assert not stage.alive()


class Stalling(Stage):
    stall_seconds = 0.3

    def __init__(self):
        super().__init__(None, "afmwatch-stall")
        self.release = threading.Event()

    def run(self) -> None:
        self.beat()
        self.release.wait(30)  # one item that takes far longer than the stall limit


def test_a_stage_with_a_stall_limit_is_alive_only_while_its_loop_comes_round():
    stage = Stalling()
    stage.start()
    try:
        assert stage.alive()
        time.sleep(0.5)
        assert not stage.alive() and stage.alive(within_seconds=30)
        assert any(t.is_alive() for t in stage.threads)  # hung, not dead
    finally:
        stage.release.set()
        assert stage.join(30)
