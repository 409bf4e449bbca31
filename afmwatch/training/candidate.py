"""A candidate model from the scans people checked, set beside the active model on the same scans.

The review page's "train a candidate" runs this module in a background process
(`python -m afmwatch.training.candidate JOB.json`): `afmwatch train` on the labelled folder (its
library function, `auto.run_train`, with cross-validation), then the comparison a person needs before
promoting it: the candidate's cross-validated balanced accuracy (each scan judged by a model that was
not trained on it), the active model's balanced accuracy on the same scans, and the scans the
candidate would decide differently (`model_diff`, the daemon's own decision). Progress and the result
are written to the job file (atomically), which the page reads; a page reload loses nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import MutableMapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import structlog

from afmwatch.config import load_config
from afmwatch.durable import atomic_write_bytes
from afmwatch.log import configure_logging
from afmwatch.training.options import TrainOptions

log = structlog.get_logger(__name__)

# training events that move the progress line on (the rest stay in the job's log file)
PROGRESS_EVENTS = ("training_data_found", "default_arch", "fold_done", "epoch_done", "model_saved")


def read_job(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_job(path: Path, job: dict[str, Any]) -> None:
    job["updated_at"] = time.time()
    atomic_write_bytes(path, (json.dumps(job, indent=1, default=str) + "\n").encode("utf-8"), sync=False)


def options_from(spec: dict[str, Any]) -> TrainOptions:
    """TrainOptions from the job's `options` (only known names; the rest is an error)."""
    known = {f.name for f in fields(TrainOptions)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"unknown training options: {', '.join(unknown)}")
    return TrainOptions(**spec)


def compare_with_active(
    candidate_path: Path, active_path: Path, data: Path, report: dict[str, Any], config_path: Path | None
) -> dict[str, Any]:
    """The candidate beside the active model on the labelled scans of `data`."""
    from afmwatch.networks.families import load_classifier
    from afmwatch.training.data import collect_files
    from afmwatch.training.model_diff import diff_models
    from afmwatch.training.promotion import measure_model
    from afmwatch.verdict import Policy

    config = load_config(config_path) if config_path else None
    reading = config.reading if config else None
    cv = report.get("cross_validation") or {}
    active = measure_model(active_path, data, reading)
    candidate = load_classifier(candidate_path, device="cpu")
    files, _ = collect_files(data)
    diff = diff_models(
        candidate,
        load_classifier(active_path, device="cpu"),
        data,
        policy=Policy.from_config(config),
        reading=reading,
        paths=[f.path for f in files],
    )
    return {
        "candidate": {
            "name": candidate.name,
            "file": str(candidate_path),
            "arch": candidate.arch,
            "balanced_accuracy": (cv.get("balanced_accuracy") or {}).get("mean"),
            "balanced_accuracy_std": (cv.get("balanced_accuracy") or {}).get("std"),
            "folds": cv.get("folds"),
            "measured": "cross-validated on these scans",
        },
        "active": {
            "name": active["name"],
            "file": str(active_path),
            "arch": active["arch"],
            "balanced_accuracy": active["balanced_accuracy"],
            "measured": "on these scans (the model alone, before the rules)",
        },
        "scans": len(files),
        "diff": diff,
    }


class _Progress:
    """A structlog processor that copies training events into the job file's `step`."""

    def __init__(self, job_path: Path, job: dict[str, Any]):
        self.job_path, self.job = job_path, job

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        name = event.get("event")
        if name in PROGRESS_EVENTS:
            details = {k: v for k, v in event.items() if k not in ("event", "level", "timestamp")}
            self.job["step"] = {"event": name, **details}
            write_job(self.job_path, self.job)
        return event


def run_job(job_path: Path) -> int:
    """Carry out the job described in `job_path` (data, out, options, active, config); 0 when done."""
    from afmwatch.training.auto import run_train

    job = read_job(job_path)
    configure_logging("info", json_lines=True)
    config = structlog.get_config()
    structlog.configure(processors=[_Progress(job_path, job), *config["processors"]])
    try:
        job.update(state="training", started_at=time.time(), pid=os.getpid())
        write_job(job_path, job)
        out = Path(job["out"])
        report = run_train(
            job["data"], out, options_from(job.get("options") or {}), command=job.get("command", ""), progress=False
        )
        job.update(
            state="comparing",
            report={
                "model": report["model"],
                "arch": report["options"]["arch"],
                "data": {k: report["data"][k] for k in ("count", "per_class")},
                "cross_validation": report.get("cross_validation"),
                "chance_level": report.get("chance_level"),
            },
        )
        write_job(job_path, job)
        config_path = Path(job["config"]) if job.get("config") else None
        job["comparison"] = compare_with_active(out, Path(job["active"]), Path(job["data"]), report, config_path)
        job.update(state="done", finished_at=time.time())
        write_job(job_path, job)
        log.info("candidate_ready", model=str(out), changed=job["comparison"]["diff"]["changed"])
        return 0
    except Exception as exc:  # the job's one boundary: whatever went wrong goes to the page, in words
        job.update(state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=time.time())
        write_job(job_path, job)
        log.error("candidate_failed", error=str(exc), traceback=traceback.format_exc())
        return 1


if __name__ == "__main__":
    sys.exit(run_job(Path(sys.argv[1])))
