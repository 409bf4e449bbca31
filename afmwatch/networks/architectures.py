"""The classifier networks, readable top to bottom, in one dict registry.

`convnet` is the original study's small net, `compact` a small all-convolutional net that reads the
height map directly (the shipped default), and the ResNet18 variants are the study's transfer-learning
networks. Adding another torchvision classifier is one line: `"name": torchvision_classifier("name", ...)`.

ImageNet weights are never downloaded: they come from `--pretrained PATH` or from the torch hub
cache when it already holds them; without them a torchvision network starts from random weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from afmwatch.networks.model_file import ModelError, load_plain_state_dict


@dataclass(frozen=True)
class Architecture:
    """How to build one network. `build(num_classes, image_size, pretrained)` returns the module;
    `pretrained` is a state-dict path (ImageNet weights) or None. `channels` and `normalise` are the
    input the network expects by default; `torchvision_name` is set for torchvision networks."""

    build: Callable[[int, int, Path | None], nn.Module]
    channels: int
    normalise: str
    description: str
    torchvision_name: str | None = None


class ConvNet(nn.Module):
    """The study's small net (the PyTorch tutorial's CIFAR net): two 5x5 convolutions with max-pooling,
    then three fully connected layers. The first fully connected layer's width follows the image size."""

    def __init__(self, num_classes: int = 2, image_size: int = 224):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2, 2)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"image size {image_size} is too small for the convnet (needs at least 16)")
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CompactNet(nn.Module):
    """A small net for height maps at full resolution (about 0.25 M weights): a 4x4 stride-4 stem that
    sees every pixel (one-row scars, fine ringing) without an image-wide resize, three stride-2 stages,
    then average and max pooling side by side, so a single scar counts as much as a texture."""

    def __init__(self, num_classes: int = 2, stem: int = 24, widths: tuple[int, ...] = (32, 64, 96)):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, stem, 4, stride=4, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        ]
        cin = stem
        for width in widths:
            layers.append(_conv_block(cin, width))
            cin = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


def last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The parent, attribute name and module of the last Linear layer (the ImageNet head)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no linear classification head")
    name, module = found
    parent_name, _, attr = name.rpartition(".")
    return model.get_submodule(parent_name), attr, module


def hub_cache_weights(torchvision_name: str) -> Path | None:
    """ImageNet weights that torch hub already cached (`<hub dir>/checkpoints/resnet18-*.pth`), if any."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    matches = sorted(folder.glob(f"{torchvision_name}-*.pth")) if folder.is_dir() else []
    return matches[0] if matches else None


def torchvision_classifier(torchvision_name: str, freeze_backbone: bool, description: str) -> Architecture:
    """A torchvision ImageNet classifier with a new `num_classes` head; with `freeze_backbone` only the
    head trains (a fixed feature extractor). Weights are never downloaded (`weights=None`)."""

    def build(num_classes: int, image_size: int, pretrained: Path | None) -> nn.Module:
        from torchvision import models as tv_models  # slow to import; only when a torchvision net is built

        model = tv_models.get_model(torchvision_name, weights=None)
        if pretrained is not None:
            state = load_plain_state_dict(pretrained)
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise ModelError(pretrained, f"not {torchvision_name} ImageNet weights ({exc})") from None
        if freeze_backbone:
            for param in model.parameters():
                param.requires_grad_(False)
        parent, attr, old = last_linear(model)
        setattr(parent, attr, nn.Linear(old.in_features, num_classes))
        return model

    return Architecture(
        build, channels=3, normalise="imagenet", description=description, torchvision_name=torchvision_name
    )


ARCHITECTURES: dict[str, Architecture] = {
    "convnet": Architecture(
        lambda num_classes, image_size, pretrained: ConvNet(num_classes, image_size),
        channels=3,
        normalise="imagenet",
        description="the study's small ConvNet (2 conv + 3 fc layers)",
    ),
    "compact": Architecture(
        lambda num_classes, image_size, pretrained: CompactNet(num_classes),
        channels=1,
        normalise="standardise",
        description="small all-convolutional net on the height map",
    ),
    "resnet18-features": torchvision_classifier(
        "resnet18", freeze_backbone=True, description="ResNet18, ImageNet backbone frozen, new final layer"
    ),
    "resnet18-finetune": torchvision_classifier(
        "resnet18", freeze_backbone=False, description="ResNet18 from ImageNet weights, all layers trained"
    ),
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})") from None


def set_train_mode(model: nn.Module) -> None:
    """`model.train()`, except that batch-norm layers of a frozen backbone keep their ImageNet statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()
