"""`afmwatch train --arch auto`, the default for folders of fewer than `AUTO_MAX_SCANS` scans: which
model family suits this lab's scans is measured, not guessed.

Every candidate (the metrics models, the small networks, the ResNets when ImageNet weights are given)
is cross-validated on the lab's own folder, on the same folds; the best by mean balanced accuracy is
kept, except that a simpler candidate within one standard error of it wins (the "one-standard-error
rule" of Breiman et al., CART, 1984): on a few dozen scans a smaller difference is noise, and the
simpler model is faster, easier to read and less likely to have fitted that noise. The chosen family
is then trained on all the data exactly as `train --arch FAMILY` would, reusing its cross-validation.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from afmwatch.networks.model_file import ModelError
from afmwatch.training.compare import add_comparison, cross_validate_arch, options_for, summary
from afmwatch.training.data import count_labelled
from afmwatch.training.families import FAMILIES, train_model
from afmwatch.training.options import TrainOptions
from afmwatch.training.report import write_json
from afmwatch.training.run import check_options

log = structlog.get_logger(__name__)

AUTO = "auto"
# Below this many scans `train` chooses the family by cross-validation (a few minutes on 2 CPU cores
# for 60 scans, about 5 x 2 network trainings); above it, compact, which suits large sets, without the
# comparison's cost (give --arch auto to have it anyway).
AUTO_MAX_SCANS = 300
AUTO_FOLDS = 5
# Simplest first (fewest weights, fastest, most readable); this order breaks near-ties. A family not
# listed here ranks after these.
SIMPLEST_FIRST = ("metrics-logistic", "metrics-boosted", "compact", "convnet", "resnet18-features", "resnet18-finetune")
MIN_TOLERANCE = 0.02  # a near-tie is at least this close (one scan in 50), even when every fold agreed
SELECTION_RULE = (
    "highest mean cross-validated balanced accuracy, except that the simplest candidate within one "
    f"standard error of that mean (the best's fold std / sqrt(folds), at least {MIN_TOLERANCE}) is chosen; "
    "simplest first: " + ", ".join(SIMPLEST_FIRST)
)


def _rank(arch: str) -> int:
    return SIMPLEST_FIRST.index(arch) if arch in SIMPLEST_FIRST else len(SIMPLEST_FIRST)


def known_families() -> list[str]:
    return list(FAMILIES)


def auto_candidates(options: TrainOptions) -> list[str]:
    """Every family, simplest first; the torchvision networks only with --pretrained weights (nothing
    is downloaded, and from scratch they only lose on a few dozen scans)."""
    usable = [arch for arch in known_families() if not FAMILIES[arch].imagenet or options.pretrained]
    return sorted(usable, key=_rank)


def default_arch(data: str | Path, options: TrainOptions) -> str | None:
    """--arch when given; None with --base-model (its own architecture); else `auto` for folders of
    fewer than AUTO_MAX_SCANS labelled scans and compact for larger ones."""
    if options.arch or options.base_model:
        return options.arch
    count = count_labelled(data)
    arch = AUTO if count < AUTO_MAX_SCANS else "compact"
    log.info("default_arch", arch=arch, scans=count, auto_below=AUTO_MAX_SCANS)
    return arch


def choose_architecture(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The choice among cross-validated candidates (`SELECTION_RULE`): `chosen`, the `best` by mean,
    the `tolerance` that counted as a tie, and the `reason` in words. Candidates that failed carry an
    `error` and are passed over; ValueError when all failed."""
    scored = {a: r for a, r in results.items() if "error" not in r and r["balanced_accuracy"]["mean"] is not None}
    if not scored:
        errors = sorted({r.get("error", "no balanced accuracy") for r in results.values()})
        raise ValueError(
            errors[0]
            if len(errors) == 1
            else "no candidate could be cross-validated: "
            + "; ".join(f"{a}: {r.get('error', 'no balanced accuracy')}" for a, r in results.items())
        )

    def mean(arch: str) -> float:
        return scored[arch]["balanced_accuracy"]["mean"]

    best = max(scored, key=lambda a: (mean(a), -_rank(a)))
    spread = scored[best]["balanced_accuracy"]["std"] or 0.0
    tolerance = max(spread / math.sqrt(scored[best]["folds"]), MIN_TOLERANCE)
    ties = sorted((a for a in scored if mean(a) >= mean(best) - tolerance), key=_rank)
    chosen = ties[0]
    folds = scored[chosen]["folds"]
    if chosen != best:
        reason = (
            f"{chosen} ({mean(chosen):.3f}) is within one standard error ({tolerance:.3f}) of the best, "
            f"{best} ({mean(best):.3f}), and simpler: a difference that small is noise on "
            f"{scored[best]['count']} scans"
        )
    else:
        reason = f"{chosen}: the highest mean balanced accuracy over {folds} folds ({mean(chosen):.3f})"
        runner_up = sorted((a for a in scored if a != chosen), key=mean, reverse=True)[:1]
        if len(ties) > 1:
            reason += f", and the simplest of those within one standard error ({tolerance:.3f}): {', '.join(ties)}"
        elif runner_up:
            reason += (
                f"; the next, {runner_up[0]} ({mean(runner_up[0]):.3f}), is more than one standard "
                f"error ({tolerance:.3f}) below"
            )
    return {"chosen": chosen, "best": best, "tolerance": round(tolerance, 4), "reason": reason}


def select_architecture(
    data: str | Path, options: TrainOptions, candidates: list[str], progress: bool = True
) -> dict[str, Any]:
    """Cross-validate every candidate on the same folds and choose; returns the choice
    (`choose_architecture`), every candidate's full `cross_validation` (or its `error`) and the seconds."""
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for arch in candidates:
        log.info("auto_candidate", arch=arch, folds=options.folds)
        try:
            results[arch] = cross_validate_arch(data, options_for(options, arch), progress)
        except (ValueError, ModelError, RuntimeError) as exc:  # this family cannot train here; the others may
            log.warning("auto_candidate_failed", arch=arch, reason=str(exc))
            results[arch] = {"error": str(exc)}
    choice = choose_architecture(results)
    log.info("auto_chosen", **choice)
    return {**choice, "cross_validations": results, "seconds": round(time.monotonic() - started, 1)}


def train_auto(
    data: str | Path,
    out: str | Path,
    options: TrainOptions,
    candidates: list[str] | None = None,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Choose the family by cross-validation (`select_architecture`, K = options.folds, else
    AUTO_FOLDS), then train it on all the data as `train_model` does; the report gains `comparison`
    (one row per candidate, simplest first) and `selection` (what was chosen and why)."""
    if options.base_model:
        raise ValueError("--arch auto compares fresh models; --base-model continues one (leave out --arch)")
    candidates = list(candidates or auto_candidates(options))
    unknown = [a for a in candidates if a not in known_families()]
    if unknown:
        raise ValueError(f"unknown architecture {', '.join(unknown)} (known: {', '.join(known_families())})")
    options = replace(options, folds=options.folds if options.folds >= 2 else AUTO_FOLDS)
    check_options(options)
    selection = select_architecture(data, options, candidates, progress)
    chosen = selection["chosen"]
    final = replace(options_for(options, chosen), name=options.name)
    report = train_model(data, out, final, command, progress, cross_validation=selection["cross_validations"][chosen])
    results = selection["cross_validations"]
    report["comparison"] = {
        arch: results[arch] if "error" in results[arch] else summary(results[arch])
        for arch in sorted(candidates, key=_rank)
    }
    report["selection"] = {
        "arch": AUTO,
        "candidates": candidates,
        "chosen": chosen,
        "best": selection["best"],
        "tolerance": selection["tolerance"],
        "reason": selection["reason"],
        "rule": SELECTION_RULE,
        "folds": options.folds,
        "seconds": selection["seconds"],
    }
    write_json(report, report["files"]["report"])
    return report


def run_train(
    data: str | Path,
    out: str | Path,
    options: TrainOptions,
    compare: list[str] | None = None,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """`afmwatch train`: the default architecture for the folder (`default_arch`), then `train_auto`
    (where `compare` names the candidates) or `train_model` (where `compare` names architectures to
    cross-validate beside it on the same folds)."""
    check_options(options)
    options = replace(options, arch=default_arch(data, options))
    if options.arch == AUTO:
        return train_auto(data, out, options, compare, command, progress)
    if compare and options.folds < 2:
        raise ValueError("--compare needs --folds K (K >= 2)")
    report = train_model(data, out, options, command, progress)
    if compare:
        add_comparison(report, data, options, compare, progress)
    return report
