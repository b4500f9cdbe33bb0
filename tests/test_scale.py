"""data.scale: the labelled defects measured against one heatmap cell, in data inspect and train."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sealant.cli import app
from edge_sealant.data.audit import audit_dataset
from edge_sealant.data.loading import load_dataset
from edge_sealant.data.scale import DEFAULT_INPUT, defect_scale, larger_inputs, region_area
from edge_sealant.data.types import Region
from edge_sealant.errors import EdgeSealantError

runner = CliRunner()


def box(w: float, h: float) -> Region:
    return Region("gap", "box", (0.5, 0.5, w, h))


def test_region_area_of_boxes_and_polygons():
    assert region_area(box(0.2, 0.1)) == pytest.approx(0.02)
    triangle = Region("gap", "polygon", (0.0, 0.0, 0.5, 0.0, 0.0, 0.5))
    assert region_area(triangle) == pytest.approx(0.125)
    square_clockwise = Region("gap", "polygon", (0.1, 0.1, 0.1, 0.3, 0.3, 0.3, 0.3, 0.1))
    assert region_area(square_clockwise) == pytest.approx(0.04)


def test_sides_and_share_under_a_cell_at_the_input():
    # 512x192 input (stretch): a 0.02 x 0.02 box is sqrt(0.0004 * 512 * 192) = 6.3 px across,
    # a 0.1 x 0.1 box 31.4 px.
    measured = [(box(0.02, 0.02), (512, 192))] * 3 + [(box(0.1, 0.1), (512, 192))]
    scale = defect_scale(measured, (512, 192), stride=16)
    assert scale.regions == 4
    assert scale.side_px["median"] == pytest.approx(math.sqrt(0.0004 * 512 * 192))
    assert scale.below_cell == pytest.approx(0.75)
    assert scale.needs_larger_input
    # at 3x the sides (1536x576) the small boxes are 18.8 px: no longer under a cell
    shares = {tuple(row["input_size"]): row["below_cell"] for row in scale.larger}
    assert shares == {(768, 288): 0.75, (1024, 384): 0.75, (1536, 576): 0.0}
    assert "75% of the 4 labelled defects" in scale.advice() and "1536x576 0%" in scale.advice()


def test_letterbox_content_is_what_counts():
    # the same box on a letterboxed image that fills only half the input height is smaller
    stretch = defect_scale([(box(0.1, 0.1), (256, 256))], (256, 256))
    letterbox = defect_scale([(box(0.1, 0.1), (128, 256))], (256, 256))
    assert letterbox.side_px["median"] == pytest.approx(stretch.side_px["median"] / math.sqrt(2))


def test_no_regions_no_report_and_large_defects_no_warning():
    assert defect_scale([], (512, 192)) is None
    assert not defect_scale([(box(0.3, 0.3), (512, 192))], (512, 192)).needs_larger_input


def test_larger_inputs_stop_at_the_source_size():
    assert larger_inputs((512, 192)) == [(768, 288), (1024, 384), (1536, 576)]
    assert larger_inputs((512, 192), source_size=(1100, 400)) == [(768, 288), (1024, 384)]
    assert larger_inputs((256, 256), source_size=(300, 300)) == []
    scale = defect_scale([(box(0.01, 0.01), (256, 256))], (256, 256), source_size=(300, 300))
    assert scale.larger == [] and "would go past the source resolution" in scale.advice()
    # stretch squeezes a 1000x200 source in height only: 768x288 still gains height detail
    assert larger_inputs((512, 192), source_size=(1000, 200)) == [(768, 288)]
    # letterbox puts a 400x100 source at 256x64 inside 256x256: 384x384 holds it at 384x96
    assert larger_inputs((256, 256), source_size=(400, 100), resize_mode="letterbox") == [(384, 384)]


def test_loaded_images_keep_boxes_and_source_sizes_through_subsets():
    from edge_sealant.data.types import Sample
    from edge_sealant.imageset import LoadedImages

    samples = [Sample(Path("n.png"), 0), Sample(Path("d.png"), 1, ("gap",), 1, (box(0.02, 0.02),))]
    loaded = LoadedImages(np.zeros((2, 512, 192, 3), np.uint8), samples, [],
                          boxes=np.array([[0, 0, 512, 192], [0, 0, 512, 192]]), source_hw=np.array([[2532, 824], [2532, 824]]))
    part = loaded.subset([1])
    assert part.boxes.tolist() == [[0, 0, 512, 192]] and part.source_hw.tolist() == [[2532, 824]]
    scale = part.defect_scale()
    assert scale.regions == 1 and scale.side_px["median"] == pytest.approx(math.sqrt(0.0004 * 512 * 192))
    assert LoadedImages(loaded.images[:1], samples[:1], []).defect_scale() is None  # no boxes kept: nothing to say
    assert loaded.subset([0]).defect_scale() is None  # no regions


def test_default_input_matches_the_model_registry():
    from edge_sealant.models.registry import DEFAULT_MODEL, MODEL_SPECS

    assert tuple(MODEL_SPECS[DEFAULT_MODEL].default_size) == DEFAULT_INPUT


@pytest.fixture
def tall_dataset(tmp_path: Path) -> Path:
    """Four 400x100 (tall) images: two with one small box (0.02 x 0.04 of the frame), two normal."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name, text in (("d", "0 0.5 0.5 0.02 0.04\n"), ("n", "")):
            image = tmp_path / "images" / split / f"{name}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image), rng.integers(0, 255, (400, 100, 3), dtype=np.uint8))
            label = tmp_path / "labels" / split / f"{name}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [gap]\n")
    return tmp_path / "data.yaml"


def test_audit_measures_defects_at_the_given_input(tall_dataset):
    dataset = load_dataset(tall_dataset)
    # stretch to 256x64: the box is 0.02 * 64 = 1.28 px wide, 0.04 * 256 = 10.24 px high
    report = audit_dataset(dataset, input_size=(256, 64), resize_mode="stretch", stride=16)
    scale = report["defect_scale"]
    assert scale["regions"] == 2 and scale["resize_mode"] == "stretch"
    assert scale["side_px"]["median"] == pytest.approx(math.sqrt(1.28 * 10.24))
    assert scale["below_cell"] == 1.0
    assert any("smaller than one 16x16-px heatmap cell" in w for w in report["warnings"])
    # letterbox into 256x256: the 400x100 image lands as 256x64, the same pixels
    letterbox = audit_dataset(dataset, input_size=(256, 256), resize_mode="letterbox")["defect_scale"]
    assert letterbox["side_px"]["median"] == pytest.approx(scale["side_px"]["median"])
    # larger inputs never go beyond the 400x100 source
    assert [row["input_size"] for row in scale["larger"]] == [[384, 96]]  # 512x128 would only upsample the 400x100 source
    assert [row["input_size"] for row in audit_dataset(dataset, input_size=(256, 256), resize_mode="letterbox")["defect_scale"]["larger"]] == [[384, 384]]
    with pytest.raises(EdgeSealantError, match="resize mode"):
        audit_dataset(dataset, resize_mode="crop")


def test_data_inspect_prints_the_defect_size(tall_dataset):
    result = runner.invoke(app, ["data", "inspect", str(tall_dataset), "--imgsz", "256x64"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "defects at input 256x64 (stretch): 2 regions" in result.output
    assert "100% smaller than one 16x16-px heatmap cell (by area)" in result.output
    refused = runner.invoke(app, ["data", "inspect", str(tall_dataset), "--heatmap-stride", "0"])
    assert refused.exit_code == 1 and "--heatmap-stride 0 must be one of" in refused.output
