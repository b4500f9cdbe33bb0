"""Load a list of samples into one uint8 array with the model's exact preprocessing.

Small inspection datasets fit in memory once resized (1000 images at 512x208 are 320 MB), so
training decodes each file once instead of every epoch: on a 2-core CPU decoding would
otherwise cost as much as the network.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from edge_sealant.card import ModelCard
from edge_sealant.data.types import Sample
from edge_sealant.errors import EdgeSealantError
from edge_sealant.data.masks import region_mask
from edge_sealant.data.scale import DefectScale, defect_scale_of_images
from edge_sealant.preprocess import load_with_box


@dataclass
class LoadedImages:
    """Images that decoded, their samples, and the ones skipped (``"path: reason"``)."""

    images: np.ndarray  # N x H x W x 3 uint8, in card.channel_order
    samples: list[Sample]
    skipped: list[str]
    masks: Optional[np.ndarray] = None  # N x H x W uint8 defect masks (data.masks), when asked for
    boxes: Optional[np.ndarray] = None  # N x 4 (top, left, height, width): where each image's content landed in the input
    source_hw: Optional[np.ndarray] = None  # N x 2 (height, width) of the source images

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def has_geometry(self) -> np.ndarray:
        """Per image: whether its mask is known (normal, or a defect with regions)."""
        return np.array([s.has_geometry for s in self.samples], dtype=bool)

    def subset(self, indices: Sequence[int]) -> LoadedImages:
        """The images at ``indices`` (one decode shared, no re-reading)."""
        indices = list(indices)

        def pick(array: Optional[np.ndarray]) -> Optional[np.ndarray]:
            return array[indices] if array is not None else None

        return LoadedImages(
            self.images[indices], [self.samples[i] for i in indices], [], pick(self.masks), pick(self.boxes), pick(self.source_hw)
        )

    def defect_scale(self, stride: int = 16, resize_mode: str = "stretch") -> Optional[DefectScale]:
        """How large these images' labelled defects are at the input they were loaded at
        (:func:`edge_sealant.data.scale.defect_scale`); None without regions or content boxes."""
        if self.boxes is None or self.source_hw is None:
            return None
        images = [(sample, tuple(box[2:]), tuple(source)) for sample, box, source in zip(self.samples, self.boxes.tolist(), self.source_hw.tolist())]
        return defect_scale_of_images(images, self.images.shape[1:3], stride, resize_mode)


def check_fits_in_memory(count: int, size: tuple[int, int], share: float = 0.8, channels: int = 3) -> None:
    """Refuse, before decoding, a preload that cannot fit in this machine's memory."""
    needed = count * size[0] * size[1] * channels
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return
    if needed > share * total:
        raise EdgeSealantError(
            f"{count} images at {size[0]}x{size[1]} need {needed / 2**30:.1f} GiB in memory, more than this machine's "
            f"{total / 2**30:.1f} GiB allows: use a smaller input size"
        )


def load_images(samples: Sequence[Sample], card: ModelCard, workers: int | None = None, masks: bool = False) -> LoadedImages:
    """Decode and resize ``samples`` in parallel (OpenCV releases the GIL).

    With ``masks``, each image's defect regions are drawn into an input-sized mask through
    the same resize (stretch or letterbox) as its pixels.
    """
    check_fits_in_memory(len(samples), card.input_size, channels=4 if masks else 3)
    workers = workers or min(8, (os.cpu_count() or 2) * 2)

    def one(sample: Sample) -> tuple[np.ndarray, np.ndarray | None, tuple, tuple] | str:
        try:
            image, box, source_hw = load_with_box(sample.path, card.input_size, card.resize_mode, card.channel_order)
        except EdgeSealantError as exc:
            return str(exc)
        return image, region_mask(sample.regions, card.input_size, box) if masks else None, box, source_hw

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, samples))
    kept = [(s, r) for s, r in zip(samples, results) if not isinstance(r, str)]
    skipped = [r for r in results if isinstance(r, str)]
    height, width = card.input_size
    images = np.empty((len(kept), height, width, 3), dtype=np.uint8)
    mask_array = np.zeros((len(kept), height, width), dtype=np.uint8) if masks else None
    for index, (_, (image, mask, _, _)) in enumerate(kept):
        images[index] = image
        if mask_array is not None:
            mask_array[index] = mask
    boxes = np.array([r[2] for _, r in kept], dtype=np.int64).reshape(-1, 4)
    source_hw = np.array([r[3] for _, r in kept], dtype=np.int64).reshape(-1, 2)
    return LoadedImages(images=images, samples=[s for s, _ in kept], skipped=skipped, masks=mask_array, boxes=boxes, source_hw=source_hw)
