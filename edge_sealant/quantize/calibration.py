"""The calibration set: which images, drawn how, preprocessed how, and its manifest."""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from edge_sealant.card import ModelCard
from edge_sealant.data.types import DEFECT, NORMAL, Sample
from edge_sealant.versions import QUANTIZATION, library_versions

if TYPE_CHECKING:  # imageset pulls in OpenCV; only the type is needed here
    from edge_sealant.imageset import LoadedImages

MIN_CALIBRATION_IMAGES = 300  # NNCF's default subset; fewer gives noisier activation ranges
MANIFEST_FORMAT = "edge-sealant calibration manifest v1"
SELECTION_METHOD = "stratified by label (proportional, largest remainder, >= 1 per label), without replacement"


def stratified_sample(samples: Sequence[Sample], count: int, seed: int = 0) -> list[Sample]:
    """``count`` samples drawn without replacement, label proportions kept (largest remainder).

    Every label present keeps at least one image when ``count`` allows, so a rare defect
    class still shapes the activation ranges. The order is the dataset's order (stable
    manifests); the same seed gives the same selection.
    """
    samples = list(samples)
    count = min(int(count), len(samples))
    if count <= 0:
        return []
    if count == len(samples):
        return samples
    by_label: dict[int, list[int]] = {}
    for index, sample in enumerate(samples):
        by_label.setdefault(int(sample.label), []).append(index)
    quota = _label_quota({label: len(indices) for label, indices in by_label.items()}, count)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        pool = np.array(by_label[label])
        chosen.extend(int(i) for i in rng.choice(pool, size=quota[label], replace=False))
    return [samples[i] for i in sorted(chosen)]


def _label_quota(sizes: dict[int, int], count: int) -> dict[int, int]:
    """Images per label: proportional to ``sizes``, largest remainder, at least one per label."""
    labels = sorted(sizes)
    total = sum(sizes.values())
    exact = {label: count * sizes[label] / total for label in labels}
    quota = {label: int(exact[label]) for label in labels}
    if count >= len(labels):
        for label in labels:
            quota[label] = max(quota[label], 1)
    order = sorted(labels, key=lambda label: (exact[label] - int(exact[label])), reverse=True)
    while sum(quota.values()) < count:
        for label in order:
            if sum(quota.values()) < count and quota[label] < sizes[label]:
                quota[label] += 1
    while sum(quota.values()) > count:  # the at-least-one rule overshot
        largest = max(labels, key=lambda label: quota[label])
        quota[largest] -= 1
    return quota


def sha1_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-1 of a file's bytes, read in chunks."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def label_counts(labels: Sequence[int]) -> dict[str, int]:
    """``{"normal": n, "defect": m}`` of a sequence of 0/1 labels."""
    labels = np.asarray(labels, dtype=np.int64)
    return {"normal": int(np.sum(labels == NORMAL)), "defect": int(np.sum(labels == DEFECT))}


@dataclass
class CalibrationSet:
    """The calibration images as :func:`edge_sealant.imageset.load_images` loaded them, and how they were drawn."""

    loaded: LoadedImages  # images exactly as the deployed model is fed, their samples, the skipped files
    split: str
    requested: int
    available: dict[str, int]  # label counts of the whole split
    seed: int

    @property
    def images(self) -> np.ndarray:
        return self.loaded.images

    @property
    def labels(self) -> np.ndarray:
        return self.loaded.labels

    def __len__(self) -> int:
        return len(self.loaded.samples)


def build_calibration_set(samples: Sequence[Sample], card: ModelCard, count: int, split: str, seed: int = 0) -> CalibrationSet:
    """Draw ``count`` images stratified by label and preprocess them as evaluation does."""
    from edge_sealant.imageset import load_images

    # PITFALL: calibrate with the evaluation preprocessing, never the training transforms
    # (random crops/flips/colour jitter): activation ranges must match deployed inputs.
    chosen = stratified_sample(samples, count, seed)
    return CalibrationSet(
        loaded=load_images(chosen, card),
        split=split,
        requested=int(count),
        available=label_counts([s.label for s in samples]),
        seed=seed,
    )


def display_path(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` (POSIX) when it lies inside, else as given."""
    if root is not None:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def build_manifest(
    calibration: CalibrationSet,
    card: ModelCard,
    settings: dict[str, Any],
    source_model: Path,
    data_root: Path | None,
    backend: str,
    accuracy_control: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The calibration record stored next to the INT8 model (JSON-able)."""
    images = [
        {
            "path": display_path(s.path, data_root),
            "sha1": sha1_file(s.path),
            "label": int(s.label),
            "defect_classes": list(s.defect_classes),
        }
        for s in calibration.loaded.samples
    ]
    return {
        "format": MANIFEST_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": card.model,
        "backend": backend,
        "source_model": {"path": str(source_model), "sha1": sha1_file(source_model)},
        "data": {"root": str(data_root) if data_root else None, "split": calibration.split},
        "selection": {
            "method": SELECTION_METHOD,
            "seed": calibration.seed,
            "requested": calibration.requested,
            "available": calibration.available,
        },
        "preprocessing": {
            "function": "edge_sealant.imageset.load_images (evaluation preprocessing, no augmentation)",
            "input_size": list(card.input_size),
            "resize_mode": card.resize_mode,
            "channel_order": card.channel_order,
        },
        "counts": {"total": len(images), **label_counts(calibration.labels)},
        "skipped": list(calibration.loaded.skipped),
        "settings": settings,
        "accuracy_control": accuracy_control,
        "versions": library_versions(QUANTIZATION),
        "images": images,
    }
