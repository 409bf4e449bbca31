"""The inference worker: the one thread that owns the model and the device.

It forms batches dynamically: the first waiting frame starts a batch, which then fills for at most
`max_batch_wait_ms` or until `batch_size` frames (a burst is classified in full batches, a single
scan waits only milliseconds). A CUDA out-of-memory error halves the batch and retries; at batch
size one it moves the model to the CPU and says so. Between batches it pings the systemd watchdog
(a hung worker gets the service restarted) and looks for a newly promoted model.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from afmwatch.config import Config
from afmwatch.daemon.job import Job
from afmwatch.daemon.pool import preprocess
from afmwatch.daemon.runtime import Runtime
from afmwatch.daemon.stage import STOP, Stage
from afmwatch.networks.model_file import ModelError
from afmwatch.networks.protocol import ClassifierModel
from afmwatch.scan import ScanError

log = structlog.get_logger("afmwatch.worker")

MODEL_CHECK_SECONDS = 2.0
IDLE_TICK_SECONDS = 0.5


def model_path(config: Config) -> Path:
    """The model to run: `model`, else the active model of `model_folder`, else the shipped default."""
    from afmwatch.networks.store import resolve_model

    return resolve_model(config.model, config.model_folder)


def model_signature(path: Path | None) -> tuple | None:
    """What identifies a model file version on disk (cheap: no hashing)."""
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return (str(path), None, None)
    return (str(path), stat.st_size, stat.st_mtime_ns)


def load_checked(path: Path, device: str) -> ClassifierModel:
    """Load a classifier and run it on a probe scan; raises ModelError if anything is wrong."""
    from afmwatch.networks.families import load_classifier, probe

    classifier = load_classifier(path, device=device)
    try:
        prediction = probe(classifier)
    except (RuntimeError, ValueError, ScanError) as exc:
        raise ModelError(path, f"the model fails on a probe scan ({type(exc).__name__}: {exc})") from None
    if abs(sum(prediction.probabilities.values()) - 1.0) > 1e-3 or not 0.0 <= prediction.confidence <= 1.0:
        raise ModelError(path, f"the model gives invalid probabilities on a probe scan ({prediction.probabilities})")
    return classifier


def model_info(classifier: ClassifierModel) -> dict[str, Any]:
    return {
        "name": classifier.name,
        "arch": classifier.arch,
        "sha256": classifier.sha256,
        "device": str(classifier.device),
        "path": str(classifier.path),
    }


class InferenceWorker(Stage):
    """One thread: infer queue -> batches -> predictions -> act queue. It owns `runtime.classifier`:
    a hot reload or the move to the CPU replaces it there, then calls `on_model_change`. It pings
    the systemd watchdog while `healthy()` (every stage alive)."""

    inbox: queue.Queue  # always the runtime's infer queue
    stall_seconds = 600.0  # one batch, or loading and probing a promoted model: seconds

    def __init__(self, runtime: Runtime, *, on_model_change: Callable[[], None], healthy: Callable[[], bool]):
        super().__init__(runtime, "afmwatch-infer", inbox=runtime.infer_queue)
        self.on_model_change = on_model_change
        self.healthy = healthy
        self.max_batch: int | None = None  # lowered after a CUDA out-of-memory error
        self._backlog: deque[tuple[Job, int]] = deque()
        self._stopping = False
        self._signature = model_signature(Path(runtime.classifier.path))
        self._refused: tuple | None = None
        self._next_model_check = time.monotonic() + MODEL_CHECK_SECONDS

    def run(self) -> None:
        while True:
            self.beat()
            workers = self.runtime.config.workers
            limit = min(workers.batch_size, self.max_batch or workers.batch_size)
            batch = self._collect(limit, workers.max_batch_wait_ms / 1000.0)
            if batch:
                self._infer(batch)
            if self.healthy():
                self.runtime.notifier.watchdog()
            if self._stopping and not self._backlog:
                return
            if time.monotonic() >= self._next_model_check:
                self._next_model_check = time.monotonic() + MODEL_CHECK_SECONDS
                self.check_model()

    def _use(self, classifier: ClassifierModel) -> None:
        """Classify with `classifier` from now on (the whole daemon: it is the runtime's)."""
        self.runtime.classifier = classifier
        self.on_model_change()

    # -- batching ---------------------------------------------------------------------------------
    def _collect(self, limit: int, wait_s: float) -> list[tuple[Job, int]]:
        items: list[tuple[Job, int]] = []
        deadline = 0.0
        while len(items) < limit:
            if self._backlog:
                items.append(self._backlog.popleft())
                continue
            if self._stopping:
                break
            timeout = IDLE_TICK_SECONDS if not items else deadline - time.monotonic()
            if items and timeout <= 0:
                break
            try:
                job = self.inbox.get(timeout=timeout)
            except queue.Empty:
                break
            if job is STOP:
                self._stopping = True
                continue
            if not items:
                deadline = time.monotonic() + wait_s
            if not self._ready(job):
                continue
            job.add_time("wait", time.monotonic() - job.queued_at)
            job.predictions = [None] * len(job.inputs)
            self._backlog.extend((job, i) for i in range(len(job.inputs)))
        return items

    def _ready(self, job: Job) -> bool:
        """Inputs made for an older model are made again for the current one."""
        if job.preprocessed_by is self.runtime.classifier:
            return True
        try:
            preprocess(job, self.runtime.classifier)
            return True
        except ScanError as exc:
            job.failure = exc.reason
        except Exception as exc:  # the new model's pipeline fails on this scan: costs the scan only
            log.exception("preprocess_failed", file=str(job.path))
            job.failure = f"preprocessing failed ({type(exc).__name__}: {exc})"
        self.hand_on(self.runtime.act_queue, job)
        return False

    # -- inference --------------------------------------------------------------------------------
    def _infer(self, batch: list[tuple[Job, int]]) -> None:
        import torch

        started = time.monotonic()
        x = torch.stack([job.inputs[i] for job, i in batch])
        metrics = [job.quality for job, _ in batch]  # the first frame's, for every frame (as classify does)
        try:
            predictions = self._predict(x, metrics)
        except Exception as exc:  # a model error costs these scans, not the service; logged with traceback
            log.exception("inference_failed", batch=len(batch))
            predictions = [None] * len(batch)
            for job, _ in batch:
                job.failure = job.failure or f"classification failed ({type(exc).__name__}: {exc})"
        elapsed = time.monotonic() - started
        self.runtime.metrics.observe("inference", elapsed)
        self.runtime.metrics.batch(len(batch))
        info = model_info(self.runtime.classifier)
        for (job, i), prediction in zip(batch, predictions):
            job.predictions[i] = prediction
            job.model = info
        for job in dict.fromkeys(job for job, _ in batch):  # each job once, in order
            job.add_time("inference", elapsed)
            if job.failure:
                self._backlog = deque(item for item in self._backlog if item[0] is not job)
                self.hand_on(self.runtime.act_queue, job)
            elif all(p is not None for p in job.predictions):
                self.hand_on(self.runtime.act_queue, job)

    def _predict(self, x: Any, metrics: list[Any]) -> list[Any]:
        import torch

        classifier = self.runtime.classifier
        try:
            with torch.no_grad():
                return list(classifier.predict(x, metrics))
        except torch.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(x) > 1:
                half = len(x) // 2
                self.max_batch = half
                log.warning("cuda_out_of_memory", batch=len(x), retry_batch=half)
                return self._predict(x[:half], metrics[:half]) + self._predict(x[half:], metrics[half:])
            log.warning(
                "cuda_out_of_memory_cpu_fallback",
                model=classifier.name,
                note="a single scan does not fit the GPU; classifying on the CPU from now on",
            )
            self.max_batch = None
            self._use(classifier.to("cpu"))
            with torch.no_grad():
                return list(self.runtime.classifier.predict(x, metrics))

    # -- hot model reload -------------------------------------------------------------------------
    def check_model(self) -> None:
        """Switch to a newly promoted model once it has loaded and passed a probe; refuse a broken one."""
        current = self.runtime.classifier
        try:
            path = model_path(self.runtime.config)
        except ModelError as exc:
            if self._refused != ("missing", exc.reason):
                self._refused = ("missing", exc.reason)
                log.error("model_missing", reason=str(exc), keeps=current.name)
            return
        signature = model_signature(path)
        if path is None or signature == self._signature or signature == self._refused:
            return
        device = str(current.device)
        try:
            new = load_checked(path, device)
        except (ModelError, RuntimeError, OSError, ValueError) as exc:
            self._refused = signature
            reason = exc.reason if isinstance(exc, ModelError) else f"{type(exc).__name__}: {exc}"
            log.error("model_refused", model=str(path), reason=reason, keeps=current.name)
            return
        self._signature = signature
        self._use(new)
        log.info("model_reloaded", model=new.name, sha256=new.sha256, replaces=current.name, device=device)
