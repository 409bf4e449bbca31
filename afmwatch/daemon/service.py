"""The service: checks the folders, loads the model, reconciles, starts the threads, handles signals.

    watcher --touch--> settler --read queue--> reader pool --infer queue--> worker --act queue--> actor

Every queue is bounded. SIGTERM (or Ctrl-C) stops watching, drains the work in flight within
`workers.drain_timeout_seconds` and returns 0; SIGHUP reloads the configuration file.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import queue
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from afmwatch import __version__
from afmwatch.config import Config, ConfigError, WorkersConfig, load_config
from afmwatch.daemon.act import DECISION_FOLDERS, Actor
from afmwatch.daemon.journal import FINAL_STATES, OPEN_STATES, Journal, state_folder
from afmwatch.daemon.metrics import Metrics, serve_metrics
from afmwatch.daemon.notify import Notifier
from afmwatch.daemon.pool import STOP, ReaderPool
from afmwatch.daemon.reading import ReaderProcesses
from afmwatch.daemon.reconcile import reconcile
from afmwatch.daemon.settle import Arrival, Settler
from afmwatch.daemon.watcher import scan_folder, start_observer
from afmwatch.daemon.worker import InferenceWorker, load_checked
from afmwatch.log import configure_logging

log = structlog.get_logger("afmwatch.service")

STATUS_SECONDS = 5.0
COMPACTION_SECONDS = 3600.0
# settings that need a restart to change (SIGHUP keeps the running values and says so)
RESTART_ONLY = ("watch_folder", "output_root", "state_folder", "watch", "device", "metrics_port")


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _writable(folder: Path) -> str | None:
    """None if we can create files in `folder` (creating it if needed), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def startup_errors(config: Config) -> list[str]:
    """What stops the daemon from starting, each naming the setting and the folder."""
    errors = []
    if config.watch_folder is None:
        return ["watch_folder: required to run the daemon (the folder the instrument exports into)"]
    watch = config.watch_folder
    if not watch.is_dir():
        return [f"watch_folder: folder {watch} does not exist"]
    if config.sort != "none":
        if config.output_root is None:
            errors.append("output_root: required unless sort is none (where good/, bad/, review/, failed/ go)")
        elif _inside(config.output_root, watch):
            errors.append(f"output_root: {config.output_root} is inside the watch folder {watch}; "
                          "sorted scans would be watched again; choose a folder outside it")
        elif any(_inside(watch, config.output_root / d) for d in DECISION_FOLDERS):
            errors.append(f"watch_folder: {watch} is inside a decision folder of output_root {config.output_root}")
        elif reason := _writable(config.output_root):
            errors.append(f"output_root: cannot write in {config.output_root} ({reason})")
    elif reason := _writable(watch):
        errors.append(f"watch_folder: sort: none writes sidecars beside the scans, but {watch} is not writable ({reason})")
    if errors and config.state_folder is None:
        return errors  # the default state folder lives in the output folder: one message is enough
    state = state_folder(config)
    if config.state_folder is not None and _inside(state, watch):
        errors.append(f"state_folder: {state} is inside the watch folder {watch}; choose a folder outside it")
    elif reason := _writable(state):
        errors.append(f"state_folder: cannot write in {state} ({reason})")
    return errors


def model_path(config: Config) -> Path:
    """The model to run: `model`, else the active model of `model_folder`, else the shipped default."""
    from afmwatch.networks.store import resolve_model

    return resolve_model(config.model, config.model_folder)


def set_torch_threads(workers: WorkersConfig) -> int:
    """PyTorch's CPU threads for the inference worker: `workers.torch_threads`, else the cores the
    reader threads leave free (at least one). PyTorch's default, one per core, oversubscribes a
    small machine during a burst, when every reader thread keeps a core busy too. Returns the count."""
    import torch

    threads = workers.torch_threads or max(1, available_cores() - workers.read_workers)
    torch.set_num_threads(threads)
    return threads


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Service:
    """The running daemon; `start()` then `serve()` (blocks until SIGTERM) or `stop()`."""

    def __init__(self, config: Config, config_path: Path | None = None, notifier: Notifier | None = None):
        self.config = config
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.started_at = time.time()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._threads: list[threading.Thread] = []
        self.observer: Any = None
        self.metrics_server: Any = None
        self.processes: ReaderProcesses | None = None
        self._next_compaction = 0.0

    # -- wiring -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Check, load the model, reconcile, start the threads, scan the folder; then READY."""
        config = self.config
        errors = startup_errors(config)
        if errors:
            raise ConfigError(str(self.config_path or "<config>"), errors)
        from afmwatch.networks.classifier import resolve_device

        try:
            device = str(resolve_device(config.device))
        except RuntimeError as exc:
            raise ConfigError(str(self.config_path or "<config>"), [f"device: {exc}"]) from None
        self.device = device
        if device == "cpu":
            log.info("cpu_threads", torch_threads=set_torch_threads(config.workers),
                     read_workers=config.workers.read_workers, cores=available_cores())
        self.classifier = load_checked(model_path(config), device)  # ModelError: refuse to start
        log.info("model_loaded", model=self.classifier.name, arch=self.classifier.arch,
                 sha256=self.classifier.sha256, device=device)
        self.journal = Journal(state_folder(config))
        reconcile(self.journal, config)
        self.compact_journal()
        workers = config.workers
        self.read_queue: queue.Queue = queue.Queue(maxsize=workers.queue_size)
        self.infer_queue: queue.Queue = queue.Queue(maxsize=workers.queue_size)
        self.act_queue: queue.Queue = queue.Queue(maxsize=workers.queue_size)
        self.settler = Settler(config.settle.settle_seconds, self._admit, self._settled, self._vanished)
        self.processes = ReaderProcesses(workers.read_workers, config.log_level) if workers.reader_processes else None
        self.pool = ReaderPool(lambda: self.config, lambda: self.classifier, self.journal, self.settler,
                               self.read_queue, self.infer_queue, self.act_queue, self._vanished, self.processes)
        self.actor = Actor(lambda: self.config, self.journal, self.act_queue, self.settler.finished,
                           lambda arrival: self.settler.retry(arrival, 0.0), self.metrics, device)
        self.worker = InferenceWorker(self.classifier, lambda: self.config, lambda: model_path(self.config),
                                      self.infer_queue, self.act_queue, self.notifier, self.metrics,
                                      self._model_changed, self._stages_alive)
        if config.metrics_port:
            try:
                self.metrics_server = serve_metrics(config.metrics_port, self.metrics, self.gauges)
            except OSError as exc:
                raise ConfigError(str(self.config_path or "<config>"),
                                  [f"metrics_port: cannot serve on 127.0.0.1:{config.metrics_port} ({exc.strerror})"]) from None
        settle_thread = threading.Thread(target=self.settler.run, name="afmwatch-settle", daemon=True)
        settle_thread.start()
        self._threads.append(settle_thread)
        self.pool.start(workers.read_workers)
        self.worker.start()
        self.actor.start(workers.act_workers or workers.read_workers)
        self.observer = start_observer(config.watch_folder, config.watch, self.settler.touch)
        found = 0
        for path in scan_folder(config.watch_folder, config.watch):
            self.settler.touch(path)
            found += 1
        self._write_status()
        log.info("daemon_ready", watch_folder=str(config.watch_folder), output_root=str(config.output_root),
                 files_found=found, observer=config.watch.observer, device=device, version=__version__)
        self.notifier.ready(self.status_line())

    def _admit(self, path: Path, stat: os.stat_result) -> int | None:
        """A journal entry for a file that needs processing, or None if it was processed already."""
        latest = self.journal.latest(str(path))
        if latest is not None:
            if latest.state in OPEN_STATES:  # interrupted before it was sorted: same entry, fresh start
                self.journal.update(latest.id, state="seen", size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                                    attempts=0, error=None)
                return latest.id
            if latest.state == "acting":
                return None  # being sorted right now
            unchanged = latest.size == stat.st_size and latest.mtime_ns == stat.st_mtime_ns
            left_in_place = self.config.sort != "move" or latest.final_path in (None, str(path))
            if latest.state in ("done", "failed") and unchanged and left_in_place:
                return None  # copy/none keep the original where it is: processed already
        return self.journal.add(str(path), stat.st_size, stat.st_mtime_ns)

    def _settled(self, arrival: Arrival) -> None:
        self.journal.update(arrival.entry_id, state="settled", size=arrival.size, mtime_ns=arrival.mtime_ns)
        self.read_queue.put(arrival)

    def _vanished(self, arrival: Arrival) -> None:
        log.info("scan_vanished", file=str(arrival.path))
        self.journal.update(arrival.entry_id, state="vanished", error="the file disappeared before it was processed")
        self.settler.finished(arrival.path)

    def _stages_alive(self) -> bool:
        """Every stage still has a live thread (else the worker stops the systemd watchdog pings).
        While draining, stages end one by one on purpose; TimeoutStopSec bounds that."""
        if self._stop.is_set():
            return True
        return (all(t.is_alive() for t in self._threads) and any(t.is_alive() for t in self.pool.threads)
                and self.actor.alive())

    def _model_changed(self, classifier: Any) -> None:
        self.classifier = classifier
        self._write_status()

    # -- health -----------------------------------------------------------------------------------
    def gauges(self) -> dict[str, float]:
        return {
            "pending_files": self.settler.pending(),
            "read_queue_depth": self.read_queue.qsize(),
            "infer_queue_depth": self.infer_queue.qsize(),
            "act_queue_depth": self.act_queue.qsize(),
        }

    def status_line(self) -> str:
        counts = self.journal.decision_counts()
        done = sum(counts.values())
        parts = ", ".join(f"{d} {counts.get(d, 0)}" for d in DECISION_FOLDERS)
        waiting = self.settler.pending() + self.read_queue.qsize() + self.infer_queue.qsize()
        return f"{done} scans sorted ({parts}); {waiting} waiting; model {self.classifier.name}"

    def _write_status(self) -> None:
        self.journal.set_service({
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "running": not self._stop.is_set(),
            "watch_folder": str(self.config.watch_folder),
            "output_root": str(self.config.output_root),
            "model": {"name": self.classifier.name, "arch": self.classifier.arch,
                      "sha256": self.classifier.sha256, "path": str(self.classifier.path),
                      "device": str(self.classifier.device)},
            "queues": self.gauges(),
        })

    # -- signals ----------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        # a hung service can be asked where each thread is, even when Python code cannot run
        faulthandler.register(signal.SIGUSR1, all_threads=True)

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT (or `request_stop`); then drain and return 0."""
        while not self._stop.wait(STATUS_SECONDS if not self._reload.is_set() else 0):
            if self._reload.is_set():
                self._reload.clear()
                self.reload_config()
            self._write_status()
            self.notifier.status(self.status_line())
            if time.monotonic() >= self._next_compaction:
                self.compact_journal()
        return self.stop()

    def compact_journal(self) -> int:
        """Drop the journal's sidecar copies older than `journal_sidecar_days` (at start, then hourly)."""
        self._next_compaction = time.monotonic() + COMPACTION_SECONDS
        dropped = self.journal.drop_old_sidecars(time.time() - self.config.journal_sidecar_days * 86400)
        if dropped:
            log.info("journal_compacted", sidecar_copies_dropped=dropped, older_than_days=self.config.journal_sidecar_days)
        return dropped

    def request_stop(self) -> None:
        self._stop.set()

    def reload_config(self) -> None:
        """SIGHUP: read the config file again; an invalid file is refused and the old settings stay."""
        if self.config_path is None:
            return
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config_reload_refused", config=str(self.config_path), errors=exc.errors)
            self.notifier.reloaded(self.status_line())
            return
        kept = {name: getattr(self.config, name) for name in RESTART_ONLY}
        changed = [name for name, value in kept.items() if getattr(new, name) != value]
        if changed:
            log.warning("config_needs_restart", settings=changed)
        self.config = dataclasses.replace(new, **kept)
        self.settler.settle_seconds = self.config.settle.settle_seconds
        configure_logging(self.config.log_level)
        log.info("config_reloaded", config=str(self.config_path))
        self.notifier.reloaded(self.status_line())

    def stop(self) -> int:
        """Stop watching, drain the work in flight (within the drain timeout), close; returns 0."""
        self._stop.set()
        self.notifier.stopping("draining")
        timeout = self.config.workers.drain_timeout_seconds
        deadline = time.monotonic() + timeout
        log.info("daemon_draining", in_flight=self.read_queue.qsize() + self.infer_queue.qsize(), timeout_s=timeout)
        if self.observer is not None:
            self.observer.stop()
        self.settler.stop()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for _ in self.pool.threads:
            self._put_until(self.read_queue, STOP, deadline)
        for thread in self.pool.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.processes is not None and not any(t.is_alive() for t in self.pool.threads):
            self.processes.close()  # a reader thread still waiting on one keeps them (daemon threads end with us)
        self._put_until(self.infer_queue, STOP, deadline)
        self.worker.thread.join(max(0.0, deadline - time.monotonic()))
        drained = self.actor.join(max(0.0, deadline - time.monotonic()))
        if not drained:
            log.warning("drain_timeout", timeout_s=timeout,
                        note="unfinished files stay in the watch folder or the journal and are finished at the next start")
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        self._write_status()
        counts = self.journal.counts()
        log.info("daemon_stopped", drained=drained, **{k: v for k, v in counts.items() if k in FINAL_STATES})
        self.journal.close()
        self.notifier.close()
        return 0

    @staticmethod
    def _put_until(target: queue.Queue, item: Any, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                target.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
