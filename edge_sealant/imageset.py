"""Load a list of samples into one uint8 array with the model's exact preprocessing.

Small inspection datasets fit in memory once resized (1000 images at 512x208 are 320 MB), so
training decodes each file once instead of every epoch: on a 2-core CPU decoding would
otherwise cost as much as the network.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edge_sealant.card import ModelCard
from edge_sealant.data.types import Sample
from edge_sealant.errors import EdgeSealantError
from edge_sealant.preprocess import load_for_model


@dataclass
class LoadedImages:
    """Images that decoded, their samples, and the ones skipped (``"path: reason"``)."""

    images: np.ndarray  # N x H x W x 3 uint8, in card.channel_order
    samples: list[Sample]
    skipped: list[str]

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)


def check_fits_in_memory(count: int, size: tuple[int, int], share: float = 0.8) -> None:
    """Refuse, before decoding, a preload that cannot fit in this machine's memory."""
    needed = count * size[0] * size[1] * 3
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return
    if needed > share * total:
        raise EdgeSealantError(
            f"{count} images at {size[0]}x{size[1]} need {needed / 2**30:.1f} GiB in memory, more than this machine's "
            f"{total / 2**30:.1f} GiB allows: use a smaller input size"
        )


def load_images(samples: Sequence[Sample], card: ModelCard, workers: int | None = None) -> LoadedImages:
    """Decode and resize ``samples`` in parallel (OpenCV releases the GIL)."""
    check_fits_in_memory(len(samples), card.input_size)
    workers = workers or min(8, (os.cpu_count() or 2) * 2)

    def one(sample: Sample) -> np.ndarray | str:
        try:
            return load_for_model(sample.path, card.input_size, card.resize_mode, card.channel_order)
        except EdgeSealantError as exc:
            return str(exc)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, samples))
    kept = [(s, r) for s, r in zip(samples, results) if isinstance(r, np.ndarray)]
    skipped = [r for r in results if isinstance(r, str)]
    height, width = card.input_size
    images = np.empty((len(kept), height, width, 3), dtype=np.uint8)
    for index, (_, image) in enumerate(kept):
        images[index] = image
    return LoadedImages(images=images, samples=[s for s, _ in kept], skipped=skipped)
