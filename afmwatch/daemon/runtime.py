"""What the daemon's stages share: one object handed to each of them, instead of ten constructor
arguments and closures over the service."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

from afmwatch.config import Config
from afmwatch.daemon.faults import Faults
from afmwatch.daemon.journal import Journal
from afmwatch.daemon.metrics import Metrics
from afmwatch.daemon.notify import Notifier
from afmwatch.daemon.waiting import SortWaiting
from afmwatch.networks.protocol import ClassifierModel


@dataclass
class Runtime:
    """The running daemon's shared state, made once by the service at start.

    Two things change while the daemon runs, each in one place: SIGHUP's reload replaces `config`
    (`Service.reload_config`), a newly promoted model or the move to the CPU after a CUDA
    out-of-memory error replaces `classifier` (`InferenceWorker`). Stages read both from here each
    time they need them and keep no copy. The queues between the stages are bounded by
    `workers.queue_size` (fixed at start).
    """

    config: Config
    classifier: ClassifierModel  # networks.classifier.load_classifier's model, of any family
    journal: Journal
    metrics: Metrics
    notifier: Notifier
    device: str
    faults: Faults = field(default_factory=Faults)  # test seams, off unless the environment sets them
    sort_waiting: SortWaiting = field(default_factory=SortWaiting)  # act threads -> retrier: plans to carry out again
    read_queue: queue.Queue = field(init=False)  # settler -> reader pool: Arrival
    infer_queue: queue.Queue = field(init=False)  # reader pool -> inference worker: Job
    act_queue: queue.Queue = field(init=False)  # reader pool, inference worker -> actor: Job

    def __post_init__(self) -> None:
        size = self.config.workers.queue_size
        self.read_queue = queue.Queue(maxsize=size)
        self.infer_queue = queue.Queue(maxsize=size)
        self.act_queue = queue.Queue(maxsize=size)
