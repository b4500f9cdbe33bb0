"""Defect geometry: YOLO shapes kept by the loader, masks drawn exactly through stretch and letterbox."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_sealant.card import ModelCard
from edge_sealant.data.labels import parse_label_text
from edge_sealant.data.loading import load_dataset
from edge_sealant.data.masks import BOX, POLYGON, cell_targets, region_mask
from edge_sealant.data.types import Region
from edge_sealant.imageset import load_images
from edge_sealant.preprocess import content_box


def test_label_lines_keep_their_geometry():
    parsed = parse_label_text("0 0.5 0.5 0.2 0.1\n1 0.1 0.1 0.3 0.1 0.2 0.4\n", n_classes=2, where="x.txt")
    box, polygon = parsed.shapes
    assert (box.class_id, box.kind, box.points) == (0, "box", (0.5, 0.5, 0.2, 0.1))
    assert (polygon.class_id, polygon.kind) == (1, "polygon") and len(polygon.points) == 6
    assert parsed.class_ids == [0, 1]


def test_box_fills_exactly_its_pixels():
    mask = region_mask([Region("gap", "box", (0.5, 0.5, 0.5, 0.5))], (8, 8), (0, 0, 8, 8))
    assert mask[2:6, 2:6].tolist() == [[BOX] * 4] * 4
    assert int((mask > 0).sum()) == 16


def test_polygon_fills_pixels_at_least_half_covered():
    triangle = Region("smear", "polygon", (0.0, 0.0, 1.0, 0.0, 0.0, 1.0))
    mask = region_mask([triangle], (8, 8), (0, 0, 8, 8))
    assert mask[0].tolist() == [POLYGON] * 8  # first row entirely inside
    assert mask[7, 1:].tolist() == [0] * 7  # below the diagonal
    assert int((mask > 0).sum()) == 36  # 28 pixels wholly inside + the 8 half-covered ones on the diagonal
    assert mask[3, 3] == POLYGON and mask[3, 5] == 0


def test_polygon_wins_over_box_where_they_overlap():
    regions = [Region("a", "box", (0.5, 0.5, 1.0, 1.0)), Region("b", "polygon", (0.0, 0.0, 0.5, 0.0, 0.5, 0.5, 0.0, 0.5))]
    mask = region_mask(regions, (8, 8), (0, 0, 8, 8))
    assert (mask[:4, :4] == POLYGON).all() and (mask[4:, 4:] == BOX).all()


def test_a_defect_smaller_than_a_pixel_still_marks_one():
    mask = region_mask([Region("pin", "box", (0.3, 0.7, 0.001, 0.001))], (64, 32), (0, 0, 64, 32))
    ys, xs = np.nonzero(mask)
    assert len(ys) == 1 and (ys[0], xs[0]) == (int(0.7 * 64), int(0.3 * 32))


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_mask_lands_on_the_defect_pixels_after_resize(tmp_path, mode):
    """Draw a bright square on a tall frame, label it, load through the model's resize: the
    mask must cover the bright pixels and nothing else (to a pixel at the edges)."""
    height, width = 400, 130
    frame = np.full((height, width, 3), 40, dtype=np.uint8)
    y0, y1, x0, x1 = 100, 180, 30, 90
    frame[y0:y1, x0:x1] = 255
    images, labels = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    cv2.imwrite(str(images / "a.png"), frame)
    cx, cy, w, h = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height
    (labels / "a.txt").write_text(f"0 {cx} {cy} {w} {h}\n")
    cv2.imwrite(str(images / "b.png"), frame)  # a normal image (no label file)
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [blob]\n")
    dataset = load_dataset(tmp_path / "data.yaml", val_fraction=0.0, test_fraction=0.0)
    card = ModelCard(model="efficientnet_lite0", input_size=(96, 64), resize_mode=mode)
    loaded = load_images(dataset.split("train"), card, masks=True)
    by_name = {s.path.name: i for i, s in enumerate(loaded.samples)}
    image, mask = loaded.images[by_name["a.png"]], loaded.masks[by_name["a.png"]]
    bright = image[..., 0] > (40 + 255) / 2  # at least half covered by the square, like the mask's rule
    marked = mask > 0
    ys, xs = np.nonzero(bright)
    one_edge = (ys.max() - ys.min() + 1) + (xs.max() - xs.min() + 1)
    assert (marked ^ bright).sum() <= one_edge  # resampling may move an edge by one pixel, no more
    assert marked.sum() > 0.8 * bright.sum()
    assert not loaded.masks[by_name["b.png"]].any()
    assert loaded.has_geometry.all()


def test_letterbox_content_box_matches_the_resize():
    top, left, h, w = content_box((400, 130), (96, 64), "letterbox")
    assert (h, w) == (96, 31) and left == (64 - 31) // 2 and top == 0
    assert content_box((400, 130), (96, 64), "stretch") == (0, 0, 96, 64)


def test_imagefolder_defects_have_no_geometry(tmp_path):
    for label in ("normal", "defect"):
        folder = tmp_path / "train" / label
        folder.mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(folder / f"{k}.png"), np.zeros((16, 8, 3), np.uint8))
    dataset = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    by_label = {s.label: s for s in dataset.split("train")}
    assert by_label[0].has_geometry and not by_label[1].has_geometry


def test_cell_targets_mark_any_covered_cell():
    mask = np.zeros((8, 8), np.uint8)
    mask[5, 6] = BOX
    cells = cell_targets(mask, (2, 2))
    assert cells.tolist() == [[0.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ValueError):
        cell_targets(mask, (3, 3))
