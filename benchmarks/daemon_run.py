"""A real `afmwatch run` child process for the daemon benchmarks: its folders, its config, its
sidecars and its resident memory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import REPO, cpu_count

SIDECAR_SUFFIX = ".afmwatch.json"
READY_TIMEOUT_S = 300.0


def epoch(iso: str | None) -> float | None:
    """A sidecar's ISO 8601 UTC time as seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def write_config(
    folder: Path,
    model: Path,
    *,
    settle_seconds: float,
    device: str,
    read_workers: int,
    batch_size: int,
    act_workers: int | None = None,
    reader_processes: bool | None = None,
) -> Path:
    """`folder`/config.yaml watching `folder`/inbox, sorting into out/, journal in state/; every other
    setting (previews, sort: move, duplicates: skip, log level) is the daemon's default."""
    (folder / "inbox").mkdir(parents=True, exist_ok=True)
    config = {
        "watch_folder": str(folder / "inbox"),
        "output_root": str(folder / "out"),
        "state_folder": str(folder / "state"),
        "model": str(model),
        "device": device,
        "settle": {"settle_seconds": settle_seconds},
        "workers": {"read_workers": read_workers, "batch_size": batch_size},
    }
    if act_workers is not None:
        config["workers"]["act_workers"] = act_workers
    if reader_processes is not None:
        config["workers"]["reader_processes"] = reader_processes
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class DaemonProcess:
    """`afmwatch run --config FILE` in `folder` (inbox/, out/, state/, config.yaml, daemon.log)."""

    def __init__(
        self,
        folder: Path,
        model: Path,
        *,
        settle_seconds: float,
        device: str = "auto",
        read_workers: int | None = None,
        batch_size: int = 16,
        act_workers: int | None = None,
        env: dict[str, str] | None = None,
    ):
        self.folder = folder
        self.inbox, self.out = folder / "inbox", folder / "out"
        self.config_path = write_config(
            folder,
            model,
            settle_seconds=settle_seconds,
            device=device,
            read_workers=read_workers or cpu_count(),
            batch_size=batch_size,
            act_workers=act_workers,
        )
        self.log_path = folder / "daemon.log"
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> DaemonProcess:
        """Start the daemon and wait until it is ready: its journal says it is running."""
        log = open(self.log_path, "w")  # noqa: SIM115 (the daemon writes it for as long as it runs)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "afmwatch", "run", "--config", str(self.config_path)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"afmwatch run exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"afmwatch run not ready after {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        from afmwatch.daemon.journal import Journal, journal_path

        state = self.folder / "state"
        if not journal_path(state).exists():
            return False
        try:
            journal = Journal(state, readonly=True)
            try:
                return bool(journal.service().get("running"))
            finally:
                journal.close()
        except Exception:  # the database is being created right now
            return False

    def stop(self) -> int:
        """SIGTERM (the daemon drains and exits 0); returns its exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- observing ---------------------------------------------------------------------------------
    def rss_mb(self) -> float:
        """Resident memory (VmRSS, MB) of the daemon and its child processes (the reader processes,
        multiprocessing's resource tracker) together."""
        return sum(_vm_rss_mb(pid) for pid in [self.process.pid, *_children(self.process.pid)])

    def sidecars(self) -> list[Path]:
        """Every sidecar written so far (a walk of the output tree: cheap next to the daemon's work)."""
        found = []
        for folder, _, names in os.walk(self.out):
            found += [Path(folder) / n for n in names if n.endswith(SIDECAR_SUFFIX) and not n.startswith(".")]
        return found

    def wait_for(self, count: int, timeout: float, interval: float = 0.25) -> list[Path]:
        """Wait until `count` sidecars exist; RuntimeError if the daemon dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.sidecars()
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                raise RuntimeError(f"afmwatch run exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(found)} of {count} scans sorted after {timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(interval)


def _vm_rss_mb(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:  # ended meanwhile
        return 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc: resident memory can only be read on Linux")


def _children(pid: int) -> list[int]:
    """Every process whose parent is `pid` (from /proc/*/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


def read_sidecars(paths: list[Path]) -> list[dict[str, Any]]:
    """The sidecars with `written_at`: when the file appeared (its modification time, epoch s)."""
    sidecars = []
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["written_at"] = path.stat().st_mtime
        sidecars.append(data)
    return sidecars


def drop(files: list[Path], inbox: Path) -> float:
    """Rename every file into the inbox at once (same file system: each rename is atomic and
    instant, as a session copied in by a fast tool); returns when the drop began (epoch s)."""
    began = time.time()
    for path in files:
        os.replace(path, inbox / path.name)
    return began
