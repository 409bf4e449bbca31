"""`afmwatch demo` (what `make run` runs): generated scans arrive, the daemon sorts them all, a summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from daemon_support import REPO, tiny_model

from afmwatch.daemon.sidecar import validate
from afmwatch.networks.store import default_model_path

pytestmark = pytest.mark.slow


def test_demo_sorts_every_generated_scan_and_prints_a_summary(tmp_path):
    # the shipped default model when it is there (as `make run` uses it), else a tiny one
    model = [] if default_model_path().exists() else ["--model", str(tiny_model(tmp_path / "tiny.safetensors"))]
    folder = tmp_path / "demo"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "afmwatch",
            "demo",
            "--folder",
            str(folder),
            "--scans",
            "6",
            "--size",
            "64",
            "--seconds",
            "1",
            "--no-samples",
            "--device",
            "cpu",
            *model,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "6 of 6 scans processed" in done.stdout and "files/s" in done.stdout
    assert str(folder / "output") in done.stdout
    sidecars = sorted((folder / "output").rglob("*.afmwatch.json"))
    assert len(sidecars) == 6
    for path in sidecars:
        sidecar = json.loads(path.read_text())
        validate(sidecar)
        assert path.relative_to(folder / "output").parts[0] == sidecar["decision"]
    assert not list((folder / "inbox").rglob("*.tif")) and not (folder / "staging").exists()
