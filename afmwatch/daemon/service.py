"""The service: checks the folders, loads the model, reconciles, starts the stages, handles signals.

    watcher --touch--> settler --read queue--> reader pool --infer queue--> worker --act queue--> actor

Every stage has the same lifecycle (`afmwatch.daemon.stage`) and shares one `Runtime` (the settings,
the model, the journal, the metrics, the notifier, the queues). Every queue is bounded. SIGTERM (or
Ctrl-C) stops watching, drains the work in flight within `workers.drain_timeout_seconds` and returns 0;
SIGHUP reloads the configuration file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import faulthandler
import os
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
from afmwatch.daemon.alert_monitor import AlertMonitor
from afmwatch.daemon.faults import Faults
from afmwatch.daemon.journal import FINAL_STATES, Journal, JournalFull, state_folder
from afmwatch.daemon.lock import StateLock
from afmwatch.daemon.metrics import ByLabel, Metrics, serve_metrics
from afmwatch.daemon.notify import Notifier
from afmwatch.daemon.pool import ReaderPool
from afmwatch.daemon.reconcile import reconcile
from afmwatch.daemon.retry import SortRetrier
from afmwatch.daemon.runtime import Runtime
from afmwatch.daemon.settle import Settler
from afmwatch.daemon.stage import Stage
from afmwatch.daemon.watcher import scan_folder, start_observer
from afmwatch.daemon.worker import InferenceWorker, load_checked, model_path
from afmwatch.log import configure_logging
from afmwatch.networks.protocol import ClassifierModel
from afmwatch.system import available_cores

log = structlog.get_logger("afmwatch.service")

STATUS_SECONDS = 5.0
EX_SOFTWARE = 70  # sysexits: a stage died of a bug; systemd restarts the service (Restart=on-failure)
COMPACTION_SECONDS = 3600.0
# settings that need a restart to change (SIGHUP keeps the running values and says so)
RESTART_ONLY = ("watch_folder", "output_root", "state_folder", "watch", "device", "metrics_port")


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _writable(folder: Path, create: bool = True) -> str | None:
    """None if we can create files in `folder` (creating it if needed), else why not. A folder that is
    full or read-only just now is no reason to refuse (exit 78 would keep systemd from restarting us):
    sorting waits for it while the service runs (`afmwatch.daemon.retry`). With `create` false
    (`afmwatch check-config`) nothing is created: a missing folder is judged by the nearest folder above
    it that exists, where `run` would create it."""
    if not create:
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
        if not existing.is_dir():
            return f"{existing} is not a folder"
        return None if os.access(existing, os.W_OK | os.X_OK) else f"permission denied in {existing}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            log.warning("folder_not_writable_now", folder=str(folder), error=str(exc), note="sorting waits for it")
            return None
        return exc.strerror or str(exc)
    return None


def startup_errors(config: Config, create: bool = True) -> list[str]:
    """What stops the daemon from starting, each naming the setting and the folder (`create` false:
    check without creating the output and state folders)."""
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
            errors.append(
                f"output_root: {config.output_root} is inside the watch folder {watch}; "
                "sorted scans would be watched again; choose a folder outside it"
            )
        elif any(_inside(watch, config.output_root / d) for d in DECISION_FOLDERS):
            errors.append(f"watch_folder: {watch} is inside a decision folder of output_root {config.output_root}")
        elif reason := _writable(config.output_root, create):
            errors.append(f"output_root: cannot write in {config.output_root} ({reason})")
    elif reason := _writable(watch, create):
        errors.append(
            f"watch_folder: sort: none writes sidecars beside the scans, but {watch} is not writable ({reason})"
        )
    if errors and config.state_folder is None:
        return errors  # the default state folder lives in the output folder: one message is enough
    state = state_folder(config)
    if config.state_folder is not None and _inside(state, watch):
        errors.append(f"state_folder: {state} is inside the watch folder {watch}; choose a folder outside it")
    elif reason := _writable(state, create):
        errors.append(f"state_folder: cannot write in {state} ({reason})")
    return errors


def set_torch_threads(workers: WorkersConfig) -> int:
    """PyTorch's CPU threads for the inference worker: `workers.torch_threads`, else the cores the
    reader threads leave free (at least one). PyTorch's default, one per core, oversubscribes a
    small machine during a burst, when every reader thread keeps a core busy too. Returns the count."""
    import torch

    threads = workers.torch_threads or max(1, available_cores() - workers.read_workers)
    torch.set_num_threads(threads)
    return threads


class Service:
    """The running daemon; `start()` then `serve()` (blocks until SIGTERM) or `stop()`."""

    def __init__(self, config: Config, config_path: Path | None = None, notifier: Notifier | None = None):
        self._config = config
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.started_at = time.time()
        self.runtime: Runtime | None = None
        self.stages: list[Stage] = []
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.observer: Any = None
        self.metrics_server: Any = None
        self.alerts: AlertMonitor | None = None
        self._next_compaction = 0.0
        self.lock: StateLock | None = None
        self.died: str | None = None  # the stage whose loop raised: the service stops, exit EX_SOFTWARE
        self._stalled: set[str] = set()

    @property
    def config(self) -> Config:
        """The settings in force (a SIGHUP reload replaces them in the runtime)."""
        return self.runtime.config if self.runtime is not None else self._config

    @property
    def journal(self) -> Journal:
        assert self.runtime is not None, "the service has not started"
        return self.runtime.journal

    @property
    def stop_requested(self) -> bool:
        """SIGTERM, SIGINT or `request_stop` asked the service to stop (`stop` then drains)."""
        return self._stop.is_set()

    # -- wiring -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Check, load the model, reconcile, start the stages, scan the folder; then READY."""
        config = self.config
        errors = startup_errors(config)
        if errors:
            raise ConfigError(str(self.config_path or "<config>"), errors)
        self.lock = StateLock(state_folder(config))
        self.lock.acquire()  # AlreadyRunning: another service has this journal; before anything is touched
        from afmwatch.networks.classifier import resolve_device

        try:
            device = str(resolve_device(config.device))
        except RuntimeError as exc:
            raise ConfigError(str(self.config_path or "<config>"), [f"device: {exc}"]) from None
        if device == "cpu":
            log.info(
                "cpu_threads",
                torch_threads=set_torch_threads(config.workers),
                read_workers=config.workers.read_workers,
                cores=available_cores(),
            )
        classifier = load_checked(model_path(config), device)  # ModelError: refuse to start
        log.info("model_loaded", model=classifier.name, arch=classifier.arch, sha256=classifier.sha256, device=device)
        journal = Journal(state_folder(config))
        reconcile(journal, config)
        self.runtime = Runtime(
            config, classifier, journal, self.metrics, self.notifier, device, faults=Faults.from_environ(os.environ)
        )
        self.alerts = AlertMonitor(journal, self.metrics)
        self.compact_journal()
        self.settler = Settler(self.runtime)
        self.pool = ReaderPool(self.runtime, self.settler)
        self.worker = InferenceWorker(self.runtime, on_model_change=self._write_status, healthy=self._stages_alive)
        self.actor = Actor(self.runtime, self.settler)
        self.retrier = SortRetrier(self.runtime, self.settler)
        # in the order the work flows
        self.stages = [self.settler, self.pool, self.worker, self.actor, self.retrier]
        if config.metrics_port:
            try:
                self.metrics_server = serve_metrics(config.metrics_port, self.metrics, self.metric_gauges)
            except OSError as exc:
                raise ConfigError(
                    str(self.config_path or "<config>"),
                    [f"metrics_port: cannot serve on 127.0.0.1:{config.metrics_port} ({exc.strerror})"],
                ) from None
        for stage in self.stages:
            stage.on_died = self._stage_died
            stage.start()
        assert config.watch_folder is not None  # startup_errors refuses a config without one
        self.observer = start_observer(config.watch_folder, config.watch, self.settler.touch)
        found = 0
        for path in scan_folder(config.watch_folder, config.watch):
            self.settler.touch(path)
            found += 1
        self._write_status()
        log.info(
            "daemon_ready",
            watch_folder=str(config.watch_folder),
            output_root=str(config.output_root),
            files_found=found,
            observer=config.watch.observer,
            device=device,
            version=__version__,
        )
        self.notifier.ready(self.status_line())

    def _stages_alive(self) -> bool:
        """Every stage is alive: each thread running and coming round its loop (else the worker stops
        the systemd watchdog pings, and systemd restarts the service). While draining, stages end one
        by one on purpose; TimeoutStopSec bounds that."""
        if self._stop.is_set():
            return True
        stalled = {stage.name for stage in self.stages if not stage.alive()}
        for name in stalled - self._stalled:
            log.error("stage_stalled", stage=name, note="watchdog pings stop: systemd restarts the service")
        self._stalled = stalled
        return not stalled

    def _stage_died(self, name: str) -> None:
        """A stage's loop raised (logged as stage_died): stop, drain what the others can, exit non-zero."""
        self.died = name
        log.critical("service_stopping", reason=f"stage {name} died", exit_status=EX_SOFTWARE)
        self._stop.set()

    # -- health -----------------------------------------------------------------------------------
    def gauges(self) -> dict[str, float]:
        runtime = self.runtime
        assert runtime is not None, "the service has not started"
        return {
            "pending_files": self.settler.pending(),
            "read_queue_depth": runtime.read_queue.qsize(),
            "infer_queue_depth": runtime.infer_queue.qsize(),
            "act_queue_depth": runtime.act_queue.qsize(),
        }

    def metric_gauges(self) -> dict[str, float | ByLabel]:
        """The queue gauges, the scans waiting to be sorted again (in all and by cause), and whether the
        journal can be written (what Prometheus scrapes)."""
        runtime = self.runtime
        assert runtime is not None, "the service has not started"
        waiting = runtime.sort_waiting.counts()
        return {
            **self.gauges(),
            "sort_waiting": ByLabel("cause", sum(waiting.values()), dict(waiting)),
            "journal_unavailable": float(runtime.journal.unavailable is not None),
        }

    def trouble(self) -> str:
        """What holds scans up now, in words ('' when nothing does): the STATUS line and the log say it."""
        runtime = self.runtime
        assert runtime is not None, "the service has not started"
        parts = []
        if runtime.journal.unavailable is not None:
            parts.append(f"journal cannot be written ({runtime.journal.unavailable}): intake paused")
        if waiting := runtime.sort_waiting.describe():
            parts.append(waiting)
        return "; ".join(parts)

    def status_line(self) -> str:
        runtime = self.runtime
        assert runtime is not None, "the service has not started"
        counts = runtime.journal.decision_counts()
        done = sum(counts.values())
        parts = ", ".join(f"{d} {counts.get(d, 0)}" for d in DECISION_FOLDERS)
        waiting = self.settler.pending() + runtime.read_queue.qsize() + runtime.infer_queue.qsize()
        trouble = self.trouble()
        return f"{done} scans sorted ({parts}); {waiting} waiting; model {runtime.classifier.name}" + (
            f"; {trouble}" if trouble else ""
        )

    def _write_status(self) -> None:
        """The service record `afmwatch status` reads; skipped while the journal cannot be written
        (the STATUS line and the log say so, and `status` sees the state folder's free space)."""
        assert self.runtime is not None, "the service has not started"
        config, classifier = self.runtime.config, self.runtime.classifier
        with contextlib.suppress(JournalFull):
            self._set_service(config, classifier)

    def _set_service(self, config: Config, classifier: ClassifierModel) -> None:
        assert self.runtime is not None, "the service has not started"
        self.runtime.journal.set_service(
            {
                "pid": os.getpid(),
                "version": __version__,
                "started_at": self.started_at,
                "updated_at": time.time(),
                "running": not self._stop.is_set(),
                "watch_folder": str(config.watch_folder),
                "output_root": str(config.output_root),
                "model": {
                    "name": classifier.name,
                    "arch": classifier.arch,
                    "sha256": classifier.sha256,
                    "path": str(classifier.path),
                    "device": str(classifier.device),
                },
                "queues": self.gauges(),
                "sort_waiting": self.runtime.sort_waiting.counts(),
                "trouble": self.trouble(),
            }
        )

    # -- signals ----------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        # a hung service can be asked where each thread is, even when Python code cannot run
        faulthandler.register(signal.SIGUSR1, all_threads=True)

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT (or `request_stop`); then drain and return 0 (EX_SOFTWARE when a
        stage died)."""
        while not self._stop.wait(STATUS_SECONDS if not self._reload.is_set() else 0):
            if self._reload.is_set():
                self._reload.clear()
                self.reload_config()
            self._write_status()
            self.notifier.status(self.status_line())
            self.check_alerts()
            if time.monotonic() >= self._next_compaction:
                self.compact_journal()
        code = self.stop()
        return EX_SOFTWARE if self.died is not None else code

    def check_alerts(self) -> None:
        """Announce the alerts that started since the last tick (log, Prometheus, notifications)."""
        if self.alerts is not None:
            with contextlib.suppress(JournalFull):  # announced alerts live in the journal: next tick
                self.alerts.check(self.config.alerts)

    def compact_journal(self) -> int:
        """Drop the journal's sidecar copies older than `journal_sidecar_days` (at start, then hourly)."""
        self._next_compaction = time.monotonic() + COMPACTION_SECONDS
        days = self.config.journal_sidecar_days
        try:
            dropped = self.journal.drop_old_sidecars(time.time() - days * 86400)
        except JournalFull:
            return 0  # tried again in an hour
        if dropped:
            log.info("journal_compacted", sidecar_copies_dropped=dropped, older_than_days=days)
        return dropped

    def request_stop(self) -> None:
        """Ask the service to stop: `serve` returns through `stop` (what SIGTERM does)."""
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
        assert self.runtime is not None, "the service has not started"
        self.runtime.config = dataclasses.replace(new, **kept)  # every stage reads it from there
        configure_logging(self.config.log_level)
        log.info("config_reloaded", config=str(self.config_path))
        self.notifier.reloaded(self.status_line())

    def stop(self) -> int:
        """Stop watching, drain the work in flight (within the drain timeout), close; returns 0."""
        self._stop.set()
        self.notifier.stopping("draining")
        runtime = self.runtime
        assert runtime is not None, "the service has not started"
        timeout = runtime.config.workers.drain_timeout_seconds
        deadline = time.monotonic() + timeout
        log.info(
            "daemon_draining", in_flight=runtime.read_queue.qsize() + runtime.infer_queue.qsize(), timeout_s=timeout
        )
        if self.observer is not None:
            self.observer.stop()
        for stage in self.stages:  # each ends after finishing what the stage before it handed on
            stage.stop(deadline)
            stage.join(max(0.0, deadline - time.monotonic()))
        drained = self.actor.join(0.0)  # the last stage has ended: every file handed on was sorted
        self.pool.join(0.0)  # reader processes still busy when the time is up are killed: none outlives us
        if not drained:
            log.warning(
                "drain_timeout",
                timeout_s=timeout,
                note="unfinished files stay in the watch folder or the journal and are finished at the next start",
            )
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()  # the port is free again at once
        if self.alerts is not None:
            self.alerts.join(min(10.0, max(0.0, deadline - time.monotonic())))  # notifications under way
        self._write_status()
        counts = runtime.journal.counts()
        log.info("daemon_stopped", drained=drained, **{k: v for k, v in counts.items() if k in FINAL_STATES})
        runtime.journal.close()
        if self.lock is not None:
            self.lock.release()
        self.notifier.close()
        return 0
