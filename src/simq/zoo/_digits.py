"""Small CNN, ResNet and ViT classifiers trained on scikit-learn's digits in seconds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from simq.zoo._build import export, onnx_accuracy, onnx_max_abs_diff, param_count, quiet, seeded, threads
from simq.zoo._data import Dataset, save_splits
from simq.zoo._spec import Recipe

__all__ = ["build", "splits", "torch_source"]

_CALIBRATION = 256


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class _CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(1, 32), nn.ReLU(), *_conv_bn(32, 64), nn.ReLU(), *_conv_bn(64, 64, stride=2), nn.ReLU()
        )
        self.classifier = nn.Linear(64, 10)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(pixel_values).mean(dim=(2, 3)))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, stride=stride), nn.ReLU(), *_conv_bn(cout, cout))
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if (cin, stride) != (cout, 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class _ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, 32), nn.ReLU())
        self.blocks = nn.Sequential(_BasicBlock(32, 32), _BasicBlock(32, 32), _BasicBlock(32, 64, stride=2))
        self.classifier = nn.Linear(64, 10)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.blocks(self.stem(pixel_values)).mean(dim=(2, 3)))


class _ViT(nn.Module):
    """Returns the logits tensor, so training and export see the same forward."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.vit = transformers.ViTForImageClassification(transformers.ViTConfig(**config))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vit(pixel_values=pixel_values).logits


def splits(seed: int) -> dict[str, Dataset]:
    """The fixed digits splits: stratified 60/20/20 into train/validation/test, then 256 calibration
    images moved out of train (the four splits are disjoint: nothing calibrated was trained on).

    Pixels are scaled from 0..16 to [0, 1]; labels are the digits 0-9.
    """
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, stratify=y, random_state=seed)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed)
    order = np.random.default_rng(seed).permutation(len(x_train))
    pick, keep = order[:_CALIBRATION], np.sort(order[_CALIBRATION:])
    return {
        "train": Dataset({"pixel_values": x_train[keep]}, y_train[keep]),
        "calibration": Dataset({"pixel_values": x_train[pick]}, y_train[pick]),
        "validation": Dataset({"pixel_values": x_val}, y_val),
        "test": Dataset({"pixel_values": x_test}, y_test),
    }


def _train(model: nn.Module, train: Dataset, options: Mapping[str, Any], seed: int) -> None:
    x = torch.from_numpy(train.inputs["pixel_values"])
    y = torch.from_numpy(train.labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options["lr"], weight_decay=options["weight_decay"])
    steps_per_epoch = -(-len(x) // options["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, options["lr"], total_steps=options["epochs"] * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(options["epochs"]):
        for batch in torch.randperm(len(x), generator=generator).split(options["batch_size"]):
            loss = nn.functional.cross_entropy(model(pixel_values=x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()


def _accuracy(model: nn.Module, data: Dataset) -> float:
    with torch.no_grad():
        logits = model(pixel_values=torch.from_numpy(data.inputs["pixel_values"]))
    return float((logits.argmax(-1).numpy() == data.labels).mean())


_WEIGHTS = "model.pt"


def _module(options: Mapping[str, Any]) -> nn.Module:
    return {"cnn": _CNN, "resnet": _ResNet}.get(options["arch"], lambda: _ViT(options["config"]))()


def torch_source(recipe: Recipe, folder: Path):
    """The trained model as PyTorch (for `simq tune` and the export users' tools make)."""
    from simq.ir import TorchSource

    model = _module(recipe.options)
    model.load_state_dict(torch.load(folder / _WEIGHTS, weights_only=True))
    model.eval()

    def save(tuned: nn.Module, out: Path) -> None:
        torch.save(tuned.state_dict(), out / _WEIGHTS)

    model_type = "vit" if recipe.options["arch"] == "vit" else None
    return TorchSource(model, ("pixel_values",), {"pixel_values": {0: "batch"}}, save, f"zoo:{recipe.entry.name}", model_type)


def build(recipe: Recipe, out_dir: Path) -> dict[str, Any]:
    """Train the digits model of `recipe` and write it and its data splits into `out_dir`."""
    options = recipe.options
    data = splits(recipe.seed)
    with seeded(recipe.seed), threads(1), quiet():
        model = _module(options)
        _train(model, data["train"], options, recipe.seed)
    example = {"pixel_values": data["test"].inputs["pixel_values"][:2]}
    path = export(model, recipe.entry, example, out_dir)
    torch.save(model.state_dict(), out_dir / _WEIGHTS)  # the PyTorch source (`torch_source`)
    save_splits(data, out_dir)
    return {
        "params": param_count(model),
        "config": dict(options),
        "labels": [str(d) for d in range(10)],
        "split_sizes": {name: len(d) for name, d in data.items()},
        "validation_accuracy": _accuracy(model, data["validation"]),
        "test_accuracy": _accuracy(model, data["test"]),
        "onnx_test_accuracy": onnx_accuracy(path, data["test"]),
        "onnx_max_abs_diff": onnx_max_abs_diff(path, model, recipe.entry, example),
    }
