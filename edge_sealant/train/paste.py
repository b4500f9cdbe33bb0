"""Defect copy-paste: put a labelled defect from one training image onto a normal one.

Why: an inspection set has few *parts* (magnetic-tile's train split: about 45 defective tiles,
each under six exposures), so a classifier can score well on train by recognising the tile
instead of the defect, and then fails on parts it never saw. The customer's boxes and polygons
say exactly where each defect is; pasting that patch onto a *normal* part makes a defect image
whose background the model has also seen labelled normal. The only thing that separates the
two is the defect, which breaks the part-label shortcut (the idea of copy-paste augmentation,
Ghiasi et al. 2021, and of defect-transplant augmentation in surface inspection).

The patch lands near the donor's own place (within 1/8 of the image side), not anywhere:
where a defect sits means something (a break is a chipped tile edge, a bead defect lies on
the bead, not on the background beside it), and the images are aligned alike. It is not
flipped on its own for the same reason; the whole-image flips of the augmentation still apply.
The patch is the region's bounding box, blended with a feathered alpha (no hard seam for the
network to learn) and shifted by the difference in brightness between the clear surroundings
of the donor region and of the target place (exposure differs between images; a defect's
contrast to its surroundings is what is kept). The pasted image's mask is the pasted region
(its box or polygon values kept), so the heatmap learns it too. Only regions up to
``MAX_AREA_SHARE`` of the image are donors: a defect that covers half the part would just
copy the donor part.

Measured (magnetic-tile, 256x256, three seeds): val AUROC up in every seed, test AUROC
unchanged, test false alarms at 95% recall worse; on generated frames AUROC down. So it is
an option (``train --paste-defects``), off by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

SUGGESTED_SHARE = 0.3  # the share measured on magnetic-tile (benchmarks/results/2026-11-29_xeon_magnetic-tile_256_seeds.md)
MAX_AREA_SHARE = 0.25  # larger regions carry the donor part with them
MIN_SIDE = 2  # pixels; smaller components are rasterisation specks
FEATHER_PX = 2.0  # sigma of the alpha's soft edge, in input pixels
JITTER_SHARE = 0.125  # how far from the donor's own place a region may land, per side


@dataclass(frozen=True)
class Patch:
    """One donor region: image index and its bounding box (x, y, w, h) in input pixels."""

    index: int
    box: tuple[int, int, int, int]


def donor_patches(masks: np.ndarray, labels: np.ndarray, known: np.ndarray) -> list[Patch]:
    """Every connected defect region of the defect images with known masks, small enough to move."""
    import cv2

    patches: list[Patch] = []
    for index in np.flatnonzero((labels == 1) & known):
        mask = (masks[index] > 0).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        limit = MAX_AREA_SHARE * mask.size
        for x, y, w, h, _area in stats[1:count]:
            if min(w, h) >= MIN_SIDE and w * h <= limit:
                patches.append(Patch(int(index), (int(x), int(y), int(w), int(h))))
    return patches


def feathered_alpha(region: np.ndarray) -> np.ndarray:
    """A soft alpha (float32 in [0, 1]) that is 1 on the region and fades out over a few pixels."""
    import cv2

    alpha = (region > 0).astype(np.float32)
    blurred = cv2.GaussianBlur(alpha, (0, 0), FEATHER_PX)
    return np.maximum(alpha * 0.5 + blurred * 0.5, blurred)


class DefectPaster:
    """Turns a normal image into a defect image by pasting a donor region (see module doc).

    ``images`` (N x H x W x 3 uint8) and ``masks`` (N x H x W uint8) are the training arrays;
    :meth:`paste` returns new arrays and never changes them. ``share``: the share of normal
    images the training data set turns into defect images with it.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, labels: np.ndarray, known: np.ndarray, share: float = SUGGESTED_SHARE):
        self.images, self.masks, self.share = images, masks, share
        self.patches = donor_patches(masks, labels, known)

    def __bool__(self) -> bool:
        return bool(self.patches)

    def paste(self, image: np.ndarray, rng: np.random.Generator, mask: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """``image`` with one donor region pasted at a random place, and the region's mask there."""
        patch = self.patches[int(rng.integers(len(self.patches)))]
        x, y, w, h = patch.box
        source = self.images[patch.index, y : y + h, x : x + w].astype(np.float32)
        region = self.masks[patch.index, y : y + h, x : x + w]
        height, width = image.shape[:2]
        top = _jittered(y, h, height, rng)
        left = _jittered(x, w, width, rng)
        out = image.copy()
        target = out[top : top + h, left : left + w].astype(np.float32)
        # exposure differs between images: move the patch by the difference between the clear
        # surroundings of the donor region and of the target place (inside a tight box there
        # may be nothing but defect, whose level must not be matched away)
        shift = _surround_level(image, None, (left, top, w, h)) - _surround_level(self.images[patch.index], self.masks[patch.index], patch.box)
        shifted = source + shift
        alpha = feathered_alpha(region)[..., None]
        out[top : top + h, left : left + w] = np.clip(alpha * shifted + (1 - alpha) * target, 0, 255).round().astype(np.uint8)
        new_mask = np.zeros((height, width), np.uint8) if mask is None else mask.copy()
        new_mask[top : top + h, left : left + w] = np.maximum(new_mask[top : top + h, left : left + w], region)
        return out, new_mask


def _jittered(start: int, size: int, side: int, rng: np.random.Generator) -> int:
    """Near the donor's own place: up to ``JITTER_SHARE`` of the side away, inside the image."""
    reach = max(1, round(JITTER_SHARE * side))
    return int(np.clip(start + rng.integers(-reach, reach + 1), 0, side - size))


def _surround_level(image: np.ndarray, mask: Optional[np.ndarray], box: tuple[int, int, int, int]) -> np.ndarray:
    """Per-channel median of the clear pixels in a ring around ``box`` (the box itself when
    the ring has none, e.g. a region filling the image)."""
    x, y, w, h = box
    margin = max(2, (w + h) // 4)
    height, width = image.shape[:2]
    y0, y1, x0, x1 = max(0, y - margin), min(height, y + h + margin), max(0, x - margin), min(width, x + w + margin)
    ring = np.ones((y1 - y0, x1 - x0), bool)
    ring[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = False
    if mask is not None:
        ring &= mask[y0:y1, x0:x1] == 0
    pixels = image[y0:y1, x0:x1][ring] if ring.any() else image[y : y + h, x : x + w].reshape(-1, image.shape[2])
    return np.median(pixels.astype(np.float32), axis=0)
