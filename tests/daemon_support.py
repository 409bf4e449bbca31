"""Helpers for the daemon tests: a tiny real model, real scan files, a real daemon process."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from afmwatch.daemon.sidecar import PREVIEW_SUFFIX, SIDECAR_SUFFIX
from afmwatch.writers import write_tiff

REPO = Path(__file__).resolve().parents[1]
WAIT = 120.0  # generous upper bound for any wait (a loaded CI machine); never a timing assertion


def tiny_model(path: Path, name: str = "tiny-test", seed: int = 0, crop: int = 32) -> Path:
    """An untrained study convnet on 32 px inputs: real model file, real inference, fast."""
    import torch

    from afmwatch.networks.architectures import get_architecture
    from afmwatch.networks.classifier import save_classifier
    from afmwatch.networks.pipeline import make_pipeline

    torch.manual_seed(seed)
    arch = get_architecture("convnet")
    network = arch.build(2, crop, None)
    meta = {
        "name": name,
        "arch": "convnet",
        "pipeline": make_pipeline(arch.channels, arch.normalise, resize=crop + 8, crop=crop),
        "class_names": ["good", "bad"],
        "temperature": 1.0,
        "review_band": [0.45, 0.55],
    }
    return save_classifier(path, network, meta)


def scan_bytes_file(path: Path, seed: int, size: int = 48) -> Path:
    """A float32 TIFF height map (particles on a tilted rough plane), distinct for every seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    height = 0.3 * rng.standard_normal((size, size)).astype(np.float32) + 0.02 * x + 0.01 * y
    for cy, cx in rng.uniform(4, size - 4, size=(6, 2)):
        height += 3.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 8.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tiff(path, height, 2.0)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_config(folder: Path, model: Path | None, **settings) -> Path:
    """A config under `folder` with inbox/, out/, state/ (created) and fast settle times."""
    (folder / "inbox").mkdir(parents=True, exist_ok=True)
    data = {
        "watch_folder": str(folder / "inbox"),
        "output_root": str(folder / "out"),
        "state_folder": str(folder / "state"),
        "device": "cpu",
        "log_level": "info",
        "settle": {"settle_seconds": 0.3, "max_attempts": 2, "backoff_seconds": 0.1},
        "workers": {
            "read_workers": 2,
            "queue_size": 32,
            "batch_size": 8,
            "max_batch_wait_ms": 30,
            "drain_timeout_seconds": 60.0,
        },
    }
    if model is not None:
        data["model"] = str(model)
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def wait_until(predicate, timeout: float = WAIT, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")


class Daemon:
    """`afmwatch run --config FILE` as a real child process, its log in a file."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()):
        """`prefix`: a command to run the service under (e.g. setpriv, to drop root's file-permission override)."""
        self.config = config
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (open while the daemon runs)
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "afmwatch", "run", "--config", str(config)],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def events(self, name: str) -> list[dict]:
        found = []
        for line in self.log().splitlines():
            if f'"{name}"' in line:
                with contextlib.suppress(json.JSONDecodeError):  # a line cut by the log's buffering
                    found.append(json.loads(line))
        return [e for e in found if e.get("event") == name]

    def wait_ready(self) -> Daemon:
        wait_until(lambda: self.events("daemon_ready") or self.process.poll() is not None, what="daemon_ready")
        assert self.process.poll() is None, f"daemon exited early:\n{self.log()}"
        return self

    def terminate(self, timeout: float = WAIT) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:  # hung: its threads' stacks into the failure, and no orphan left
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(2.0)
            self.process.kill()
            self.process.wait(WAIT)
            self._log.close()
            raise AssertionError(
                f"the daemon did not stop within {timeout:.0f} s; its log:\n{self.log()[-20000:]}"
            ) from None
        self._log.close()
        return code

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(WAIT)
        self._log.close()


def sorted_files(out_root: Path) -> list[Path]:
    """Every scan file in the output tree (not sidecars or previews, not temp files)."""
    return sorted(
        p
        for p in out_root.rglob("*")
        if p.is_file()
        and not p.name.endswith((SIDECAR_SUFFIX, PREVIEW_SUFFIX))
        and not any(part.startswith(".") for part in p.relative_to(out_root).parts)
    )


def sidecars(out_root: Path) -> list[Path]:
    return sorted(out_root.rglob(f"*{SIDECAR_SUFFIX}"))


def processed_count(out_root: Path) -> int:
    return len(sidecars(out_root)) if out_root.exists() else 0


def stage_scans(staging: Path, names: list[str], first_seed: int) -> dict[str, str]:
    """Write one distinct scan per name into `staging`; returns name -> sha256."""
    return {name: sha256(scan_bytes_file(staging / name, first_seed + i)) for i, name in enumerate(names)}


def assert_each_input_exactly_once(out: Path, inbox: Path, expected: dict[str, str]) -> None:
    """Every input sorted once, byte-identical, with one valid sidecar naming its sha256; nothing left over."""
    from afmwatch.daemon.sidecar import sidecar_path, validate
    from afmwatch.names import path_text

    files = sorted_files(out)
    assert sorted(f.name for f in files) == sorted(expected), "every input in exactly one place, none twice, none lost"
    for path in files:
        assert sha256(path) == expected[path.name], f"{path} was modified"
        sidecar = json.loads(sidecar_path(path).read_text())
        validate(sidecar)
        assert sidecar["sha256"] == expected[path.name] and sidecar["final_path"] == path_text(path)
    assert len(sidecars(out)) == len(expected), "exactly one sidecar per input"
    assert not [p for p in inbox.rglob("*") if p.is_file()], "nothing left behind in the watch folder"
    assert not list(out.rglob("*.part")), "no temp files left behind"


def journal_states(state: Path) -> dict[str, int]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(state / "journal.sqlite3")) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())


def metric_samples(text: str) -> dict[str, float]:
    """Every sample of a Prometheus scrape, read by prometheus_client's own parser (which refuses text
    that is not valid exposition): 'name{label="value",...}' (labels sorted; bare 'name' without) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            assert key not in samples, f"{key} appears twice in the scrape"
            samples[key] = sample.value
    return samples
