"""A Job: one settled input file travelling read -> infer -> act, collecting what each stage found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from afmwatch.daemon.identity import Identity
from afmwatch.daemon.journal import Entry
from afmwatch.daemon.settle import Arrival
from afmwatch.networks.protocol import ClassifierModel
from afmwatch.scan import Scan


@dataclass(eq=False)  # identity: a job is one arrival, hashable for bookkeeping
class Job:
    arrival: Arrival
    sha256: str | None = None
    size: int | None = None
    identity: Identity | None = None  # the file hashed and read (checked again before the move)
    frames: list[Scan] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)  # preprocessed tensors, one per frame
    preprocessed_by: ClassifierModel | None = None  # the classifier whose pipeline made `inputs`
    predictions: list[Any] = field(default_factory=list)  # Prediction per frame (filled by the worker)
    model: dict[str, Any] | None = None
    quality: dict[str, float | None] | None = None
    failure: str | None = None  # why it goes to failed/
    duplicate_of: Entry | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    queued_at: float = 0.0  # time.monotonic() when put into the inference queue

    @property
    def path(self):
        return self.arrival.path

    def add_time(self, stage: str, seconds: float) -> None:
        self.timings_ms[stage] = round(self.timings_ms.get(stage, 0.0) + seconds * 1000.0, 3)
