"""Training a good/bad network: an explicit PyTorch loop (forward, loss, backward, step), as in
torchvision's reference scripts, with the study's options, a best-validation checkpoint and
class-weighted loss. The run around it (splits that never leak a file or a sample, K-fold
cross-validation, temperature scaling, the review band, the report) is `training.run`, shared with
the metrics models."""

from __future__ import annotations

import copy
import time
from dataclasses import replace
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
from afmwatch.training.calibration import softmax
from afmwatch.training.data import fingerprint
from afmwatch.training.metrics import classification_metrics
from afmwatch.training.options import TrainOptions
from afmwatch.training.report import write_report
from afmwatch.training.run import (
    FitPart,
    FitResult,
    check_options,
    cross_validate,
    load_training_data,
    model_metadata,
    train_arrays,
    validation_files,
)
from afmwatch.training.splits import validation_split

log = structlog.get_logger(__name__)


STEP_SIZE, STEP_GAMMA, PLATEAU_PATIENCE = 7, 0.1, 3


def _stack(arrays: list[np.ndarray], spec: dict[str, Any], rng: np.random.Generator | None) -> torch.Tensor:
    return torch.stack([input_pipeline.finish(a, spec, rng) for a in arrays])


class LazyStack:
    """The prepared arrays as network inputs, stacked a slice at a time (`familiarity.Inputs`): after
    training, the whole training set stacked at once would hold a second copy of every scan in memory
    (19,200 scans at 384 px: another 11 GB, which killed a finished run on a 24 GiB machine)."""

    def __init__(self, arrays: list[np.ndarray], spec: dict[str, Any]):
        self.arrays, self.spec = arrays, spec

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, rows: slice) -> torch.Tensor:
        return _stack(self.arrays[rows], self.spec, None)


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
    if options.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(options.epochs, 1))
    if options.scheduler == "none":
        return None
    raise ValueError(f"unknown scheduler {options.scheduler!r} (step, plateau, cosine or none)")


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
    seconds = time.monotonic() - started
    return FitResult(model, history, best_epoch, val_logits, interrupted, seconds, [origin], str(device))


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


def network_fit_part(
    arrays: list[np.ndarray],
    labels: np.ndarray,
    options: TrainOptions,
    spec: dict[str, Any],
    init: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
) -> FitPart:
    """The network's fit of one split (`fit` on the prepared `arrays`), as `training.run` calls it."""
    labels = np.asarray(labels, dtype=int)

    def fit_part(train_idx: np.ndarray, val_idx: np.ndarray, desc: str) -> FitResult:
        return fit(arrays, labels, train_idx, val_idx, options, spec, init, progress, desc)

    return fit_part


def train_network_arrays(
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
    """`run.train_arrays` with the network's fit: the trained network and the report."""
    if options.threads:
        torch.set_num_threads(options.threads)
    fit_part = network_fit_part(arrays, labels, options, spec, init, progress)
    result, report = train_arrays(labels, hashes, groups, options, fit_part, spec, cross_validation)
    return result.model, report


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
        level_polynomial=options.level_polynomial,
        jitter=options.jitter,
    )


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
    model, report = train_network_arrays(
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


def cross_validate_folder(data: Path, options: TrainOptions, progress: bool = True) -> tuple[int, dict[str, Any]]:
    """K-fold cross-validation of a fresh network on the labelled folder, no model written: the
    readable file count and `run.cross_validate`'s results."""
    spec = make_spec(options, None)
    files, arrays, labels, _, _ = load_training_data(
        data,
        options,
        lambda scan: input_pipeline.prepare(scan, spec),
        ReadingConfig(data_area=spec["data_area"]),
        progress,
    )
    fit_part = network_fit_part(arrays, labels, options, spec, None, progress)
    return len(files), cross_validate(labels, [f.sha256 for f in files], [f.group for f in files], options, fit_part)


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
        LazyStack([arrays[i] for i in train_idx], spec),
        labels[train_idx],
        LazyStack([arrays[i] for i in val_idx], spec),
    )
    if fitted:
        log.info("familiarity_fitted", threshold=fitted[1]["threshold"], held_out=fitted[1]["held_out_scans"])
    return fitted
