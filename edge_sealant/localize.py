"""Where does the heatmap point, against the regions the customer labelled?

For a heatmap model scored on a labelled split (``evaluate``; ``benchmarks/localization.py``):

* **pointing game**: on each defect image whose defects are all outlined, the peak of the
  heatmap (upsampled bilinearly to the input size) lies inside a labelled box/polygon dilated
  by 2% of the input side. Its **chance level** is the mean share of the input those dilated
  labels cover: what a peak placed at random scores, so a figure near it means the heatmap
  points nowhere in particular (large defects make chance high);
* **recall by defect size**: a labelled region is found when some heatmap pixel inside it
  (dilated the same way) reaches half the image's peak; regions binned by their share of the
  image (< 0.1%, 0.1-1%, > 1%);
* **review**: the images where the model and the labels disagree about *where*, for a person
  to look at. ``unlabelled region``: cells at or above the region level (what ``predict``
  would box) touching no labelled region; on a defect image it is either a model error or a
  defect the labels missed, on a normal image a false-alarm region. ``unseen label``: a
  labelled region in which no cell reaches the level.

``evaluate`` writes the review as ``review.csv`` and, for the strongest images, overlay
pictures with the labels outlined in green beside the model's regions in red. On
magnetic-tile's test split the normal image the 320 model scores highest (p = 0.92, a tile
labelled free) shows two dark pits at the spot the heatmap marks, on two exposures of that
tile: a label to check, not a model error. Torch-free (numpy and OpenCV).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from edge_sealant.data.masks import region_mask, region_outline
from edge_sealant.data.types import Region, Sample
from edge_sealant.metrics import clopper_pearson, grouped_rate_interval, widen
from edge_sealant.errors import EdgeSealantError
from edge_sealant.runtime.regions import DEFAULT_LEVEL, find_regions, find_regions_with_cells

if TYPE_CHECKING:
    from edge_sealant.card import ModelCard
    from edge_sealant.imageset import LoadedImages

DILATION = 0.02  # of the input's longer side: a peak this close to a label still points at it
SIZE_BINS = ((0.0, 0.001, "< 0.1%"), (0.001, 0.01, "0.1-1%"), (0.01, 1.01, "> 1%"))
UNLABELLED, UNSEEN = "unlabelled region", "unseen label"
OVERLAY_LIMIT = 200  # review pictures per evaluation, strongest first: enough to read, bounded on disk


@dataclass(frozen=True)
class ReviewItem:
    """One disagreement between the heatmap and the labels on one image.

    ``box``: (x0, y0, x1, y1) in source pixels: the model's region (``unlabelled region``) or
    the labelled region's bounding box (``unseen label``); ``peak``: the highest heatmap cell
    in it; ``part``: the image's group of one part (exposures of one tile share it), so a
    reviewer looks at each part once.
    """

    file: str
    label: int
    kind: str
    probability: float
    peak: float
    box: tuple[int, int, int, int]
    part: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "box": list(self.box)}


def region_area(region: Region) -> float:
    """Share of the image a region covers (box: w*h; polygon: shoelace area)."""
    points = np.asarray(region.points, dtype=np.float64)
    if region.kind == "box":
        return float(points[2] * points[3])
    x, y = points[0::2], points[1::2]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def dilated(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by a disc of ``radius`` pixels (bool)."""
    if radius < 1:
        return mask.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def upsampled(heatmap: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """The heatmap at input resolution, bilinear with half-pixel centres, as saliency maps are
    shown (nearest-neighbour would put every peak on the top-left pixel of its cell)."""
    return cv2.resize(np.asarray(heatmap, np.float32), (input_hw[1], input_hw[0]), interpolation=cv2.INTER_LINEAR)


def outlined_defect(sample: Sample) -> bool:
    """A defect image whose every defect is outlined: the only kind the figures can judge."""
    return sample.label == 1 and sample.has_geometry


def localization(
    heatmaps: np.ndarray, samples: Sequence[Sample], boxes: np.ndarray, input_hw: tuple[int, int],
    groups: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Pointing game (interval: Clopper-Pearson widened to a bootstrap of ``groups``, images of
    one part; and its chance level) and recall by defect size over the outlined defect images
    of ``samples``.

    ``boxes``: each image's content box (top, left, height, width) in the input.
    """
    groups = list(range(len(samples))) if groups is None else list(groups)
    radius = round(DILATION * max(input_hw))
    per_image, image_groups, covered = [], [], []
    found = {label: [0, 0] for _, _, label in SIZE_BINS}
    for heatmap, sample, box, group in zip(heatmaps, samples, boxes, groups):
        if not outlined_defect(sample):
            continue
        up = upsampled(heatmap, input_hw)
        content = tuple(int(v) for v in box)
        labelled = dilated(region_mask(sample.regions, input_hw, content) > 0, radius)
        peak = np.unravel_index(int(np.argmax(up)), up.shape)
        per_image.append(bool(labelled[peak]))
        covered.append(float(labelled.mean()))
        image_groups.append(group)
        for region in sample.regions:
            inside = dilated(region_mask([region], input_hw, content) > 0, radius)
            label = next(label for low, high, label in SIZE_BINS if low <= region_area(region) < high)
            found[label][1] += 1
            found[label][0] += bool(up[inside].max(initial=0.0) >= 0.5 * up.max())
    hits, images = sum(per_image), len(per_image)
    return {
        "defect_images": images,
        "pointing_game": hits / images if images else None,
        "pointing_game_ci": list(widen(clopper_pearson(hits, images), grouped_rate_interval(per_image, image_groups))) if images else None,
        "pointing_game_chance": float(np.mean(covered)) if images else None,
        "recall_by_size": {label: {"found": f, "regions": n, "recall": f / n if n else None,
                                   "recall_ci": list(clopper_pearson(f, n)) if n else None} for label, (f, n) in found.items()},
    }


def review(
    heatmaps: np.ndarray, probabilities: np.ndarray, samples: Sequence[Sample], names: Sequence[str],
    boxes: np.ndarray, source_hw: np.ndarray, input_hw: tuple[int, int], stride: int, level: float = DEFAULT_LEVEL,
    groups: Sequence[int] | None = None,
) -> list[ReviewItem]:
    """The disagreements of the module doc on every image whose map is known (normal images and
    outlined defects), strongest first: the unlabelled regions by peak, then the unseen labels.
    ``groups``: each image's part (default: every image its own)."""
    radius = round(DILATION * max(input_hw))
    groups = list(range(len(samples))) if groups is None else list(groups)
    items: list[ReviewItem] = []
    for heatmap, probability, sample, name, box, source, part in zip(heatmaps, probabilities, samples, names, boxes, source_hw, groups):
        if not sample.has_geometry:
            continue
        content, source_size = tuple(int(v) for v in box), (int(source[0]), int(source[1]))
        labelled = dilated(region_mask(sample.regions, input_hw, content) > 0, radius) if sample.regions else None
        for region, cells in find_regions_with_cells(heatmap, stride, content, source_size, level):
            if labelled is None or not _touches(cells, labelled, stride):
                items.append(ReviewItem(name, sample.label, UNLABELLED, float(probability), region.peak, region.box, int(part)))
        for region in sample.regions:
            inside = region_mask([region], input_hw, content) > 0
            peak = _cell_peak(heatmap, dilated(inside, radius), stride)
            if peak < level:
                items.append(ReviewItem(name, sample.label, UNSEEN, float(probability), round(peak, 6),
                                        _source_box(region, source_size), int(part)))
    unlabelled = sorted((i for i in items if i.kind == UNLABELLED), key=lambda i: -i.peak)
    return unlabelled + sorted((i for i in items if i.kind == UNSEEN), key=lambda i: i.peak)


def review_summary(items: Sequence[ReviewItem]) -> dict[str, int]:
    """Counts: unlabelled regions on defect and on normal images, unseen labels, images, parts."""
    return {
        "unlabelled_on_defect_images": sum(i.kind == UNLABELLED and i.label == 1 for i in items),
        "unlabelled_on_normal_images": sum(i.kind == UNLABELLED and i.label == 0 for i in items),
        "unseen_labels": sum(i.kind == UNSEEN for i in items),
        "images": len({i.file for i in items}),
        "parts": len({i.part for i in items}),
    }


def _cell_grid(mask: np.ndarray, stride: int, grid_hw: tuple[int, int]) -> np.ndarray:
    """Per heatmap cell: whether any input pixel of it is set in ``mask``."""
    rows, columns = grid_hw
    padded = np.zeros((rows * stride, columns * stride), bool)
    h, w = min(mask.shape[0], rows * stride), min(mask.shape[1], columns * stride)
    padded[:h, :w] = mask[:h, :w]
    return padded.reshape(rows, stride, columns, stride).any(axis=(1, 3))


def _touches(cells: np.ndarray, labelled: np.ndarray, stride: int) -> bool:
    return bool((cells & _cell_grid(labelled, stride, cells.shape)).any())


def _cell_peak(heatmap: np.ndarray, mask: np.ndarray, stride: int) -> float:
    """The highest cell of ``heatmap`` that covers a pixel of ``mask``."""
    grid = _cell_grid(mask, stride, heatmap.shape)
    return float(np.max(heatmap[grid])) if grid.any() else 0.0


def _source_box(region: Region, source_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """A labelled region's bounding box in source pixels."""
    height, width = source_hw
    xy = region_outline(region) * [width, height]  # in [0, width] x [0, height]
    (x0, y0), (x1, y1) = np.floor(xy.min(axis=0)), np.ceil(xy.max(axis=0))
    return int(x0), int(y0), int(x1), int(y1)


def heatmap_report(
    heatmaps: np.ndarray, probabilities: np.ndarray, loaded: LoadedImages, names: Sequence[str], card: ModelCard,
    groups: Sequence[int], out: Path | None = None,
) -> dict[str, Any]:
    """``evaluate``'s figures for a heatmap model: ``localization`` (None without outlined
    defects) and ``review`` (summary + items). With ``out``, writes ``out/review.csv`` and the
    overlay pictures of up to :data:`OVERLAY_LIMIT` review images into ``out/review/``, which
    replaces the pictures of an earlier evaluation there."""
    input_hw = tuple(card.input_size)
    located = localization(heatmaps, loaded.samples, loaded.boxes, input_hw, groups)
    items = review(heatmaps, probabilities, loaded.samples, names, loaded.boxes, loaded.source_hw, input_hw, card.heatmap_stride,
                   groups=groups)
    result: dict[str, Any] = {
        "localization": located if located["defect_images"] else None,
        "review": {**review_summary(items), "level": DEFAULT_LEVEL, "items": [i.to_dict() for i in items]},
    }
    if out is not None:
        folder = _fresh_picture_folder(out / "review")
        pictures = _write_overlays(folder, items, heatmaps, probabilities, loaded, names, card)
        _write_review_csv(out / "review.csv", items, pictures)
        result["review"].update(csv=str(out / "review.csv"), overlays=str(out / "review"), overlays_written=len(pictures))
    return result


def _fresh_picture_folder(folder: Path) -> Path:
    """``folder``, emptied of an earlier review's pictures (never of anything else)."""
    if folder.exists():
        strays = [p.name for p in folder.iterdir() if p.suffix != ".jpg" or not p.is_file()] if folder.is_dir() else [folder.name]
        if strays:
            raise EdgeSealantError(f"{folder}: holds files that are not review pictures ({', '.join(strays[:3])}); "
                                   "move them or choose another --out")
        for picture in folder.iterdir():
            picture.unlink()
    return folder


def _write_review_csv(path: Path, items: Sequence[ReviewItem], pictures: dict[str, Path]) -> None:
    from edge_sealant.card import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "part", "label", "kind", "probability", "peak", "x0", "y0", "x1", "y1", "overlay"])
    for i in items:
        picture = pictures.get(i.file)
        writer.writerow([i.file, i.part, i.label, i.kind, f"{i.probability:.6f}", f"{i.peak:.6f}", *i.box, picture.name if picture else ""])
    atomic_write_text(path, buffer.getvalue())


def _write_overlays(
    folder: Path, items: Sequence[ReviewItem], heatmaps: np.ndarray, probabilities: np.ndarray, loaded: LoadedImages,
    names: Sequence[str], card: ModelCard,
) -> dict[str, Path]:
    """One picture per reviewed image (the first :data:`OVERLAY_LIMIT` in review order)."""
    from edge_sealant.overlay import draw_overlay, source_image, write_picture
    from edge_sealant.runtime.inspector import InspectionResult
    from edge_sealant.runtime.regions import grid_extent

    index_of = {name: k for k, name in enumerate(names)}
    files = list(dict.fromkeys(i.file for i in items))[:OVERLAY_LIMIT]
    if files:
        folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in files:
        k = index_of[name]
        content, source = tuple(int(v) for v in loaded.boxes[k]), (int(loaded.source_hw[k][0]), int(loaded.source_hw[k][1]))
        probability, threshold = float(probabilities[k]), card.threshold
        decision = card.labels[int(probability >= threshold)]
        result = InspectionResult(
            name, probability, probability >= threshold, decision, threshold, "embedded", 0.0, 0.0, 0.0,
            heatmap=heatmaps[k], regions=find_regions(heatmaps[k], card.heatmap_stride, content, source),
            heatmap_extent=grid_extent(heatmaps[k].shape, card.heatmap_stride, content, source),
        )
        sample = loaded.samples[k]
        image = source_image(sample.path)
        written[name] = write_picture(folder, name, draw_overlay(image, result, sample.regions, card.labels[sample.label]))
    return written
