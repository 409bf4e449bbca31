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


def test_a_dying_stage_tells_the_service_by_name():
    stage = Broken(None, "afmwatch-broken")
    told: list[str] = []
    stage.on_died = told.append
    with capture_logs():
        stage.start()
        assert stage.join(30)
    assert told == ["afmwatch-broken"]


class Pair(Stage):
    """Two threads: one keeps coming round, the other takes one item and hangs on it."""

    stall_seconds = 0.3

    def __init__(self, inbox: queue.Queue):
        super().__init__(None, "afmwatch-pair", count=2, inbox=inbox)
        self.release = threading.Event()

    def run(self) -> None:
        while not self.release.is_set():
            self.beat()
            try:
                self.inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            self.release.wait(30)  # the hung one


def test_one_hung_thread_makes_its_stage_not_alive_though_the_other_keeps_coming_round():
    inbox: queue.Queue = queue.Queue()
    stage = Pair(inbox)
    stage.start()
    try:
        time.sleep(0.5)
        assert stage.alive(), "both threads waiting for work: nothing to do is not a stall"
        inbox.put(1)
        deadline = time.monotonic() + 30
        while stage.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not stage.alive()
    finally:
        stage.release.set()
        assert stage.join(30)


class Feeder(Stage):
    stall_seconds = 0.6

    def __init__(self, target: queue.Queue):
        super().__init__(None, "afmwatch-feed")
        self.target = target

    def run(self) -> None:
        for n in range(3):
            self.hand_on(self.target, n)


def test_waiting_for_room_on_the_next_queue_is_not_a_stall():
    target: queue.Queue = queue.Queue(maxsize=1)
    stage = Feeder(target)
    stage.start()
    time.sleep(1.5)  # blocked on the full queue for five times its stall limit
    assert stage.alive()
    assert [target.get(timeout=30) for _ in range(3)] == [0, 1, 2]
    assert stage.join(30)
