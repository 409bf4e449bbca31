"""The reader pool: a few threads that hash settled files and have them read, measured and
preprocessed (in reader processes, `afmwatch.daemon.reading`, or in the thread itself).

Each reader takes an Arrival from the bounded read queue and puts a Job on the bounded inference
queue (or straight on the act queue when the file failed or is a known duplicate). A parse failure
while the file may still be growing sends it back to settle, with exponential backoff, until
`settle.max_attempts` is reached; then it goes to failed/ with the reasons.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
import time
from pathlib import Path

import structlog

from afmwatch.config import Config
from afmwatch.daemon.identity import ContentChanged, NotRegularFile, clear_folder, copy_hashed, open_below
from afmwatch.daemon.job import Job
from afmwatch.daemon.journal import FULL_RETRY_SECONDS, JournalFull, State, state_folder
from afmwatch.daemon.reading import ReaderCrashed, ReaderProcesses, ReadTask, read_file
from afmwatch.daemon.runtime import Runtime
from afmwatch.daemon.settle import Arrival, Settler
from afmwatch.daemon.stage import STOP, Stage
from afmwatch.networks.protocol import ClassifierModel
from afmwatch.scan import PermanentScanError, ScanError

log = structlog.get_logger("afmwatch.read")


COPIES_FOLDER = "reading"  # in the state folder: the private copies the readers parse


def read_job(
    job: Job,
    config: Config,
    classifier: ClassifierModel,
    processes: ReaderProcesses | None = None,
    source: Path | None = None,
) -> None:
    """Read every frame (from `source`, the private copy, when given), measure quality and preprocess
    for `classifier`, in a reader process when there are any (else in this thread); raises ScanError,
    or ReaderCrashed if the process died."""
    import torch

    prepare, argument = classifier.preprocess_task()
    task = ReadTask(job.path, classifier.reading_config(config.reading), prepare, argument, source)
    result = processes.read(task) if processes is not None else read_file(task)
    job.frames, job.quality = result.frames, result.quality
    job.inputs = [torch.from_numpy(array) for array in result.inputs]
    job.preprocessed_by = classifier
    for stage, seconds in result.seconds.items():
        job.add_time(stage, seconds)


def preprocess(job: Job, classifier: ClassifierModel) -> None:
    """The model's own input pipeline for every frame (again if the model changed meanwhile)."""
    started = time.monotonic()
    job.inputs = [classifier.preprocess(frame) for frame in job.frames]
    job.preprocessed_by = classifier
    job.add_time("preprocess", time.monotonic() - started)


class ReaderPool(Stage):
    """`workers.read_workers` threads between the read queue and the inference/act queues, and the
    reader processes they hand the reading to (`workers.reader_processes`), which end with them."""

    inbox: queue.Queue  # always the runtime's read queue
    stall_seconds = 600.0  # one file (hash, private copy, read in a reader process): seconds, a huge one a minute

    def __init__(self, runtime: Runtime, settler: Settler):
        super().__init__(runtime, "afmwatch-read", count=runtime.config.workers.read_workers, inbox=runtime.read_queue)
        self.settler = settler
        self.processes: ReaderProcesses | None = None
        self.copies = state_folder(runtime.config) / COPIES_FOLDER
        self._claiming = threading.Lock()

    def start(self) -> None:
        """Start (and warm up) the reader processes, if any, then the threads."""
        clear_folder(self.copies)
        workers = self.runtime.config.workers
        if workers.reader_processes:
            self.processes = ReaderProcesses(workers.read_workers, self.runtime.config.log_level)
        super().start()

    def join(self, timeout: float) -> bool:
        """Wait for the threads; then shut the reader processes down: after the reads in hand once
        every thread has ended, else (a read still going when the time is up) killed, so that no
        reader outlives the service and SIGTERM ends it within the drain timeout."""
        ended = super().join(timeout)
        if self.processes is not None and (ended or timeout <= 0):
            self.processes.close(wait=ended)
            self.processes = None
        return ended

    def run(self) -> None:
        while True:
            self.beat()
            try:
                arrival = self.inbox.get(timeout=1.0)
            except queue.Empty:
                continue
            if arrival is STOP:
                return
            self.process_one(arrival)

    def process_one(self, arrival: Arrival) -> None:
        """`process`, and what it cannot handle costs this file, never the reader thread: the journal
        full pauses it (read again later, no attempt counted), a bug costs it one attempt."""
        try:
            self.process(arrival)
        except JournalFull:
            arrival.attempts = max(0, arrival.attempts - 1)
            self.settler.retry(arrival, FULL_RETRY_SECONDS)
        except Exception as exc:
            log.exception("read_failed", file=str(arrival.path))
            try:
                self._failed_attempt(Job(arrival=arrival), self.runtime.config, f"unexpected error ({exc})")
            except JournalFull:
                self.settler.retry(arrival, FULL_RETRY_SECONDS)

    def process(self, arrival: Arrival) -> None:
        job = Job(arrival=arrival)
        job.add_time("settle", max(0.0, (arrival.settled_at or time.time()) - arrival.seen_at))
        # one folder per reader thread (a thread reads one file at a time), kept: the copy keeps the
        # file's own name, and creating and removing a folder per file cost more than the copy itself
        copy = self.copies / threading.current_thread().name / arrival.path.name
        try:
            self._read(job, copy)
        finally:
            copy.unlink(missing_ok=True)

    def _open(self, job: Job, copy: Path) -> bool:
        """Open the file once (no link followed, nothing but a regular file), hash it and copy it for
        the readers; False when it is not to be read now (gone, not a file, changed, no permission)."""
        arrival, config = job.arrival, self.runtime.config
        assert config.watch_folder is not None  # the service does not start without one
        started = time.monotonic()
        try:
            fd, identity = open_below(config.watch_folder, arrival.path)
            try:
                job.sha256 = copy_hashed(fd, identity, copy)
            finally:
                os.close(fd)
        except NotRegularFile as exc:
            self.settler.not_regular(arrival, exc.what)
            return False
        except FileNotFoundError:
            self.settler.vanished(arrival)
            return False
        except ContentChanged:
            self.settler.changed(arrival)
            return False
        except PermissionError:
            self._failed_attempt(job, config, _no_permission(arrival.path), permanent=True)
            return False
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # no room for the private copy: the state disk is full
                raise JournalFull(f"state folder full ({exc.strerror})") from None
            self._failed_attempt(job, config, f"cannot read the file: {exc.strerror or exc}")
            return False
        job.size, job.identity = identity.size, identity
        job.add_time("hash", time.monotonic() - started)
        return True

    def _read(self, job: Job, copy: Path) -> None:
        arrival, config, journal = job.arrival, self.runtime.config, self.runtime.journal
        if not self._open(job, copy):
            return
        assert job.sha256 is not None  # set by _open
        if arrival.incomplete:  # its structure said incomplete for longer than settle.incomplete_seconds
            self._failed_attempt(job, config, arrival.incomplete, permanent=True)
            return
        with self._claiming:  # look and mark at once: of identical files arriving together one goes first
            first = journal.in_flight_with_hash(job.sha256, arrival.entry_id) if config.duplicates == "skip" else None
            if first is None:
                journal.update(
                    arrival.entry_id,
                    state=State.PROCESSING,
                    attempts=arrival.attempts,
                    sha256=job.sha256,
                    size=job.size,
                )
        if first is not None:  # an identical file is on its way: wait for it, then be its duplicate
            log.info("duplicate_waits", file=str(arrival.path), first=first.path)
            arrival.attempts -= 1  # waiting is not a failed attempt
            journal.update(arrival.entry_id, state=State.SEEN)
            self.settler.retry(arrival, max(0.1, config.settle.backoff_seconds))
            return
        if config.duplicates == "skip":
            earlier = journal.finished_with_hash(job.sha256, arrival.entry_id)
            if earlier is not None:
                job.duplicate_of = earlier
                self.hand_on(self.runtime.act_queue, job)
                return
        classifier = self.runtime.classifier
        try:
            read_job(job, config, classifier, self.processes, source=copy)
        except ScanError as exc:
            self._failed_attempt(job, config, exc.reason, permanent=isinstance(exc, PermanentScanError))
            return
        except ReaderCrashed as exc:
            log.error("reader_process_died", file=str(arrival.path), note="a fresh reader process takes over")
            self._failed_attempt(job, config, str(exc))
            return
        except MemoryError:
            self._failed_attempt(job, config, "not enough memory to read the file")
            return
        except Exception as exc:  # a reader bug must cost one file, not the service; logged with traceback
            log.exception("reader_crashed", file=str(arrival.path))
            self._failed_attempt(job, config, f"unexpected error while reading ({type(exc).__name__}: {exc})")
            return
        job.queued_at = time.monotonic()
        self.hand_on(self.runtime.infer_queue, job)

    def _failed_attempt(self, job: Job, config: Config, reason: str, *, permanent: bool = False) -> None:
        """Another attempt later for an error that may pass (truncated, still being written); failed/
        at once for one that never will (wrong format, no image, too large, no permission)."""
        arrival = job.arrival
        arrival.errors.append(f"attempt {arrival.attempts}: {reason}")
        if not permanent and arrival.attempts < config.settle.max_attempts:
            backoff = config.settle.backoff_seconds * 2 ** (arrival.attempts - 1)
            log.info("read_retry", file=str(arrival.path), attempt=arrival.attempts, backoff_s=backoff, reason=reason)
            self.runtime.journal.update(arrival.entry_id, state=State.SEEN, attempts=arrival.attempts, error=reason)
            self.settler.retry(arrival, backoff)
            return
        job.failure = reason
        job.frames, job.inputs = [], []
        self.hand_on(self.runtime.act_queue, job)


def _no_permission(path: Path) -> str:
    """Why a file cannot be read, with what an operator needs to fix it."""
    try:
        info = os.lstat(path)
    except OSError:
        return "no permission to read the file"
    return (
        f"no permission to read the file (mode {info.st_mode & 0o7777:03o}, owner uid {info.st_uid}; "
        f"the service runs as uid {os.geteuid()})"
    )
