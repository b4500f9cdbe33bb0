"""Overlay pictures for operators: the source image, the defect heatmap, the regions, the verdict.

Torch-free (``predict --overlay`` runs on the line PC). The heatmap is laid over the image
through the grid's extent in source pixels (``InspectionResult.heatmap_extent``), so a
letterboxed or stretched model input lands where it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edge_sealant.data.masks import region_outline
from edge_sealant.data.types import Region
from edge_sealant.errors import EdgeSealantError
from edge_sealant.preprocess import ImageSource, decode, read_bytes, to_three_channels
from edge_sealant.runtime.inspector import InspectionResult

HEAT_FLOOR = 0.2  # cells below this stay untinted: a faint haze everywhere hides the image
HEAT_ALPHA = 0.45
JPEG_QUALITY = 90


def source_image(source: ImageSource) -> np.ndarray:
    """The full-resolution BGR image of a path, encoded bytes or array."""
    if isinstance(source, np.ndarray):
        return to_three_channels(source).copy()
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else read_bytes(source)
    return decode(data, None, name=str(source) if isinstance(source, (str, Path)) else "image bytes")


def draw_overlay(
    image: np.ndarray, result: InspectionResult, labelled: Sequence[Region] = (), truth: str | None = None
) -> np.ndarray:
    """``image`` (BGR, source size) with the heatmap tinted in, regions boxed (red) and a title
    bar; for a review, the dataset's ``labelled`` boxes/polygons outlined in green and its
    label (``truth``) in the title."""
    canvas = image.copy()
    if result.heatmap is not None and result.heatmap_extent is not None:
        canvas = _tint(canvas, result.heatmap, result.heatmap_extent)
    scale = max(1, round(max(canvas.shape[:2]) / 800))
    height, width = canvas.shape[:2]
    for region in labelled:
        cv2.polylines(canvas, [_outline(region, width, height)], True, (0, 200, 0), scale, cv2.LINE_AA)
    for region in result.regions:
        x0, y0, x1, y1 = region.box
        cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (0, 0, 255), 2 * scale)
        cv2.putText(canvas, f"{region.peak:.2f}", (x0 + 3, max(12 * scale, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, (0, 0, 255), scale, cv2.LINE_AA)
    return _with_title(canvas, result, scale, truth)


def _outline(region: Region, width: int, height: int) -> np.ndarray:
    """A YOLO box or polygon (normalised) as an int32 outline in source pixels."""
    return np.round(region_outline(region) * [width, height]).astype(np.int32)


def _tint(image: np.ndarray, heatmap: np.ndarray, extent: tuple[float, float, float, float]) -> np.ndarray:
    """Blend a colour map of ``heatmap`` over the part of ``image`` the grid covers."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = extent
    grid_w, grid_h = max(1, round(x1 - x0)), max(1, round(y1 - y0))
    heat = cv2.resize(heatmap.astype(np.float32), (grid_w, grid_h), interpolation=cv2.INTER_LINEAR)
    gx, gy = round(x0), round(y0)  # the grid's corner in image pixels (negative: a letterbox margin)
    ix0, iy0, ix1, iy1 = max(0, gx), max(0, gy), min(width, gx + grid_w), min(height, gy + grid_h)
    full = np.zeros((height, width), np.float32)
    if ix1 > ix0 and iy1 > iy0:
        full[iy0:iy1, ix0:ix1] = heat[iy0 - gy : iy1 - gy, ix0 - gx : ix1 - gx]
    colours = cv2.applyColorMap((full * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (np.clip((full - HEAT_FLOOR) / (1 - HEAT_FLOOR), 0, 1) * HEAT_ALPHA)[..., None]
    return (image * (1 - alpha) + colours * alpha).astype(np.uint8)


def _with_title(image: np.ndarray, result: InspectionResult, scale: int, truth: str | None = None) -> np.ndarray:
    bar = np.full((28 * scale, image.shape[1], 3), 32, np.uint8)
    colour = (0, 0, 255) if result.is_defect else (0, 180, 0)
    text = f"{result.decision}  p={result.probability:.3f}  threshold {result.threshold:.3g}  regions {len(result.regions)}"
    if truth is not None:
        text += f"  labelled {truth}"
    font = 0.55 * scale
    width = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, scale)[0][0]
    font *= min(1.0, (image.shape[1] - 12) / max(1, width))  # a narrow frame gets a smaller title, not a cut one
    cv2.putText(bar, text, (6, 20 * scale), cv2.FONT_HERSHEY_SIMPLEX, font, colour, scale, cv2.LINE_AA)
    return np.vstack([bar, image])


def overlay_name(folder: Path, name: str) -> Path:
    """A new ``.jpg`` path in ``folder`` for the image called ``name`` (never an existing file)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name.split("#")[0]).stem) or "image"
    if "#frame=" in name:
        stem += "_frame" + name.rsplit("=", 1)[-1]
    path, k = folder / f"{stem}.jpg", 1
    while path.exists():
        path, k = folder / f"{stem}_{k}.jpg", k + 1
    return path


def write_overlay(folder: Path, source: ImageSource, result: InspectionResult) -> Path:
    """Draw and save the overlay of ``result`` as a JPEG in ``folder``; returns its path."""
    return write_picture(folder, result.name, draw_overlay(source_image(source), result))


def write_picture(folder: Path, name: str, picture: np.ndarray) -> Path:
    """Save ``picture`` as a new JPEG in ``folder`` named after the image ``name``; returns its path."""
    path = overlay_name(folder, name)
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise EdgeSealantError(f"{path}: cannot encode the overlay")
    path.write_bytes(encoded.tobytes())
    return path
