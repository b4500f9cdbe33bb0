"""How large the labelled defects are at the model's input, against one heatmap cell.

A defect whose area is under one cell of the feature grid (16 x 16 input pixels at stride 16)
fills only part of the cells it touches. A rule of thumb, not a law (receptive fields are far
larger than the stride, and a contrasty speck can still light up): a faint one may then be
hard to tell from the texture around it, and the heatmap cannot outline it. The YOLO geometry
says how large each defect is, so this is checked from the labels before any training:
``data inspect`` reports it for every split and ``train`` warns for the images it trains on,
with the share that would still be that small at larger inputs (inference time grows about
with the input's pixels, so the trade is the user's). A defect's size is the side of a square
of equal area: a long thin scratch counts by its area, not its length.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional

import numpy as np

from edge_sealant.data.types import Region, Sample
from edge_sealant.preprocess import fitted_size

DEFAULT_INPUT = (512, 192)  # (height, width): models.registry's default_size for every model (a test keeps them equal)
LARGER = (1.5, 2.0, 3.0)  # input scales shown beside the current one
ALIGN = 32  # input sides are kept multiples of the backbones' coarsest stride
WARN_BELOW = 0.1  # warn when more than this share of the labelled defects is smaller than a cell (a rule of thumb)


def region_area(region: Region) -> float:
    """Area of a region as a fraction of its image (a box: w x h; a polygon: shoelace formula)."""
    if region.kind == "box":
        return abs(float(region.points[2]) * float(region.points[3]))
    xs, ys = np.asarray(region.points[0::2], dtype=np.float64), np.asarray(region.points[1::2], dtype=np.float64)
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


@dataclass(frozen=True)
class DefectScale:
    """The labelled defects' size at one input size: the side of a square of equal area, in input pixels."""

    input_size: tuple[int, int]  # (height, width) the sides were measured at
    stride: int  # input pixels per heatmap cell
    regions: int  # labelled defect regions measured
    side_px: dict[str, float]  # "p10", "median", "p90" of the regions' sides at input_size
    below_cell: float  # share of the regions whose side is under one cell
    larger: list[dict[str, Any]]  # {"input_size": [h, w], "below_cell": share} at LARGER scales, up to the source size

    @property
    def needs_larger_input(self) -> bool:
        return self.below_cell > WARN_BELOW

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def advice(self, has_heatmap: bool = True) -> str:
        """One sentence for a warning: how many defects are too small, and at larger inputs.
        ``has_heatmap``: False for an image-only model, whose grid is only its features'."""
        cell = "heatmap cell" if has_heatmap else "feature-grid cell"
        height, width = self.input_size
        text = (
            f"{self.below_cell:.0%} of the {self.regions} labelled defects are smaller than one {self.stride}x{self.stride}-px "
            f"{cell} (by area) at input {height}x{width} (median side {self.side_px['median']:.0f} px)"
        )
        if not self.larger:
            return text + "; a larger input would go past the source resolution"
        options = ", ".join(f"{row['input_size'][0]}x{row['input_size'][1]} {row['below_cell']:.0%}" for row in self.larger)
        return text + f"; at a larger --imgsz: {options} (inference time grows about with the pixels)"


def defect_scale(
    measured: Iterable[tuple[Region, tuple[int, int]]],
    input_size: tuple[int, int],
    stride: int = 16,
    source_size: Optional[tuple[int, int]] = None,
    resize_mode: str = "stretch",
) -> Optional[DefectScale]:
    """Sizes of defect regions at ``input_size`` (height, width).

    ``measured``: each region with the (height, width) in input pixels of the image content it
    is drawn on (the whole input for stretch, the content box for letterbox).
    ``source_size``: the (typical) source image size; larger inputs that would only upsample it
    are not shown. None when there are no regions.
    """
    sides = np.array([math.sqrt(region_area(region) * content[0] * content[1]) for region, content in measured])
    if sides.size == 0:
        return None
    larger = []
    for size in larger_inputs(input_size, source_size, resize_mode):
        factor = math.sqrt(size[0] * size[1] / (input_size[0] * input_size[1]))
        larger.append({"input_size": list(size), "below_cell": float(np.mean(sides * factor < stride))})
    return DefectScale(
        input_size=(int(input_size[0]), int(input_size[1])),
        stride=int(stride),
        regions=int(sides.size),
        side_px={"p10": float(np.quantile(sides, 0.1)), "median": float(np.median(sides)), "p90": float(np.quantile(sides, 0.9))},
        below_cell=float(np.mean(sides < stride)),
        larger=larger,
    )


def defect_scale_of_images(
    images: Iterable[tuple[Sample, tuple[int, int], tuple[int, int]]],
    input_size: tuple[int, int],
    stride: int = 16,
    resize_mode: str = "stretch",
) -> Optional[DefectScale]:
    """:func:`defect_scale` of images given as (sample, (height, width) its content takes in the
    input, its source (height, width)); only images with regions count, for the source size too."""
    with_regions = [(sample, content, source) for sample, content, source in images if sample.regions]
    if not with_regions:
        return None
    measured = [(region, content) for sample, content, _ in with_regions for region in sample.regions]
    source_size = tuple(int(v) for v in np.median(np.array([source for _, _, source in with_regions]), axis=0))
    return defect_scale(measured, input_size, stride, source_size, resize_mode)


def larger_inputs(
    input_size: tuple[int, int], source_size: Optional[tuple[int, int]] = None, resize_mode: str = "stretch"
) -> list[tuple[int, int]]:
    """``input_size`` scaled by each of LARGER, sides rounded to multiples of ALIGN, as long as
    the image content at that size still gains detail: one of its sides within the source's."""
    sizes = []
    for scale in LARGER:
        size = tuple(max(ALIGN, int(round(side * scale / ALIGN)) * ALIGN) for side in input_size)
        if source_size is not None:
            content = fitted_size(source_size, size, resize_mode)
            if content[0] > source_size[0] and content[1] > source_size[1]:
                break
        if size != tuple(input_size) and size not in sizes:
            sizes.append(size)
    return sizes
