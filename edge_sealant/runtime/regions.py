"""Defect regions from a heatmap: connected cells above a level, as boxes in source pixels.

A heatmap cell ``(row, column)`` covers input pixels ``[row * stride, (row + 1) * stride)``
(and likewise for columns); the input holds the source image inside its content box (all of
it when stretched, centred when letterboxed), so a region maps back to the pixels of the
image the camera delivered. Torch-free (the runtime uses it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

DEFAULT_LEVEL = 0.5


@dataclass(frozen=True)
class DefectRegion:
    """A connected area of heatmap cells at or above the level.

    ``box``: (x0, y0, x1, y1) in source-image pixels (x1, y1 exclusive); ``peak``: the highest
    cell probability inside; ``cells``: how many cells it spans.
    """

    box: tuple[int, int, int, int]
    peak: float
    cells: int

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "box": list(self.box)}


def find_regions(
    heatmap: np.ndarray,
    stride: int,
    content_box: tuple[int, int, int, int],
    source_hw: tuple[int, int],
    level: float = DEFAULT_LEVEL,
) -> list[DefectRegion]:
    """Regions of ``heatmap`` (rows x columns, values in [0, 1]), strongest first."""
    return [region for region, _ in find_regions_with_cells(heatmap, stride, content_box, source_hw, level)]


def find_regions_with_cells(
    heatmap: np.ndarray,
    stride: int,
    content_box: tuple[int, int, int, int],
    source_hw: tuple[int, int],
    level: float = DEFAULT_LEVEL,
) -> list[tuple[DefectRegion, np.ndarray]]:
    """:func:`find_regions`, each region with the cells it is made of (a bool rows x columns grid)."""
    above = (np.asarray(heatmap) >= level).astype(np.uint8)
    if not above.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    regions = []
    for label in range(1, count):
        x, y, w, h = (int(v) for v in stats[label, :4])
        cells = labels == label
        peak = float(np.max(heatmap[cells]))
        box = _to_source((x * stride, y * stride, (x + w) * stride, (y + h) * stride), content_box, source_hw)
        if box[2] > box[0] and box[3] > box[1]:  # cells wholly on a letterbox margin map to nothing
            regions.append((DefectRegion(box, round(peak, 6), int(stats[label, cv2.CC_STAT_AREA])), cells))
    return sorted(regions, key=lambda pair: -pair[0].peak)


def _to_source(input_box: tuple[int, int, int, int], content_box: tuple[int, int, int, int], source_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Input-pixel box -> source-pixel box through the content box, clipped to the image."""
    top, left, height, width = content_box
    source_h, source_w = source_hw
    x0, y0, x1, y1 = input_box
    sx, sy = source_w / width, source_h / height

    def clip(value: float, limit: int) -> int:
        return int(min(max(round(value), 0), limit))

    return (clip((x0 - left) * sx, source_w), clip((y0 - top) * sy, source_h),
            clip((x1 - left) * sx, source_w), clip((y1 - top) * sy, source_h))


def grid_extent(grid_hw: tuple[int, int], stride: int, content_box: tuple[int, int, int, int], source_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """Where the whole heatmap grid lies in source pixels, (x0, y0, x1, y1), unclipped: a
    letterboxed input's margins fall outside the image. Used to lay the heatmap over it."""
    top, left, height, width = content_box
    sx, sy = source_hw[1] / width, source_hw[0] / height
    rows, columns = grid_hw
    return (-left * sx, -top * sy, (columns * stride - left) * sx, (rows * stride - top) * sy)
