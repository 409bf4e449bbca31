"""Helpers for the review page tests: an output folder sorted as the daemon sorts it, with its journal.

Each scan is a real TIFF height map, measured by `afmwatch.quality.measure`, decided by
`afmwatch.verdict.decide` (from a model probability drawn per scan), previewed by `afmwatch.render`
and recorded through the daemon's own journal calls (`acting` with the plan, then `done`), so the
page sees exactly what a daemon run leaves behind, in a fraction of the time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from afmwatch import __version__
from afmwatch.daemon.journal import Journal, State
from afmwatch.daemon.sidecar import SCHEMA_VERSION, iso_utc, plain, preview_path, validate, write_sidecar
from afmwatch.durable import sha256_file
from afmwatch.level import level
from afmwatch.quality import measure
from afmwatch.readers import read_scan
from afmwatch.render import png_bytes, preview_image
from afmwatch.verdict import Policy, caption, decide
from afmwatch.writers import write_tiff


@dataclass
class Prediction:
    label: str
    decision: str
    confidence: float
    probabilities: dict[str, float]
    parts: dict[str, float] = field(default_factory=dict)
    familiarity: dict[str, Any] | None = None


def height_map(seed: int, size: int = 256, scars: int = 0) -> np.ndarray:
    """Particles on a rough tilted plane; `scars` rows jump as a tip that skipped."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    height = 0.2 * rng.standard_normal((size, size)).astype(np.float32) + 0.02 * x + 0.01 * y
    for cy, cx in rng.uniform(8, size - 8, size=(40, 2)):
        height += 3.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 30.0)
    for row in rng.choice(np.arange(2, size - 2), size=scars, replace=False):
        start = int(rng.integers(0, size // 3))
        height[row, start : start + size // 2] += 6.0
    return height


def sorted_output(folder: Path, n: int = 12, seed: int = 0, subfolders: tuple[str, ...] = ("", "sample-a")) -> Path:
    """Write inbox/, out/ (sorted), state/ (journal) and config.yaml under `folder`; returns the config."""
    inbox, out, state = folder / "inbox", folder / "out", folder / "state"
    inbox.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.yaml"
    config_path.write_text(
        yaml.safe_dump({"watch_folder": str(inbox), "output_root": str(out), "state_folder": str(state)}),
        encoding="utf-8",
    )
    rng = np.random.default_rng(seed)
    journal = Journal(state)
    now = time.time()
    try:
        for i in range(n):
            sub = subfolders[i % len(subfolders)]
            name = f"scan{i:03d}.tif"
            original = inbox / sub / name if sub else inbox / name
            p_bad = float(rng.uniform(0.02, 0.98))
            scars = 40 if p_bad > 0.8 else 0
            staging = folder / "staging" / name
            staging.parent.mkdir(parents=True, exist_ok=True)
            write_tiff(staging, height_map(seed * 1000 + i, scars=scars), 4.0)
            scan = read_scan(staging)
            metrics = measure(scan)
            label = "bad" if p_bad >= 0.5 else "good"
            network = "review" if 0.3 < p_bad < 0.7 else label
            prediction = Prediction(label, network, max(p_bad, 1 - p_bad), {"good": 1 - p_bad, "bad": p_bad})
            verdict = decide([prediction], metrics, Policy())
            relative = Path(sub) / name if sub else Path(name)
            final = out / verdict.decision / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            staging.replace(final)
            preview = preview_path(final)
            preview.write_bytes(png_bytes(preview_image(level(scan).height, 4.0, caption(verdict))))
            seen = now - (n - i) * 600.0
            entry = journal.add(str(original), final.stat().st_size, final.stat().st_mtime_ns)
            sidecar = plain(
                {
                    "schema_version": SCHEMA_VERSION,
                    "afmwatch_version": __version__,
                    "original_path": str(original),
                    "final_path": str(final),
                    "relative_path": relative.as_posix(),
                    "sort": "move",
                    "sha256": sha256_file(final),
                    "size_bytes": final.stat().st_size,
                    "format": scan.format,
                    "channel": scan.channel,
                    "channels": list(scan.channels),
                    "units": scan.units,
                    "shape": list(scan.shape),
                    "pixel_size_nm": scan.pixel_size_nm,
                    **verdict.to_dict(),
                    "model": {"name": "test-model", "arch": "convnet", "sha256": "0" * 64, "device": "cpu"},
                    "quality": metrics,
                    "denoised": None,
                    "duplicate_of": None,
                    "preview": str(preview),
                    "timings_ms": {"read": 1.0},
                    "settle_attempts": 1,
                    "errors": [],
                    "seen_at": iso_utc(seen),
                    "settled_at": iso_utc(seen + 1),
                    "processed_at": iso_utc(seen + 2),
                }
            )
            validate(sidecar)
            journal.update(
                entry,
                durable=True,
                state=State.ACTING,
                sha256=sidecar["sha256"],
                final_path=str(final),
                sidecar=sidecar,
                decision=verdict.decision,
            )
            write_sidecar(final, sidecar)
            journal.update(entry, state=State.DONE, final_path=str(final), sidecar=sidecar)
    finally:
        journal.close()
    return config_path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`afmwatch review` in its own process (uvicorn, as an operator runs it), on a free port."""

    def __init__(self, config: Path, *, pause: str | None = None, read_only: bool = False):
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        env.pop("AFMWATCH_REVIEW_TEST_PAUSE", None)
        if pause:
            env["AFMWATCH_REVIEW_TEST_PAUSE"] = pause
        command = [sys.executable, "-m", "afmwatch", "review", "--config", str(config), "--port", str(self.port)]
        if read_only:
            command.append("--read-only")
        self.log = open(config.parent / f"review-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.token = ""
        self._wait_ready(config)

    def _wait_ready(self, config: Path) -> None:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"afmwatch review exited: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(self.url + "/api/summary", timeout=2).status_code == 200:
                    self.token = (config.parent / "state" / "review-token").read_text().strip()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("afmwatch review did not start within 120 s")

    def kill(self) -> None:
        """kill -9: no cleanup of any kind."""
        import signal

        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except Exception:
            self.process.kill()
            self.process.wait()
        self.log.close()


REPO = Path(__file__).resolve().parents[1]
