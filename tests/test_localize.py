"""Where the heatmap points against the labels: pointing game, recall by size, the review list.

Hand-made heatmaps on a 32x32 input (stride 8: a 4x4 grid) and 64x64 source images, so every
figure can be worked out by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_sealant.data.types import Region, Sample
from edge_sealant.localize import UNLABELLED, UNSEEN, localization, region_area, review, review_summary

INPUT = (32, 32)
STRIDE = 8
WHOLE = (0, 0, 32, 32)  # stretch: the image fills the input
SOURCE = (64, 64)


def box(cx: float, cy: float, w: float, h: float) -> Region:
    return Region("defect", "box", (cx, cy, w, h))


def sample(name: str, *regions: Region, label: int | None = None, image_level: bool = False) -> Sample:
    label = (1 if regions or image_level else 0) if label is None else label
    return Sample(Path(name), label, ("defect",) * bool(label), len(regions), tuple(regions), image_level)


def heat(*cells: tuple[int, int, float]) -> np.ndarray:
    grid = np.full((4, 4), 0.05, np.float32)
    for row, column, value in cells:
        grid[row, column] = value
    return grid


TOP_LEFT = box(0.1, 0.1, 0.2, 0.2)  # input pixels 0..6: inside cell (0, 0), 4% of the image
SAMPLES = [
    sample("hit.png", TOP_LEFT),  # the peak on its label
    sample("miss.png", TOP_LEFT),  # the peak far from its label
    sample("normal.png"),  # a region on a normal image
    sample("by_label.png", image_level=True),  # a defect known only by its image label: not judged
]
MAPS = np.stack([
    heat((0, 0, 0.9)),
    heat((3, 3, 0.8), (0, 0, 0.3)),
    heat((2, 1, 0.7)),
    heat((3, 0, 0.95)),
])
BOXES = np.array([WHOLE] * 4)
SOURCES = np.array([SOURCE] * 4)


def test_pointing_game_and_recall_by_size_on_outlined_defects_only():
    located = localization(MAPS, SAMPLES, BOXES, INPUT)
    assert located["defect_images"] == 2  # the image-level defect and the normal image are not judged
    assert located["pointing_game"] == pytest.approx(0.5)
    low, high = located["pointing_game_ci"]
    assert low < 0.5 < high
    # found on "hit" (its cell is the peak), not on "miss" (0.3 < half of 0.8)
    assert region_area(TOP_LEFT) == pytest.approx(0.04)
    large = located["recall_by_size"]["> 1%"]
    assert (large["found"], large["regions"], large["recall"]) == (1, 2, 0.5)
    assert located["recall_by_size"]["< 0.1%"]["regions"] == 0
    # chance: the dilated label (input pixels 0..6 grown by round(0.02 * 32) = 1 px) covers the
    # same share of both judged images; a random peak lands in it that often
    grown = (0.2 * 32 + 1) ** 2 / 32 ** 2
    assert located["pointing_game_chance"] == pytest.approx(grown, rel=0.15)


def test_a_peak_just_outside_the_label_still_points_at_it():
    """The label is dilated by 2% of the input side (4 px of 200) before the pointing game looks."""
    label = box(0.5, 0.5, 0.05, 0.05)  # input pixels 95..104 both ways
    maps = np.zeros((2, 200, 200), np.float32)  # input-sized maps: the upsampling is the identity
    maps[0, 100, 107] = 1.0  # 3 px right of the box: inside the dilation
    maps[1, 100, 110] = 1.0  # 6 px right: outside
    located = localization(maps, [sample("a", label), sample("b", label)], np.array([(0, 0, 200, 200)] * 2), (200, 200))
    assert located["pointing_game"] == pytest.approx(0.5)


def test_review_lists_regions_outside_labels_and_labels_the_heatmap_misses():
    names = [str(s.path) for s in SAMPLES]
    items = review(MAPS, np.array([0.9, 0.6, 0.4, 0.95]), SAMPLES, names, BOXES, SOURCES, INPUT, STRIDE)
    by_file = {(i.file, i.kind): i for i in items}
    assert ("hit.png", UNLABELLED) not in by_file and ("hit.png", UNSEEN) not in by_file  # agrees with its label
    outside = by_file[("miss.png", UNLABELLED)]
    assert outside.box == (48, 48, 64, 64) and outside.peak == pytest.approx(0.8) and outside.label == 1
    unseen = by_file[("miss.png", UNSEEN)]
    assert unseen.box == (0, 0, 13, 13) and unseen.peak == pytest.approx(0.3)  # the label's box in source pixels
    alarm = by_file[("normal.png", UNLABELLED)]
    assert alarm.label == 0 and alarm.box == (16, 32, 32, 48)
    assert not any(i.file == "by_label.png" for i in items)  # its defect has no outline to compare with
    # strongest unlabelled regions first, then the unseen labels, faintest first
    assert [i.kind for i in items] == [UNLABELLED, UNLABELLED, UNSEEN]
    assert items[0].peak >= items[1].peak
    assert review_summary(items) == {"unlabelled_on_defect_images": 1, "unlabelled_on_normal_images": 1, "unseen_labels": 1,
                                     "images": 2, "parts": 2}
    # exposures of one part: the reviewer is told it is one part
    one_part = review(MAPS, np.array([0.9, 0.6, 0.4, 0.95]), SAMPLES, names, BOXES, SOURCES, INPUT, STRIDE, groups=[7, 7, 7, 8])
    assert {i.part for i in one_part} == {7} and review_summary(one_part)["parts"] == 1


def test_review_with_a_letterboxed_input():
    """A 64x32 (wide) source letterboxed into 32x32 sits at rows 8..24; its label and the
    heatmap region both map through that content box, and margin cells map to nothing."""
    wide = sample("wide.png", box(0.25, 0.5, 0.25, 0.5))  # source x 8..24, y 8..24 -> input x 4..12, y 12..20
    agrees = heat((1, 0, 0.9), (2, 1, 0.8))  # on the label
    margin = heat((0, 3, 0.9))  # rows 0..8: the top margin, no image there
    boxes = np.array([(8, 0, 16, 32)] * 2)
    sources = np.array([(32, 64)] * 2)
    items = review(np.stack([agrees, margin]), np.array([0.9, 0.2]), [wide, wide], ["a", "b"], boxes, sources, INPUT, STRIDE)
    assert [(i.file, i.kind) for i in items] == [("b", UNSEEN)]  # the margin region is not an unlabelled region
    assert items[0].box == (8, 8, 24, 24)


def test_label_review_keeps_what_every_run_repeats():
    """benchmarks/label_review.py: a region counts as agreed only when every run has an
    overlapping region on the same image; an unseen label only when every run misses it."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "label_review.py"
    spec = importlib.util.spec_from_file_location("label_review", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def item(file, kind, box, peak):
        return {"file": file, "label": 0, "kind": kind, "probability": 0.5, "peak": peak, "box": box, "part": 0}

    first = [item("a", UNLABELLED, [0, 0, 10, 10], 0.9), item("b", UNLABELLED, [0, 0, 10, 10], 0.8),
             item("c", UNSEEN, [5, 5, 9, 9], 0.1)]
    second = [item("a", UNLABELLED, [8, 8, 20, 20], 0.7), item("a", UNLABELLED, [9, 9, 12, 12], 0.95),
              item("b", UNLABELLED, [10, 0, 20, 10], 0.9),  # touches b's box edge: no overlap
              item("c", UNSEEN, [5, 5, 9, 9], 0.2)]
    runs = [{"review": {"items": first}}, {"review": {"items": second}}]
    agreed = script.agreed_items(runs)
    assert [(a["file"], a["kind"]) for a in agreed] == [("a", UNLABELLED), ("c", UNSEEN)]
    assert agreed[0]["peaks"] == [0.9, 0.95] and agreed[1]["peaks"] == [0.1, 0.2]
