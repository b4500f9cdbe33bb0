"""Defect copy-paste (train.paste): donors, the pasted pixels and mask, the dataset's labels,
the option's checks, and a tiny training run with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_sealant.card import ModelCard
from edge_sealant.data.masks import BOX, POLYGON
from edge_sealant.errors import EdgeSealantError
from edge_sealant.imageset import LoadedImages
from edge_sealant.train import train
from edge_sealant.train.options import TrainOptions
from edge_sealant.train.parts import ArrayDataset
from edge_sealant.train.paste import DefectPaster, donor_patches

H, W = 48, 40


def _arrays():
    """Four images: 0 a defect with a dark 6x8 box and a polygon-marked 3x3 speck, 1 a defect
    whose box covers most of the image, 2 and 3 normal (flat grey, different exposures)."""
    images = np.full((4, H, W, 3), 120, np.uint8)
    images[3] = 200
    masks = np.zeros((4, H, W), np.uint8)
    images[0, 10:16, 5:13] = 20
    masks[0, 10:16, 5:13] = BOX
    masks[0, 30:33, 30:33] = POLYGON
    masks[1, 2:46, 2:38] = BOX  # 83% of the image: carries its part along, not a donor
    labels = np.array([1, 1, 0, 0])
    known = np.array([True, True, True, True])
    return images, masks, labels, known


def test_donors_are_the_small_regions_of_defect_images():
    images, masks, labels, known = _arrays()
    boxes = sorted(p.box for p in donor_patches(masks, labels, known))
    assert boxes == [(5, 10, 8, 6), (30, 30, 3, 3)]
    assert donor_patches(masks, labels, np.array([False, True, True, True])) == []  # unknown masks give nothing


def test_paste_moves_a_region_onto_a_normal_image_at_its_exposure():
    images, masks, labels, known = _arrays()
    before = images.copy()
    paster = DefectPaster(images, masks, labels, known)
    paster.patches = [p for p in paster.patches if p.box == (5, 10, 8, 6)]
    out, mask = paster.paste(images[3], np.random.default_rng(0))
    np.testing.assert_array_equal(images, before)  # the training arrays stay untouched
    marked = mask > 0
    assert marked.sum() == 6 * 8 and set(np.unique(mask[marked])) == {BOX}
    rows, cols = np.nonzero(marked)
    assert rows.max() - rows.min() + 1 == 6 and cols.max() - cols.min() + 1 == 8
    # the dark patch keeps its contrast (-100) against the brighter target (200), not its absolute level
    assert abs(float(out[marked].mean()) - 100.0) < 15.0
    far = np.ones_like(marked)
    far[max(0, rows.min() - 8) : rows.max() + 9, max(0, cols.min() - 8) : cols.max() + 9] = False
    assert (out[far] == 200).all()  # nothing changes away from the patch


def test_paste_lands_near_the_donor_place_and_never_outside():
    images, masks, labels, known = _arrays()
    paster = DefectPaster(images, masks, labels, known)
    paster.patches = [p for p in paster.patches if p.box == (30, 30, 3, 3)]  # near the corner
    rng = np.random.default_rng(1)
    tops, lefts = set(), set()
    for _ in range(200):
        _, mask = paster.paste(images[2], rng)
        rows, cols = np.nonzero(mask)
        assert rows.size == 9 and rows.max() < H and cols.max() < W  # clipped inside, never cut
        tops.add(int(rows.min()))
        lefts.add(int(cols.min()))
    reach_y, reach_x = round(0.125 * H), round(0.125 * W)
    assert min(tops) == 30 - reach_y and max(tops) == 30 + reach_y  # 6 rows either way
    assert min(lefts) == 30 - reach_x and max(lefts) == 30 + reach_x  # 5 columns either way


def test_dataset_turns_the_asked_share_of_normals_into_defects():
    images, masks, labels, known = _arrays()
    samples = [type("S", (), {"label": int(v), "has_geometry": True})() for v in labels]
    loaded = LoadedImages(images, samples, [], masks)
    pasters = {share: DefectPaster(images, masks, labels, known, share) for share in (0.0, 0.5, 1.0)}
    torch.manual_seed(0)
    everything = ArrayDataset(loaded, None, paster=pasters[1.0])
    for index in (2, 3):
        image, label, mask, is_known = everything[index]
        assert float(label) == 1.0 and bool(mask.any()) and bool(is_known)
    image, label, mask, _ = everything[1]  # defects stay what they were
    assert float(label) == 1.0 and torch.equal(mask, torch.from_numpy(masks[1]))
    nothing = ArrayDataset(loaded, None, paster=pasters[0.0])
    assert float(nothing[2][1]) == 0.0 and not bool(nothing[2][2].any())
    assert float(ArrayDataset(loaded, None)[2][1]) == 0.0  # no paster: nothing pasted
    torch.manual_seed(0)
    half = ArrayDataset(loaded, None, paster=pasters[0.5])
    pasted = sum(float(half[2 + k % 2][1]) for k in range(400))
    assert 150 < pasted < 250


def test_paste_option_is_checked():
    with pytest.raises(EdgeSealantError, match="paste-defects"):
        TrainOptions(data="d", out="o", paste_defects=1.5)
    with pytest.raises(EdgeSealantError, match="supervision image"):
        TrainOptions(data="d", out="o", paste_defects=0.3, supervision="image")


def test_training_with_paste_records_the_option(tmp_path):
    from edge_sealant.data.synth import synthesize
    from test_train import tiny_options

    synthesize(tmp_path / "ds", n=40, defect_ratio=0.35, size=(64, 32), seed=3)
    run = tmp_path / "run"
    train(tiny_options(tmp_path / "ds" / "data.yaml", run, epochs=1, paste_defects=0.5))
    card = ModelCard.load(run)
    assert card.supervision == "boxes" and card.train["options"]["paste_defects"] == 0.5
