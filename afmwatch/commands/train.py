"""`afmwatch train --data DIR --out MODEL`: train a good/bad classifier on a folder with good/ and bad/."""

from __future__ import annotations

import argparse
import shlex
import sys

from afmwatch.commands.outputs import output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from afmwatch.training.options import TrainOptions

    d = TrainOptions()
    parser.add_argument("--data", required=True, help="folder with good/ and bad/ (e.g. afmwatch's sorted output)")
    parser.add_argument(
        "--out",
        required=True,
        type=output_file,
        help="model file to write (.safetensors); report and plots go beside it",
    )
    parser.add_argument(
        "--arch",
        default=None,
        help="auto (cross-validate the families below on the same folds, keep the best; "
        "near-ties go to the simpler), convnet, compact, resnet18-features, resnet18-finetune, "
        "or metrics-logistic / metrics-boosted over the quality metrics (default: auto for "
        "folders of fewer than 300 scans, else compact; with --base-model, its architecture)",
    )
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default=d.optimizer)
    parser.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    parser.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument(
        "--scheduler",
        choices=["step", "plateau", "cosine", "none"],
        default=d.scheduler,
        help="step: lr x0.1 every 7 epochs; plateau: x0.1 after 3 epochs without better validation loss; "
        "cosine: lr falls along a half cosine to 0 over all epochs",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="share of the scans held out for validation (stratified; default 0.25)",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=d.folds,
        help="K >= 2: stratified K-fold cross-validation (mean ± std) before the final model "
        "(with --arch auto: 5 unless given)",
    )
    parser.add_argument(
        "--group-by",
        default=None,
        metavar="REGEX",
        help="keep scans whose file names give the same match (first group) on one side of every split",
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device)
    parser.add_argument("--base-model", default=None, metavar="MODEL", help="continue training from this model")
    parser.add_argument(
        "--pretrained",
        default=None,
        metavar="PATH",
        help="ImageNet weights for the ResNets (torchvision state dict, .pth or .safetensors)",
    )
    parser.add_argument("--image-size", type=int, default=d.image_size, help="network input (crop) size in pixels")
    parser.add_argument("--resize", type=int, default=d.resize, help="short edge after resizing, before the crop")
    parser.add_argument(
        "--normalise",
        choices=["imagenet", "standardise"],
        default=None,
        help="input normalisation (default: what the architecture expects)",
    )
    parser.add_argument(
        "--data-area",
        choices=["auto", "crop-right-30", "whole"],
        default=d.data_area,
        help="for image exports: detected data area, the study's right-30%% crop, or the whole image",
    )
    parser.add_argument(
        "--level-polynomial",
        type=int,
        choices=[0, 2, 3],
        default=d.level_polynomial,
        help=f"networks: polynomial background removed after plane and row levelling, as microscopists "
        f"remove scanner bow (0: none; default {d.level_polynomial})",
    )
    parser.add_argument("--jitter", type=float, default=d.jitter, help="intensity jitter in training (e.g. 0.1)")
    parser.add_argument(
        "--review-band",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="P(bad) band sent to review (default: chosen from validation)",
    )
    parser.add_argument("--name", default=None, help="model name (default: the output file's name)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all)")
    parser.add_argument(
        "--metrics-features",
        default=d.metrics_features,
        metavar="SET",
        help="metrics models: the metrics they see: all (default), scale-free (ratios, fractions "
        "and scores only: what carries from synthetic scans to an instrument), or a "
        "comma-separated list",
    )
    parser.add_argument(
        "--compare",
        default=None,
        metavar="ARCH[,ARCH...]",
        help="with --folds K: cross-validate these architectures too, on the same folds, and put "
        "the comparison in the report (e.g. convnet,metrics-logistic); with --arch auto: the "
        "candidates to choose from",
    )


def run(args: argparse.Namespace) -> int:
    from afmwatch.networks.model_file import ModelError
    from afmwatch.training.auto import run_train
    from afmwatch.training.options import TrainOptions

    options = TrainOptions(
        arch=args.arch,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        scheduler=args.scheduler,
        val_fraction=args.val_fraction,
        folds=args.folds,
        seed=args.seed,
        device=args.device,
        base_model=args.base_model,
        pretrained=args.pretrained,
        group_by=args.group_by,
        image_size=args.image_size,
        resize=args.resize,
        normalise=args.normalise,
        data_area=args.data_area,
        level_polynomial=args.level_polynomial,
        jitter=args.jitter,
        review_band=tuple(args.review_band) if args.review_band else None,
        name=args.name,
        threads=args.threads,
        metrics_features=args.metrics_features,
    )
    command = _command_line(args, options)
    compare = [a.strip() for a in (args.compare or "").split(",") if a.strip()]
    try:
        report = run_train(args.data, args.out, options, compare, command=command)
    except (ModelError, ValueError, RuntimeError) as exc:
        print(f"afmwatch train: {exc}", file=sys.stderr)
        return 1
    validation = report["validation"] or {}
    cv = report.get("cross_validation")
    print(f"model:    {report['model']}  ({report['options']['arch']}, {report['weights_origin']})")
    print(
        f"data:     {report['data']['count']} scans {report['data']['per_class']}, "
        f"{len(report['data']['skipped'])} unreadable"
    )
    if validation:
        print(
            f"validation ({report['split']['validation']} scans): balanced accuracy "
            f"{validation['balanced_accuracy']:.3f}, ROC AUC {_fmt(validation['roc_auc'])}, "
            f"confusion [[good->good, good->bad], [bad->good, bad->bad]] = {validation['confusion_matrix']}"
        )
    if cv:
        print(
            f"cross-validation ({cv['folds']} folds): balanced accuracy "
            f"{_fmt(cv['balanced_accuracy']['mean'])} ± {_fmt(cv['balanced_accuracy']['std'])}"
        )
    print(
        f"temperature {report['temperature']:.3f}, review band P(bad) in {report['review_band']}, "
        f"best epoch {report['best_epoch']}"
        + ("  (interrupted: best model so far kept)" if report["interrupted"] else "")
    )
    for note in report.get("notes") or []:
        print(f"note:     {note}")
    if "comparison" in report:
        _print_comparison(report)
    print(f"report:   {report['files']['report']}")
    chance = report.get("chance_level")
    if chance and chance["at_chance"]:
        interval = chance["interval_95"]
        print(
            f"afmwatch train: WARNING: this model is no better than chance: balanced accuracy "
            f"{_fmt(chance['balanced_accuracy'])} ({chance['measured_on']}"
            + (f", 95% interval {interval[0]:.3f}-{interval[1]:.3f}" if interval else "")
            + "). It would sort scans about as well as a coin. Check the labels in good/ and bad/, add "
            "scans, or try another --arch; do not promote it.",
            file=sys.stderr,
        )
    return 0


def _print_comparison(report: dict) -> None:
    selection = report.get("selection")
    folds = report["cross_validation"]["folds"]
    if selection:
        print(
            f"auto: {len(selection['candidates'])} candidates cross-validated on the same {folds} folds "
            f"({selection['seconds']:.0f} s), simplest first; balanced accuracy mean ± std:"
        )
    else:
        print(f"same {folds} folds, balanced accuracy (mean ± std):")
    for arch, row in report["comparison"].items():
        if "error" in row:
            print(f"  {arch:<20} failed: {row['error']}")
            continue
        ba = row["balanced_accuracy"]
        seconds = f"   {row['seconds']:.0f} s" if row.get("seconds") is not None else ""
        chosen = "   <- chosen" if selection and arch == selection["chosen"] else ""
        print(
            f"  {arch:<20} {_fmt(ba['mean'])} ± {_fmt(ba['std'])}   ROC AUC {_fmt(row['roc_auc']['mean'])}"
            f"{seconds}{chosen}"
        )
    if selection:
        print(f"chosen:   {selection['reason']}")


def _command_line(args: argparse.Namespace, options) -> str:
    """The equivalent `afmwatch train` command (every option that differs from its default), for the
    model file: enough to redo the training."""
    from dataclasses import asdict

    from afmwatch.training.options import TrainOptions

    words = ["afmwatch", "train", "--data", str(args.data), "--out", str(args.out)]
    defaults = asdict(TrainOptions())
    for key, value in asdict(options).items():
        if value is None or value == defaults[key]:
            continue
        flag = "--" + key.replace("_", "-")
        words += [flag, *map(str, value)] if isinstance(value, tuple) else [flag, str(value)]
    return shlex.join(words)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
