"""`afmwatch models list|show|promote|history|rollback|diff|combine`: the model store of the configured
model folder (every promoted model kept, any of them made active again), which scans a model would
decide differently, and one model file made from a network and a metrics model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from afmwatch.commands.outputs import output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-folder", default=None, help="model store folder (default: model_folder in --config)")
    parser.add_argument("--config", default=None, help="config file whose model_folder is the store")
    parser.add_argument("--json", action="store_true")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="name, architecture, creation time and validation metrics of each model")
    show = sub.add_parser("show", help="everything stored about one model")
    show.add_argument("model", help="model name, file name in the store, or a path")
    promote = sub.add_parser("promote", help="verify a model, then install it as the store's active model")
    promote.add_argument("model", help="model file (or a name in the store)")
    promote.add_argument(
        "--data",
        default=None,
        metavar="LABELLED_FOLDER",
        help="folder with good/ and bad/: measure the model and the active one on these scans "
        "and refuse a model whose balanced accuracy is lower",
    )
    promote.add_argument(
        "--force",
        action="store_true",
        help="with --data: promote even when the model measures worse than the active one",
    )
    history = sub.add_parser("history", help="every promotion and rollback of the store's active model, oldest first")
    _store_options(history)
    rollback = sub.add_parser(
        "rollback", help="make an earlier model active again (verified like a promotion; default: the previous one)"
    )
    rollback.add_argument(
        "model", nargs="?", default=None, help="a model in the store (default: the model active before this one)"
    )
    _store_options(rollback)
    diff = sub.add_parser(
        "diff",
        help="the scans whose decision would change with NEW instead of the active model (nothing is moved)",
    )
    diff.add_argument("new", metavar="NEW", help="model file, or a name in the store")
    diff.add_argument(
        "--against",
        default="active",
        metavar="active|MODEL",
        help="the model to compare with: the store's active model (default; else the shipped default) or a model",
    )
    diff.add_argument(
        "--data", required=True, metavar="FOLDER", help="the scans to judge (a folder; e.g. the daemon's output_root)"
    )
    diff.add_argument("--batch-size", type=int, default=16, help="scans per forward pass")
    _store_options(diff)
    combine = sub.add_parser(
        "combine",
        help="one model file from a network and a metrics model, their weight "
        "and review band chosen on labelled scans neither was trained on",
    )
    combine.add_argument("network", help="network model file (compact, convnet, resnet18-*)")
    combine.add_argument("metrics_model", help="metrics model file (metrics-logistic or metrics-boosted)")
    combine.add_argument(
        "--data",
        required=True,
        metavar="LABELLED_FOLDER",
        help="folder with good/ and bad/ that neither model was trained on",
    )
    combine.add_argument(
        "--out", required=True, type=output_file, help="the combined model file to write (.safetensors)"
    )
    combine.add_argument(
        "--weight",
        type=float,
        default=None,
        help="the metrics model's weight 0..1 (default: the lowest log-loss on --data)",
    )
    combine.add_argument("--name", default=None, help="model name (default: the output file's name)")


def _store_options(parser: argparse.ArgumentParser) -> None:
    """--model-folder, --config and --json also after the action (`models diff NEW --data D --json`);
    SUPPRESS keeps the value given before the action when they are not repeated."""
    parser.add_argument("--model-folder", default=argparse.SUPPRESS, help="model store folder")
    parser.add_argument("--config", default=argparse.SUPPRESS, help="config file (model_folder, reading, rules)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS)


def _folder(args: argparse.Namespace) -> Path | None:
    if args.model_folder:
        return Path(args.model_folder)
    if args.config:
        from afmwatch.config import load_config

        return load_config(args.config).model_folder
    return None


def run(args: argparse.Namespace) -> int:
    from afmwatch.config import ConfigError
    from afmwatch.networks import store
    from afmwatch.networks.model_file import ModelError, read_metadata

    try:
        folder = _folder(args)
        if args.action in ("list", "promote", "history", "rollback") and folder is None:
            print("afmwatch models: give --model-folder DIR or --config FILE with model_folder", file=sys.stderr)
            return 2
        if args.action == "combine":
            return _combine(args)
        if args.action == "diff":
            return _diff(args, folder)
        if args.action == "history":
            assert folder is not None  # checked above
            return _history(folder, args.json)
        if args.action == "rollback":
            assert folder is not None  # checked above
            target = store.rollback(folder, args.model)
            print(f"rolled back: {target.name} is the active model again (verified: loads and classifies a probe scan)")
            return 0
        if args.action == "list":
            assert folder is not None  # checked above
            rows = store.list_models(folder)
            default = store.default_model_path()
            if default.exists():
                rows.append({**store.model_summary(default, read_metadata(default), None), "shipped_default": True})
            if args.json:
                print(json.dumps(rows, indent=2))
            for row in rows if not args.json else []:
                flag = "*" if row.get("active") else " "
                if "error" in row:
                    print(f"{flag} {row['name']:<28} not usable: {row['error']}")
                    continue
                bacc = row["balanced_accuracy"]
                print(
                    f"{flag} {row['name']:<28} {row['arch']:<18} {row['created'] or '':<26} "
                    f"val. balanced accuracy {'n/a' if bacc is None else f'{bacc:.3f}'}  {row['file']}"
                )
            return 0
        if args.action == "show":
            path = Path(args.model)
            if not path.exists():
                path = store.find_model(args.model, folder) if folder else store.resolve_model(args.model)
            meta = read_metadata(path)
            print(json.dumps({"file": str(path), **meta}, indent=2))
            return 0
        assert folder is not None  # promote: checked above
        path = Path(args.model)
        if not path.exists():
            path = store.find_model(args.model, folder)
        return _promote(path, folder, args)
    except (ModelError, ConfigError, ValueError) as exc:
        print(f"afmwatch models: {exc}", file=sys.stderr)
        return 1


def _promote(path: Path, folder: Path, args: argparse.Namespace) -> int:
    from afmwatch.training.promotion import promote_checked

    reading = None
    if args.data and args.config:
        from afmwatch.config import load_config

        reading = load_config(args.config).reading
    result = promote_checked(path, folder, args.data, force=args.force, reading=reading)
    candidate, before = result["candidate"], result["active_before"]
    if candidate is not None:
        print(
            f"{candidate['name']}: balanced accuracy {_fmt(candidate['balanced_accuracy'])} on {args.data} "
            f"({candidate['count']} scans)"
        )
        if before is None:
            print("no active model to compare with")
        elif "error" in before:
            print(f"the active model could not be measured ({before['error']})")
        else:
            print(f"active {before['name']}: balanced accuracy {_fmt(before['balanced_accuracy'])} on the same scans")
    if result["forced"]:
        print(
            f"--force: promoting {candidate['name']} although it measures worse than {before['name']} "
            f"({_fmt(candidate['balanced_accuracy'])} < {_fmt(before['balanced_accuracy'])})",
            file=sys.stderr,
        )
    print(f"promoted {path} -> {result['active']} (verified: loads and classifies a probe scan)")
    return 0


def _history(folder: Path, as_json: bool) -> int:
    from afmwatch.networks.store import history

    entries = history(folder)
    if as_json:
        print(json.dumps(entries, indent=2))
        return 0
    if not entries:
        print(f"{folder}: nothing promoted yet")
    for entry in entries:
        replaced = (entry.get("replaced") or {}).get("name") or "-"
        print(f"{entry['at']}  {entry['action']:<8} {entry['name']:<28} replaced {replaced:<28} {entry['file']}")
    return 0


def _diff(args: argparse.Namespace, folder: Path | None) -> int:
    from afmwatch.config import load_config
    from afmwatch.networks.families import load_classifier
    from afmwatch.networks.store import resolve_model
    from afmwatch.training.model_diff import diff_models
    from afmwatch.verdict import Policy

    config = load_config(args.config) if args.config else None
    new = load_classifier(resolve_model(args.new, folder), device="cpu")
    against = None if args.against == "active" else args.against
    old = load_classifier(resolve_model(against, folder), device="cpu")
    report = diff_models(
        new,
        old,
        args.data,
        policy=Policy.from_config(config),
        reading=config.reading if config else None,
        batch_size=args.batch_size,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for change in report["changes"]:
        print(f"{change['before']:>7} -> {change['after']:<7} {change['path']}")
        print(f"        was: {change['reason_before']}")
        print(f"        now: {change['reason_after']}")
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(report["counts"].items())) or "none"
    print(
        f"{report['changed']} of {report['scans']} scans would change decision with {new.name} "
        f"instead of {old.name} ({counts}); nothing was moved"
    )
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _combine(args: argparse.Namespace) -> int:
    from afmwatch.training.combine import combine_models

    if args.weight is not None and not 0.0 <= args.weight <= 1.0:
        raise ValueError(f"--weight {args.weight}: give a weight between 0 and 1")
    reading = None
    if args.config:
        from afmwatch.config import load_config

        reading = load_config(args.config).reading
    report = combine_models(
        args.network, args.metrics_model, args.data, args.out, weight=args.weight, reading=reading, name=args.name
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{args.out}: P(bad) = weighted mean of log-odds, metrics model weight {report['weight']:.2f} "
        f"({report['weight_chosen_by']}); review band {report['review_band']} "
        f"({report['review_fraction']:.0%} of these scans)"
    )
    for part in ("network", "metrics_model", "combined"):
        row = report[part]
        print(
            f"  {part.replace('_', ' '):<14} balanced accuracy {_fmt(row['balanced_accuracy'])}, "
            f"ROC AUC {_fmt(row['roc_auc'])}, log-loss {row['log_loss']:.3f}"
        )
    one = report.get("one_direction")
    if one:
        print(
            f"  files with one scan direction (these scans measured without their retrace): metrics model "
            f"weight {one['weight']:.2f}, review band {one['review_band']} ({one['review_fraction']:.0%}), "
            f"combined balanced accuracy {_fmt(one['combined']['balanced_accuracy'])}, "
            f"ROC AUC {_fmt(one['combined']['roc_auc'])}"
        )
    return 0
