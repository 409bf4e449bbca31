"""`afmwatch models promote MODEL --data LABELLED`: a candidate that measures worse than the store's
active model on the lab's own labelled scans is not installed, unless forced.

Both models are evaluated on the same scans (`evaluate_folder`); what is compared is the model's own
balanced accuracy (P(bad) > 0.5, before the quality rules, which stay the same whichever model is
active). A tie is not worse. The installation itself is `store.promote` (verify, then atomic copy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from afmwatch.config import ReadingConfig
from afmwatch.networks.families import load_classifier
from afmwatch.networks.model_file import ModelError
from afmwatch.networks.store import active_model_path, promote
from afmwatch.training.evaluate import evaluate_folder

log = structlog.get_logger(__name__)


class WorseThanActive(ModelError):
    """The candidate measured worse than the active model on the labelled scans; nothing was installed."""


def measure_model(path: str | Path, data: str | Path, reading: ReadingConfig | None = None) -> dict[str, Any]:
    """A model's own balanced accuracy on a labelled folder, with its name, hash and the scan count."""
    classifier = load_classifier(path, device="cpu")
    report = evaluate_folder(classifier, data, reading=reading)
    return {
        "name": classifier.name,
        "file": str(path),
        "sha256": classifier.sha256,
        "arch": classifier.arch,
        "balanced_accuracy": report["model_alone"]["balanced_accuracy"],
        "count": report["metrics"]["count"],
    }


def promote_checked(
    model_path: str | Path,
    model_folder: str | Path,
    data: str | Path | None = None,
    force: bool = False,
    reading: ReadingConfig | None = None,
) -> dict[str, Any]:
    """Promote `model_path` into the store; with `data` (a folder with good/ and bad/) only if it
    measures at least as well there as the active model, or with `force`. Returns what was measured
    and done (`candidate`, `active_before`, `worse`, `forced`, `active`); WorseThanActive when refused."""
    if data is None:
        return {
            "candidate": None,
            "active_before": None,
            "worse": False,
            "forced": False,
            "active": str(promote(model_path, model_folder)),
        }
    candidate = measure_model(model_path, data, reading)
    if not candidate["count"]:
        raise ModelError(model_path, f"no readable labelled scans in {data} to measure it on")
    current = active_model_path(model_folder)
    before: dict[str, Any] | None = None
    if current is not None:
        try:
            before = measure_model(current, data, reading)
        except ModelError as exc:  # a broken active model: anything verified is better
            log.warning("active_model_unusable", file=str(current), reason=exc.reason)
            before = {"file": str(current), "error": exc.reason}
    worse = (
        before is not None
        and before.get("balanced_accuracy") is not None
        and before["sha256"] != candidate["sha256"]
        and candidate["balanced_accuracy"] < before["balanced_accuracy"]
    )
    fields = dict(
        candidate=candidate["name"],
        candidate_balanced_accuracy=candidate["balanced_accuracy"],
        active=(before or {}).get("name"),
        active_balanced_accuracy=(before or {}).get("balanced_accuracy"),
        data=str(data),
        scans=candidate["count"],
    )
    if worse and not force:
        assert before is not None  # worse implies an active model was measured
        log.warning("promotion_refused", **fields)
        raise WorseThanActive(
            model_path,
            (
                f"balanced accuracy {candidate['balanced_accuracy']:.3f} on {data} ({candidate['count']} scans) is "
                f"worse than the active model's, {before['name']} ({before['balanced_accuracy']:.3f}); not promoted "
                "(--force promotes it anyway)"
            ),
        )
    if worse:
        log.warning("promotion_forced", **fields)
    active = promote(model_path, model_folder)
    return {
        "candidate": candidate,
        "active_before": before,
        "worse": worse,
        "forced": bool(worse and force),
        "active": str(active),
    }
