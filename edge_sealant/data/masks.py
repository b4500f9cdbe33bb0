"""Defect masks from YOLO geometry, drawn in model-input pixels (torch-free).

A polygon is filled exactly; a box is filled whole (it over-covers the defect: the training
loss weights box pixels less, see ``edge_sealant.train``). Coordinates are normalised to the
source image, so they map through the same :func:`~edge_sealant.preprocess.content_box`
(stretch or letterbox) as the pixels. A defect smaller than a pixel of the model input still
marks the pixel it falls in: a tiny defect must not become an all-clear target.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from edge_sealant.data.types import Region

POLYGON, BOX = 1, 2  # mask values: where the pixel came from (boxes are weighted less)
_SHIFT = 4  # fixed-point bits for cv2 drawing: sub-pixel vertex positions
_SUPERSAMPLE = 4  # draw at 4x and keep pixels at least half covered: exact to a quarter pixel


def region_mask(regions: Sequence[Region], input_hw: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """H x W uint8 mask: 0 clear, :data:`POLYGON` or :data:`BOX` where a region covers at
    least half a pixel.

    ``box`` is the content box (top, left, height, width) of the image inside the input.
    Polygons win where a polygon and a box overlap (they are the more exact label).
    """
    mask = np.zeros(input_hw, dtype=np.uint8)
    for value, kind in ((BOX, "box"), (POLYGON, "polygon")):  # polygons drawn last: they win
        outlines = [_to_pixels(region, box) for region in regions if region.kind == kind]
        if outlines:
            covered = _covered(outlines, input_hw)
            for points in outlines:
                _mark_centre_if_empty(covered, points)
            mask[covered] = value
    return mask


def _covered(outlines: list[np.ndarray], input_hw: tuple[int, int]) -> np.ndarray:
    """Pixels at least half inside any outline (fillPoly on a 4x canvas, then area average).

    Only the outlines' bounding window is supersampled: a few small defects on a large input
    cost microseconds, not a full 16x canvas.
    """
    height, width = input_hw
    every = np.concatenate(outlines)
    x0, y0 = np.clip(np.floor(every.min(axis=0)).astype(int) - 1, 0, [width, height])
    x1, y1 = np.clip(np.ceil(every.max(axis=0)).astype(int) + 2, 0, [width, height])
    covered = np.zeros(input_hw, dtype=bool)
    if x1 <= x0 or y1 <= y0:
        return covered
    factor = _SUPERSAMPLE
    canvas = np.zeros(((y1 - y0) * factor, (x1 - x0) * factor), dtype=np.uint8)
    origin = np.array([x0, y0], dtype=np.float64)
    scaled = [np.round(((points - origin + 0.5) * factor - 0.5) * (1 << _SHIFT)).astype(np.int32) for points in outlines]
    cv2.fillPoly(canvas, scaled, 255, lineType=cv2.LINE_8, shift=_SHIFT)
    coverage = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    covered[y0:y1, x0:x1] = coverage >= 128
    return covered


def region_outline(region: Region) -> np.ndarray:
    """The region's outline as N x 2 normalised (x, y) points in [0, 1]; a box gives its corners."""
    values = np.asarray(region.points, dtype=np.float64)
    if region.kind == "box":
        cx, cy, w, h = values
        values = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy - h / 2, cx + w / 2, cy + h / 2, cx - w / 2, cy + h / 2])
    return values.reshape(-1, 2).clip(0.0, 1.0)


def _to_pixels(region: Region, box: tuple[int, int, int, int]) -> np.ndarray:
    """The region's outline as N x 2 (x, y) float pixel coordinates of the model input."""
    top, left, height, width = box
    xy = region_outline(region)
    # pixel edges: x = 0 is the left edge of the first pixel, x = width the right edge of the last
    return np.stack([left + xy[:, 0] * width - 0.5, top + xy[:, 1] * height - 0.5], axis=1)


def _mark_centre_if_empty(covered: np.ndarray, points: np.ndarray) -> None:
    """A region thinner than half a pixel covers nothing; mark the pixel holding its centre."""
    height, width = covered.shape
    lo = np.clip(np.floor(points.min(axis=0) + 0.5).astype(int), 0, [width - 1, height - 1])
    hi = np.clip(np.floor(points.max(axis=0) + 0.5).astype(int), 0, [width - 1, height - 1])
    if not covered[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1].any():
        cx, cy = np.clip(np.floor(points.mean(axis=0) + 0.5).astype(int), 0, [width - 1, height - 1])
        covered[cy, cx] = True


def cell_targets(mask: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    """Per heatmap cell: 1 where any pixel of the cell is marked (max-pool), else 0.

    ``mask`` is H x W (or N x H x W); H and W must be multiples of the grid (the network's
    stride divides the input size).
    """
    height, width = mask.shape[-2:]
    gh, gw = grid_hw
    if height % gh or width % gw:
        raise ValueError(f"mask {height}x{width} is not a multiple of the grid {gh}x{gw}")
    cells = mask.reshape(*mask.shape[:-2], gh, height // gh, gw, width // gw)
    return (cells.max(axis=(-3, -1)) > 0).astype(np.float32)
