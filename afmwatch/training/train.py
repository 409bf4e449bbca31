"""Training a good/bad classifier: an explicit PyTorch loop (forward, loss, backward, step), as in
torchvision's reference scripts, with the study's options, a best-validation checkpoint, class-weighted
loss, temperature scaling and a review band chosen on validation, and honest metrics (stratified
validation split that never leaks a file or a sample, or K-fold cross-validation)."""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import structlog
import torch
from torch import nn

from afmwatch import __version__
from afmwatch.config import ReadingConfig
from afmwatch.networks import familiarity
from afmwatch.networks import pipeline as input_pipeline
from afmwatch.networks.architectures import get_architecture, hub_cache_weights, set_train_mode
from afmwatch.networks.classifier import check_metadata, resolve_device, save_classifier
from afmwatch.networks.model_file import ModelError, load_model_file
from afmwatch.networks.prediction import CLASS_NAMES
from afmwatch.training.calibration import DEFAULT_REVIEW_BAND, choose_review_band, fit_temperature, softmax
from afmwatch.training.metrics import bootstrap_interval, classification_metrics
from afmwatch.training.options import TrainOptions
from afmwatch.training.splits import kfold_splits, validation_split

log = structlog.get_logger(__name__)


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, float | None]]
    best_epoch: int | None
    val_logits: np.ndarray
    interrupted: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


STEP_SIZE, STEP_GAMMA, PLATEAU_PATIENCE = 7, 0.1, 3


def _stack(arrays: list[np.ndarray], spec: dict[str, Any], rng: np.random.Generator | None) -> torch.Tensor:
    return torch.stack([input_pipeline.finish(a, spec, rng) for a in arrays])


def _make_optimizer(model: nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)
    if options.optimizer == "adam":
        return torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    raise ValueError(f"unknown optimizer {options.optimizer!r} (sgd or adam)")


def _make_scheduler(optimizer: torch.optim.Optimizer, options: TrainOptions) -> Any:
    if options.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=STEP_SIZE, gamma=STEP_GAMMA)
    if options.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=PLATEAU_PATIENCE)
    if options.scheduler == "none":
        return None
    raise ValueError(f"unknown scheduler {options.scheduler!r} (step, plateau or none)")


def _evaluate(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    device: torch.device,
    batch_size: int,
) -> tuple[float, np.ndarray]:
    """Mean loss and logits over fixed (centre-crop) inputs."""
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            outputs.append(model(inputs[start : start + batch_size].to(device)).float().cpu())
    logits = torch.cat(outputs) if outputs else torch.zeros((0, len(CLASS_NAMES)))
    loss = float(loss_fn(logits, labels)) if len(labels) else float("nan")
    return loss, logits.numpy()


def build_model(
    options: TrainOptions, spec: dict[str, Any], init: dict[str, torch.Tensor] | None
) -> tuple[nn.Module, str]:
    """The network to train and a note on where its starting weights came from."""
    assert options.arch is not None, "resolve_start fills in the architecture"
    arch = get_architecture(options.arch)
    pretrained = None
    if init is None and arch.torchvision_name:
        pretrained = Path(options.pretrained) if options.pretrained else hub_cache_weights(arch.torchvision_name)
    elif options.pretrained and not arch.torchvision_name:
        raise ValueError(f"--pretrained applies to the torchvision networks, not to {options.arch}")
    model = arch.build(len(CLASS_NAMES), spec["crop"], pretrained)
    if init is not None:
        model.load_state_dict(init, strict=True)
        return model, f"continued from base model {options.base_model}"
    if pretrained is not None:
        return model, f"ImageNet weights from {pretrained}"
    if arch.torchvision_name:
        return model, ("trained from scratch: no ImageNet weights given (--pretrained) and none in the torch hub cache")
    return model, "random initialisation (seeded)"


def fit(
    arrays: list[np.ndarray],
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    options: TrainOptions,
    spec: dict[str, Any],
    init: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
    desc: str = "training",
) -> FitResult:
    """Train one model on `train_idx`, keep the weights of the best validation epoch (balanced accuracy,
    then loss). Ctrl-C ends training after the current batch and keeps the best weights so far."""
    from tqdm import tqdm

    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    device = resolve_device(options.device)
    model, origin = build_model(options, spec, init)
    model.to(device)
    train_labels = labels[train_idx]
    counts = np.bincount(train_labels, minlength=len(CLASS_NAMES))
    if (counts == 0).any():
        raise ValueError(f"the training part lacks a class (good: {counts[0]}, bad: {counts[1]} scans)")
    weights = torch.tensor(len(train_labels) / (len(CLASS_NAMES) * counts), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device))
    eval_loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = _make_optimizer(model, options)
    scheduler = _make_scheduler(optimizer, options)
    val_inputs = _stack([arrays[i] for i in val_idx], spec, None) if len(val_idx) else None
    val_labels = torch.as_tensor(labels[val_idx], dtype=torch.long)
    batches = int(np.ceil(len(train_idx) / options.batch_size))
    history: list[dict[str, float | None]] = []
    best_key, best_state, best_epoch = None, None, None
    interrupted = False
    started = time.monotonic()
    bar = tqdm(total=options.epochs * batches, desc=desc, unit="batch", disable=None if progress else True)
    try:
        for epoch in range(1, options.epochs + 1):
            set_train_mode(model)
            order = rng.permutation(train_idx)
            loss_sum, correct = 0.0, 0
            for start in range(0, len(order), options.batch_size):
                picked = order[start : start + options.batch_size]
                inputs = _stack([arrays[i] for i in picked], spec, rng).to(device)
                targets = torch.as_tensor(labels[picked], dtype=torch.long, device=device)
                optimizer.zero_grad(set_to_none=True)
                outputs = model(inputs)  # forward
                loss = loss_fn(outputs, targets)
                loss.backward()  # backward
                optimizer.step()  # step
                loss_sum += float(loss.detach()) * len(picked)
                correct += int((outputs.argmax(1) == targets).sum())
                bar.update(1)
            record: dict[str, float | None] = {
                "epoch": epoch,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / len(order),
                "train_accuracy": correct / len(order),
                "val_loss": None,
                "val_accuracy": None,
                "val_balanced_accuracy": None,
            }
            if val_inputs is not None:
                val_loss, logits = _evaluate(model, val_inputs, val_labels, eval_loss_fn, device, options.batch_size)
                metrics = classification_metrics(labels[val_idx], softmax(logits)[:, 1])
                record.update(
                    val_loss=val_loss,
                    val_accuracy=metrics["accuracy"],
                    val_balanced_accuracy=metrics["balanced_accuracy"],
                )
                key = (metrics["balanced_accuracy"] or 0.0, -val_loss)
            else:
                key = (float(epoch), 0.0)  # no validation: the last epoch is the model
            history.append(record)
            if best_key is None or key > best_key:
                best_key, best_epoch = key, epoch
                best_state = copy.deepcopy(model.state_dict())
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", val_bacc=record["val_balanced_accuracy"])
            log.info("epoch_done", **record)
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                # train_loss is always set; the dict's type cannot say so per key
                scheduler.step(
                    cast(float, record["val_loss"] if record["val_loss"] is not None else record["train_loss"])
                )
            elif scheduler is not None:
                scheduler.step()
    except KeyboardInterrupt:
        interrupted = True
        log.warning("training_interrupted", epochs_done=len(history), best_epoch=best_epoch)
        if best_state is None:
            raise
    finally:
        bar.close()
    assert best_state is not None  # kept by the first epoch; an interrupt before it re-raised
    model.load_state_dict(best_state)
    val_logits = np.zeros((0, len(CLASS_NAMES)))
    if val_inputs is not None:
        _, val_logits = _evaluate(model, val_inputs, val_labels, eval_loss_fn, device, options.batch_size)
    model.to("cpu").eval()
    return FitResult(model, history, best_epoch, val_logits, interrupted, time.monotonic() - started, [origin])


def check_options(options: TrainOptions) -> None:
    """ValueError naming every option out of range (before minutes of reading and training)."""
    problems = []
    if options.epochs < 1:
        problems.append(f"--epochs must be at least 1 (got {options.epochs})")
    if options.batch_size < 1:
        problems.append(f"--batch-size must be at least 1 (got {options.batch_size})")
    if options.lr <= 0:
        problems.append(f"--lr must be positive (got {options.lr})")
    if not 0 <= options.val_fraction < 1:
        problems.append(f"--val-fraction must be in [0, 1) (got {options.val_fraction})")
    if options.folds == 1 or options.folds < 0:
        problems.append(f"--folds must be 0 (none) or at least 2 (got {options.folds})")
    if options.review_band and not 0 <= options.review_band[0] <= options.review_band[1] <= 1:
        problems.append(f"--review-band needs 0 <= LOW <= HIGH <= 1 (got {list(options.review_band)})")
    if problems:
        raise ValueError("; ".join(problems))


def _mean_std(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(present)), "std": float(np.std(present, ddof=1)) if len(present) > 1 else 0.0}


def cross_validate_folds(
    labels: np.ndarray,
    hashes: list[str],
    groups: list[str | None],
    folds: int,
    seed: int,
    fit_fold: Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, int | None]],
) -> dict[str, Any]:
    """K stratified folds, each validated once by `fit_fold(k, train_idx, val_idx) -> (validation
    logits, best epoch)`: per-fold metrics (after temperature scaling), mean ± std of balanced
    accuracy, accuracy and ROC AUC, and every scan's out-of-fold P(bad) (for the chance-level check).
    Networks and metrics models go through here, so they are cross-validated alike."""
    per_fold = []
    out_of_fold = np.full(len(labels), np.nan)
    for k, (train_idx, val_idx) in enumerate(kfold_splits(labels, hashes, groups, folds, seed)):
        val_logits, best_epoch = fit_fold(k, train_idx, val_idx)
        temperature = fit_temperature(val_logits, labels[val_idx])
        p_bad = softmax(val_logits, temperature)[:, 1]
        out_of_fold[val_idx] = p_bad
        metrics = classification_metrics(labels[val_idx], p_bad)
        metrics.update(fold=k + 1, train_count=len(train_idx), best_epoch=best_epoch, temperature=temperature)
        per_fold.append(metrics)
        log.info("fold_done", fold=k + 1, balanced_accuracy=metrics["balanced_accuracy"], roc_auc=metrics["roc_auc"])
    summary = {key: _mean_std([m[key] for m in per_fold]) for key in ("balanced_accuracy", "accuracy", "roc_auc")}
    return {
        "folds": folds,
        "per_fold": per_fold,
        **summary,
        "out_of_fold": {"labels": labels.tolist(), "p_bad": out_of_fold.round(6).tolist()},
    }


def cross_validate(
    arrays: list[np.ndarray],
    labels: np.ndarray,
    hashes: list[str],
    groups: list[str | None],
    options: TrainOptions,
    spec: dict[str, Any],
    init: dict[str, torch.Tensor] | None,
    progress: bool,
) -> dict[str, Any]:
    """`cross_validate_folds` with the network trained by `fit` on each fold."""

    def fit_fold(k: int, train_idx: np.ndarray, val_idx: np.ndarray) -> tuple[np.ndarray, int | None]:
        result = fit(arrays, labels, train_idx, val_idx, options, spec, init, progress, desc=f"fold {k + 1}")
        return result.val_logits, result.best_epoch

    return cross_validate_folds(labels, hashes, groups, options.folds, options.seed, fit_fold)


# A run whose balanced accuracy is below this, or whose 95 % interval reaches down to 0.5, has not
# shown that it beats guessing: on a few dozen scans 0.6 is two or three lucky calls above chance.
CHANCE_BELOW = 0.6
CHANCE_RULE = (
    f"balanced accuracy (cross-validated mean, else validation) below {CHANCE_BELOW}, or its 95 % "
    "bootstrap interval (over the out-of-fold, else the validation predictions) reaching 0.5"
)


def chance_level(report: dict[str, Any], seed: int = 0) -> dict[str, Any] | None:
    """Whether the run has not shown that it beats chance (`CHANCE_RULE`), from its cross-validation
    when it has one, else from its validation split; None when it has neither. Logs a warning event
    when at chance: such a model sorts scans no better than a coin."""
    cv, validation = report.get("cross_validation"), report.get("validation")
    if cv:
        source, value = "cross-validation", cv["balanced_accuracy"]["mean"]
        labels, p_bad = cv["out_of_fold"]["labels"], cv["out_of_fold"]["p_bad"]
    elif validation:
        source, value = "validation", validation["balanced_accuracy"]
        labels, p_bad = validation["labels"], validation["p_bad"]
    else:
        return None
    interval = bootstrap_interval(np.asarray(labels), np.asarray(p_bad), seed=seed)
    at_chance = value is None or value < CHANCE_BELOW or interval is None or interval[0] <= 0.5
    result = {
        "at_chance": bool(at_chance),
        "measured_on": source,
        "balanced_accuracy": value,
        "interval_95": list(interval) if interval else None,
        "rule": CHANCE_RULE,
    }
    if at_chance:
        log.warning(
            "training_at_chance",
            measured_on=source,
            balanced_accuracy=value,
            interval_95=result["interval_95"],
            arch=report["options"]["arch"],
        )
    return result


def resolve_start(options: TrainOptions) -> tuple[TrainOptions, dict[str, Any] | None, dict[str, torch.Tensor] | None]:
    """Options with the base model's architecture and pipeline filled in, the base pipeline (or None)
    and its weights (or None)."""
    if not options.base_model:
        return replace(options, arch=options.arch or "compact"), None, None
    base_model = options.base_model
    tensors, meta = load_model_file(base_model)
    meta = check_metadata(meta, base_model)
    options = replace(options, arch=options.arch or meta["arch"])
    if options.arch != meta["arch"]:
        raise ModelError(base_model, f"base model is {meta['arch']}, not {options.arch}")
    return options, meta["pipeline"], tensors


def make_spec(options: TrainOptions, base_pipeline: dict[str, Any] | None) -> dict[str, Any]:
    if base_pipeline is not None:
        return input_pipeline.check_pipeline(dict(base_pipeline, jitter=options.jitter), "<base model>")
    assert options.arch is not None, "resolve_start fills in the architecture"
    arch = get_architecture(options.arch)
    return input_pipeline.make_pipeline(
        arch.channels,
        options.normalise or arch.normalise,
        resize=options.resize,
        crop=options.image_size,
        data_area=options.data_area,
        jitter=options.jitter,
    )


def train_arrays(
    arrays: list[np.ndarray],
    labels: np.ndarray,
    hashes: list[str],
    groups: list[str | None],
    options: TrainOptions,
    spec: dict[str, Any],
    init: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
    cross_validation: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Cross-validation (when asked, unless `cross_validation` already holds it for these folds), then
    the final model on a stratified validation split, its temperature and review band, and whether it
    is at chance level; returns the model and the report (without data and file details)."""
    check_options(options)
    if options.threads:
        torch.set_num_threads(options.threads)
    labels = np.asarray(labels, dtype=int)
    report: dict[str, Any] = {"options": asdict(options), "pipeline": spec, "class_names": list(CLASS_NAMES)}
    if cross_validation is not None:  # already run on these folds (`train --arch auto` chose with it)
        report["cross_validation"] = cross_validation
    elif options.folds and options.folds >= 2:
        report["cross_validation"] = cross_validate(arrays, labels, hashes, groups, options, spec, init, progress)
    if options.val_fraction > 0:
        train_idx, val_idx = validation_split(labels, hashes, groups, options.val_fraction, options.seed)
    else:
        train_idx, val_idx = np.arange(len(labels)), np.arange(0)
    result = fit(arrays, labels, train_idx, val_idx, options, spec, init, progress)
    if len(val_idx):
        temperature = fit_temperature(result.val_logits, labels[val_idx])
        p_bad = softmax(result.val_logits, temperature)[:, 1]
        band = tuple(options.review_band) if options.review_band else choose_review_band(p_bad, labels[val_idx])
        validation = classification_metrics(labels[val_idx], p_bad)
        validation["uncalibrated_p_bad"] = softmax(result.val_logits)[:, 1].round(6).tolist()
        validation["p_bad"] = p_bad.round(6).tolist()
        validation["labels"] = labels[val_idx].tolist()
        validation["review_fraction"] = float(np.mean((p_bad >= band[0]) & (p_bad <= band[1])))
    else:
        temperature, band, validation = 1.0, tuple(options.review_band or DEFAULT_REVIEW_BAND), None
        result.notes.append(
            "no validation split (--val-fraction 0): no checkpoint selection, temperature 1, default review band"
        )
    report.update(
        split={
            "train": len(train_idx),
            "validation": len(val_idx),
            "train_per_class": np.bincount(labels[train_idx], minlength=2).tolist(),
            "validation_per_class": np.bincount(labels[val_idx], minlength=2).tolist(),
        },
        history=result.history,
        best_epoch=result.best_epoch,
        interrupted=result.interrupted,
        training_seconds=round(result.seconds, 1),
        weights_origin=result.notes[0],
        notes=result.notes[1:],
        temperature=temperature,
        review_band=list(band),
        validation=validation,
        device=str(resolve_device(options.device)),
    )
    report["chance_level"] = chance_level(report, options.seed)
    return result.model, report


def model_metadata(report: dict[str, Any], name: str, training_data: dict[str, Any], command: str) -> dict[str, Any]:
    """What goes into the model file beside the weights."""
    validation = report["validation"] or {}
    summary = {
        k: validation.get(k)
        for k in (
            "count",
            "accuracy",
            "balanced_accuracy",
            "precision",
            "recall",
            "confusion_matrix",
            "roc_auc",
            "review_fraction",
        )
    }
    metrics: dict[str, Any] = {"validation": summary if report["validation"] else None}
    if "cross_validation" in report:
        cv = report["cross_validation"]
        metrics["cross_validation"] = {k: cv[k] for k in ("folds", "balanced_accuracy", "accuracy", "roc_auc")}
    if report.get("chance_level"):
        metrics["at_chance"] = report["chance_level"]["at_chance"]
    return {
        "name": name,
        "arch": report["options"]["arch"],
        "pipeline": report["pipeline"],
        "class_names": report["class_names"],
        "temperature": report["temperature"],
        "review_band": report["review_band"],
        "training_data": training_data,
        "metrics": metrics,
        "training": {
            "options": report["options"],
            "best_epoch": report["best_epoch"],
            "interrupted": report["interrupted"],
            "weights_origin": report["weights_origin"],
        },
        "afmwatch_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


def load_training_data(
    data: Path,
    options: TrainOptions,
    prepare: Any,
    reading: ReadingConfig,
    progress: bool = True,
) -> tuple[list, list[np.ndarray], np.ndarray, dict[str, Any], list[dict[str, str]]]:
    """The readable labelled files under `data`, `prepare` of each (first frame), their labels, notes
    on what was left out and the unreadable files; ValueError unless both classes are there."""
    from afmwatch.training.data import collect_files, load_prepared

    files, notes = collect_files(data, options.group_by)
    log.info("training_data_found", folder=str(data), files=len(files), arch=options.arch)
    arrays, kept, skipped = load_prepared(files, prepare, reading, workers=options.threads or 2, progress=progress)
    files = [files[i] for i in kept]
    labels = np.array([f.label for f in files], dtype=int)
    if len(files) < 4 or len(set(labels.tolist())) < 2:
        raise ValueError(
            f"{data}: need readable scans in both good/ and bad/ (found {len(files)} readable, "
            f"{int((labels == 0).sum())} good, {int((labels == 1).sum())} bad)"
        )
    return files, arrays, labels, notes, skipped


def train_folder(
    data: str | Path,
    out: str | Path,
    options: TrainOptions,
    command: str = "",
    progress: bool = True,
    cross_validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `options.arch` (None: the base model's, else compact) on the labelled folder, write the
    model file, report and plots. `cross_validation`: already run on these folds with these options
    (`train --arch auto`), reused instead of run again. `afmwatch train` is `auto.run_train`."""
    from afmwatch.training.data import fingerprint
    from afmwatch.training.report import write_report

    data, out = Path(data), Path(out)
    options, base_pipeline, init = resolve_start(options)
    check_options(options)
    spec = make_spec(options, base_pipeline)
    files, arrays, labels, notes, skipped = load_training_data(
        data,
        options,
        lambda scan: input_pipeline.prepare(scan, spec),
        ReadingConfig(data_area=spec["data_area"]),
        progress,
    )
    model, report = train_arrays(
        arrays,
        labels,
        [f.sha256 for f in files],
        [f.group for f in files],
        options,
        spec,
        init,
        progress,
        cross_validation,
    )
    training_data = fingerprint(files, data)
    name = options.name or out.name.split(".")[0]
    metadata = model_metadata(report, name, training_data, command)
    familiarity = fit_familiarity(
        model, arrays, labels, [f.sha256 for f in files], [f.group for f in files], options, spec
    )
    report["familiarity"] = familiarity[1] if familiarity else None
    if familiarity:
        metadata["familiarity"] = familiarity[1]
    save_classifier(out, model, metadata, familiarity[0] if familiarity else None)
    report.update(
        model=str(out),
        name=name,
        data={"folder": str(data), **training_data, **notes, "skipped": skipped},
        command=command,
        created=metadata["created"],
        afmwatch_version=__version__,
    )
    report["validation_files"] = validation_files(report, files, labels, options)
    write_report(report, out)
    log.info(
        "model_saved",
        model=str(out),
        balanced_accuracy=(report["validation"] or {}).get("balanced_accuracy"),
        temperature=report["temperature"],
        review_band=report["review_band"],
    )
    return report


def fit_familiarity(
    model: nn.Module,
    arrays: list[np.ndarray],
    labels: np.ndarray,
    hashes: list[str],
    groups: list[str | None],
    options: TrainOptions,
    spec: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The network's familiarity check (`networks.familiarity`): fitted on the features of the scans it
    was trained on, its limit set on the validation scans it never trained on. None without a
    validation split or with too few scans."""
    if options.val_fraction <= 0:
        return None
    train_idx, val_idx = validation_split(labels, hashes, groups, options.val_fraction, options.seed)
    fitted = familiarity.fit_for_model(
        model,
        _stack([arrays[i] for i in train_idx], spec, None),
        labels[train_idx],
        _stack([arrays[i] for i in val_idx], spec, None),
    )
    if fitted:
        log.info("familiarity_fitted", threshold=fitted[1]["threshold"], held_out=fitted[1]["held_out_scans"])
    return fitted


def validation_files(report: dict[str, Any], files: list, labels: np.ndarray, options: TrainOptions) -> list[str]:
    """Which files validated the final model (so staff can look at the mistakes)."""
    if not report["split"]["validation"]:
        return []
    _, val_idx = validation_split(
        labels, [f.sha256 for f in files], [f.group for f in files], options.val_fraction, options.seed
    )
    return [str(files[i].path) for i in val_idx]
