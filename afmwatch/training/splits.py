"""Splits that never leak: identical files (same sha256) and scans of one sample (`--group-by`) stay
on one side. Groups are assigned greedily so each part gets its share of every class (stratified)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _units(hashes: Sequence[str], groups: Sequence[str | None]) -> list[list[int]]:
    """Indices joined when they share a file hash or a group name (union-find)."""
    parent = list(range(len(hashes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[tuple[str, str | None], int] = {}
    for i, (digest, group) in enumerate(zip(hashes, groups)):
        for key in (("hash", digest), ("group", group)):
            if key[1] is None:
                continue
            if key in first_seen:
                parent[find(i)] = find(first_seen[key])
            else:
                first_seen[key] = i
    units: dict[int, list[int]] = {}
    for i in range(len(hashes)):
        units.setdefault(find(i), []).append(i)
    return list(units.values())


def assign_parts(
    labels: Sequence[int] | np.ndarray,
    hashes: Sequence[str],
    groups: Sequence[str | None],
    fractions: Sequence[float],
    seed: int,
) -> np.ndarray:
    """Part index (0..len(fractions)-1) for every item; items of one unit share a part, and each
    part's share of every class comes as close to its fraction as the units allow."""
    label_array = np.asarray(labels, dtype=int)
    num_classes = int(label_array.max()) + 1 if len(label_array) else 0
    units = _units(hashes, groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(units)  # random among equal sizes, but large units are placed first (stable sort)
    units.sort(key=len, reverse=True)
    totals = np.bincount(label_array, minlength=num_classes).astype(float)
    targets = np.outer(np.asarray(fractions, dtype=float), totals)  # part x class
    filled = np.zeros_like(targets)
    parts = np.empty(len(label_array), dtype=int)
    for unit in units:
        counts = np.bincount(label_array[unit], minlength=num_classes)
        # the part whose classes most lack what this unit brings, relative to the target
        need = ((targets - filled) * counts).sum(axis=1) / np.maximum(targets.sum(axis=1), 1e-9)
        part = int(np.argmax(need))
        filled[part] += counts
        parts[unit] = part
    return parts


def validation_split(
    labels: Sequence[int] | np.ndarray,
    hashes: Sequence[str],
    groups: Sequence[str | None],
    val_fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and the validation items."""
    parts = assign_parts(labels, hashes, groups, [1 - val_fraction, val_fraction], seed)
    return np.flatnonzero(parts == 0), np.flatnonzero(parts == 1)


def kfold_splits(
    labels: Sequence[int] | np.ndarray,
    hashes: Sequence[str],
    groups: Sequence[str | None],
    folds: int,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train indices, validation indices) pairs; every item is validated exactly once."""
    parts = assign_parts(labels, hashes, groups, [1 / folds] * folds, seed)
    return [(np.flatnonzero(parts != k), np.flatnonzero(parts == k)) for k in range(folds)]
