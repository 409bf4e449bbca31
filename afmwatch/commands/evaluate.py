"""`afmwatch evaluate --model M --data DIR`: a model's metrics on a labelled folder, with plots."""

from __future__ import annotations

import argparse
import json
import sys

from afmwatch.commands.classify import add_model_arguments, load_from_args
from afmwatch.commands.outputs import output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="folder with good/ and bad/")
    add_model_arguments(parser)
    parser.add_argument(
        "--out",
        default=None,
        type=output_folder,
        help="folder for evaluation.json, confusion.png, roc.png (default: evaluation-MODELNAME)",
    )
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="MODEL",
        help="evaluate this model too, on the same scans, and print a comparison (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    from afmwatch.config import ConfigError
    from afmwatch.networks.model_file import ModelError
    from afmwatch.training.evaluate import evaluate_folder, write_evaluation
    from afmwatch.verdict import Policy

    try:
        classifier, config = load_from_args(args)
        reading, policy = (config.reading if config else None), Policy.from_config(config)
        report = evaluate_folder(classifier, args.data, batch_size=args.batch_size, reading=reading, policy=policy)
        others = [_evaluate_other(model, args, reading, policy) for model in args.compare]
    except (ModelError, ConfigError, ValueError, RuntimeError) as exc:
        print(f"afmwatch evaluate: {exc}", file=sys.stderr)
        return 2
    if others:
        report["comparison"] = [_summary(r) for r in (report, *others)]
    paths = write_evaluation(report, args.out or f"evaluation-{classifier.name}")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m, d = report["metrics"], report["decisions"]
    ci = m["balanced_accuracy_95ci"]
    print(
        f"model {classifier.name} ({classifier.arch}) on {args.data}: {m['count']} scans, "
        f"{len(report['data']['unreadable'])} unreadable"
    )
    print(
        f"balanced accuracy {_fmt(m['balanced_accuracy'])}"
        + (f" (95% bootstrap interval {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
        + f", accuracy {_fmt(m['accuracy'])}, ROC AUC {_fmt(m['roc_auc'])}"
    )
    present = [name for name, row in zip(("good", "bad"), m["confusion_matrix"]) if sum(row)]
    if len(present) == 1:
        print(f"  only {present[0]} scans given: the balanced accuracy is their recall, not a two-class measure")
    for name in ("good", "bad"):
        print(f"  {name}: precision {_fmt(m['precision'][name])}, recall {_fmt(m['recall'][name])}")
    print(f"confusion (rows true good/bad, columns predicted good/bad): {m['confusion_matrix']}")
    print(
        f"decisions: {d['good']} good, {d['bad']} bad, {d['review']} review; "
        f"accuracy of the sorted (non-review) scans {_fmt(d['accuracy_of_sorted'])}"
    )
    for truth in ("good", "bad"):
        row = d["by_truth"][truth]
        print(f"  {truth} scans sorted good / review / bad: {row['good']} / {row['review']} / {row['bad']}")
    alone = report["model_alone"]
    print(
        f"decided by a quality rule: {d['decided_by_rule']}; unlike the training scans: {d['unfamiliar']}; "
        f"the model alone: balanced accuracy {_fmt(alone['balanced_accuracy'])}"
    )
    print(
        f"files with one scan direction (no trace/retrace comparison): {d['one_direction']} of {len(report['files'])}"
    )
    if report["synthetic"]:
        _print_synthetic(report["synthetic"])
    if others:
        print("on the same scans:")
        for row in report["comparison"]:
            ci = row["balanced_accuracy_95ci"]
            print(
                f"  {row['model']:<28} {row['arch']:<18} balanced accuracy {_fmt(row['balanced_accuracy'])}"
                + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
                + f", ROC AUC {_fmt(row['roc_auc'])}, review {row['review']}"
            )
    print(f"report: {paths['report']}")
    return 0


def _evaluate_other(model: str, args: argparse.Namespace, reading, policy):
    from afmwatch.networks.families import load_classifier
    from afmwatch.networks.store import resolve_model
    from afmwatch.training.evaluate import evaluate_folder

    other = load_classifier(resolve_model(model, args.model_folder), device=args.device)
    return evaluate_folder(other, args.data, batch_size=args.batch_size, reading=reading, policy=policy)


def _summary(report: dict) -> dict:
    """One comparison row: which model, and its headline figures on this folder."""
    m = report["metrics"]
    return {
        "model": report["model"]["name"],
        "arch": report["model"]["arch"],
        "count": m["count"],
        "balanced_accuracy": m["balanced_accuracy"],
        "balanced_accuracy_95ci": m["balanced_accuracy_95ci"],
        "roc_auc": m["roc_auc"],
        "review": report["decisions"]["review"],
    }


def _print_synthetic(breakdown: dict) -> None:
    """Per fault, per surface and by visibility: n, sorted good / review / bad, labelled wrong."""
    print(
        "synthetic set (manifest.json): n, sorted good / review / bad, labelled wrong (the labels balanced accuracy counts)"
    )
    sections = (
        ("bad scans by the fault that ruined them", breakdown["bad_by_fault"]),
        ("good scans by surface", breakdown["good_by_surface"]),
        (
            f"bad scans by how their faults show (at {breakdown['visible_at_noise_rms']:g} noise RMS)",
            breakdown["bad_by_visibility"],
        ),
    )
    for title, groups in sections:
        if groups:
            print(f"  {title}:")
        for name, c in groups.items():
            print(f"    {name:<34} {c['n']:>4}  {c['good']} / {c['review']} / {c['bad']}  wrong {c['labelled_wrong']}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
