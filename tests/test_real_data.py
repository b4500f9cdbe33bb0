"""Real-data checks on ../shared/datasets/magnetic-tile (skipped when absent).

``-m slow``: the audit figures (seconds). ``-m golden``: trains the recommended CPU recipe
(320x320 with box supervision: about 11 minutes of training on 2 cores), exports and quantizes it, and compares with the golden figures
in benchmarks/golden.json (measured values with tolerances, like NNCF's example_scope).
"""

import json

import pytest

from edge_sealant.data.audit import audit_dataset
from edge_sealant.data.loading import load_dataset

CASE = "magnetic-tile/efficientnet_lite0_320x320_8ep"


@pytest.fixture(scope="module")
def golden(repo_root):
    return json.loads((repo_root / "benchmarks" / "golden.json").read_text())[CASE]


@pytest.mark.slow
def test_audit_of_the_tile_grouped_split(magnetic_tile):
    report = audit_dataset(load_dataset(magnetic_tile))
    assert report["splits"]["test"] == {"normal": 141, "defect": 66}
    assert report["duplicates"]["cross_split_exact"] == 0
    assert report["duplicates"]["cross_split_near"] == 0  # re-split by tile: no exposure of a test tile elsewhere
    assert report["duplicates"]["within_split_near"] > 100  # the exposures of one tile stay together


@pytest.mark.slow
def test_data_split_of_magnetic_tile_audits_clean(magnetic_tile, tmp_path):
    from edge_sealant.data.freeze import split_dataset

    result = split_dataset(magnetic_tile, tmp_path / "split", seed=0)
    report = audit_dataset(load_dataset(result.data))
    assert sum(c["normal"] + c["defect"] for c in report["splits"].values()) == 1344
    assert report["duplicates"]["cross_split_exact"] == 0 and report["duplicates"]["cross_split_near"] == 0
    assert result.grouping["largest_group"] <= result.grouping["max_group_size"]
    for split in ("val", "test"):  # every defect class reaches every held-out split
        assert set(report["images_per_class"][split]) == {"blowhole", "break", "crack", "fray", "uneven"}


@pytest.mark.golden
def test_recommended_cpu_recipe_meets_the_golden_figures(magnetic_tile, golden, tmp_path):
    from edge_sealant.evaluate import evaluate_run
    from edge_sealant.export import export_run
    from edge_sealant.quantize import quantize_run
    from edge_sealant.train import TrainOptions, train

    recipe = golden["train"]
    run = tmp_path / "run"
    train(TrainOptions(data=str(magnetic_tile), out=str(run), model=recipe["model"], imgsz=tuple(recipe["imgsz"]),
                       epochs=recipe["epochs"], pretrained=recipe["pretrained"], time_limit_min=recipe["time_limit_min"]))
    metrics = evaluate_run(run, magnetic_tile, split="test")
    assert metrics["auroc"] >= golden["test_auroc"] - golden["test_auroc_tolerance"]
    assert metrics["auroc_ci"][0] <= metrics["auroc"] <= metrics["auroc_ci"][1] and metrics["role"] == "held-out"
    # the heatmap points at the labelled defect (a broken head or mask alignment falls to chance)
    assert metrics["localization"]["pointing_game"] >= golden["test_pointing_game"] - golden["test_pointing_game_tolerance"]
    card = json.loads((run / "run.json").read_text())
    assert card["metrics"]["val"]["auroc"] >= golden["val_auroc"] - golden["val_auroc_tolerance"]

    report = export_run(run, formats=["openvino"], precisions=["fp32"])
    assert all(a.max_abs_diff <= golden["fp32_parity_max"] for a in report.artifacts)
    quantized = quantize_run(run, magnetic_tile, backend="openvino")
    test = quantized["metrics"]["test"]
    assert test["fp32"]["auroc"] - test["int8"]["auroc"] <= golden["int8_auroc_drop_max"]
    assert quantized["weights"]["ratio"] <= golden["int8_weights_ratio_max"]
