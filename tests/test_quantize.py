"""INT8 quantization: OpenVINO / ONNX artifacts, manifest, report, refusals, CLI.

One tiny run (MobileNetV3-Small at 64x32, random weights with BatchNorm statistics taken on
the fixture images) and a tiny YOLO dataset are built once per module; each backend is
quantized once and the tests read what that wrote. Tests that mutate a run copy it first.
"""

from __future__ import annotations

import json
import warnings
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sealant.card import ModelCard
from edge_sealant.data.types import Sample
from edge_sealant.errors import EdgeSealantError

SIZE = (64, 32)  # H x W of the model input
SPLIT_COUNTS = {"train": (26, 14), "val": (8, 8), "test": (8, 8)}  # (normal, defect)


# --------------------------------------------------------------------------------- fixtures
def write_tiny_yolo(root: Path, seed: int = 0) -> Path:
    """A YOLO dataset of tall grey 'beads'; defects are dark blobs with one box each."""
    rng = np.random.default_rng(seed)
    for split, (n_normal, n_defect) in SPLIT_COUNTS.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for index in range(n_normal + n_defect):
            defect = index >= n_normal
            image = np.full((80, 40, 3), 90, np.uint8)
            cv2.rectangle(image, (12, 0), (28, 79), (170, 170, 170), -1)
            image = cv2.add(image, rng.integers(0, 25, image.shape, dtype=np.uint8))
            label = ""
            if defect:
                cx, cy, r = int(rng.integers(14, 27)), int(rng.integers(10, 70)), int(rng.integers(3, 7))
                cv2.circle(image, (cx, cy), r, (30, 30, 30), -1)
                label = f"0 {cx / 40:.4f} {cy / 80:.4f} {2 * r / 40:.4f} {2 * r / 80:.4f}\n"
            name = f"{split}_{index:03d}"
            cv2.imwrite(str(root / "images" / split / f"{name}.png"), image)
            (root / "labels" / split / f"{name}.txt").write_text(label)
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames:\n  0: void\n"
    )
    return root / "data.yaml"


def build_run(run: Path, data_yaml: Path, model: str = "mobilenet_v3_small") -> Path:
    """A run folder as 'edge-sealant train' leaves it: best.pt + run.json."""
    import torch

    from edge_sealant.checkpoint import save_checkpoint
    from edge_sealant.data.loading import load_dataset
    from edge_sealant.imageset import load_images
    from edge_sealant.models.registry import build_inspection_net, get_spec

    torch.manual_seed(0)
    spec = get_spec(model)
    dataset = load_dataset(data_yaml)
    card = ModelCard(
        model=model,
        input_size=SIZE,
        mean=spec.mean,
        std=spec.std,
        defect_classes=["void"],
        threshold=0.5,
        data_summary=dataset.summary(),
        train={"options": {"seed": 0}},
    )
    net = build_inspection_net(model, pretrained="none")
    images = load_images(dataset.split("train"), card).images
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    # Random weights with BatchNorm statistics of real inputs: activations of sane size, so
    # quantization behaves as on a trained net and the probabilities are not all 0 or 1.
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(pixels)
    net.eval()
    run.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run / "best.pt", net, card)
    card.save(run)
    return run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(data.yaml, run folder with FP32 OpenVINO + ONNX exports)."""
    from edge_sealant.export import export_run

    root = tmp_path_factory.mktemp("quantize")
    data_yaml = write_tiny_yolo(root / "data")
    run = build_run(root / "run", data_yaml)
    export_run(run, formats=["onnx", "openvino"], precisions=["fp32"], parity_limit=8)
    return data_yaml, run


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("int8"))
    return dest


@pytest.fixture(scope="module")
def ov_result(tiny):
    from rich.console import Console

    from edge_sealant.cli.quantize import console_printers, render_report
    from edge_sealant.quantize import quantize_run

    data_yaml, run = tiny
    console = Console(record=True, width=200)
    log, warn = console_printers(console)  # what the CLI prints with
    report = quantize_run(run, data_yaml, backend="openvino", subset_size=30, log=log, warn=warn)
    render_report(report, console)
    return report, console.export_text()


@pytest.fixture(scope="module")
def onnx_result(tiny):
    from edge_sealant.quantize import quantize_run

    data_yaml, run = tiny
    return quantize_run(run, data_yaml, backend="onnx", subset_size=30)


# ------------------------------------------------------------------------------ unit tests
def _samples(n_normal: int, n_defect: int) -> list[Sample]:
    return [Sample(Path(f"n{i}.png"), 0) for i in range(n_normal)] + [Sample(Path(f"d{i}.png"), 1) for i in range(n_defect)]


def test_stratified_sample_keeps_label_ratio_and_is_deterministic():
    from edge_sealant.quantize import stratified_sample

    samples = _samples(700, 300)
    chosen = stratified_sample(samples, 100, seed=3)
    assert len(chosen) == 100 == len({s.path for s in chosen})
    assert sum(s.label for s in chosen) == 30
    assert chosen == stratified_sample(samples, 100, seed=3)
    assert chosen != stratified_sample(samples, 100, seed=4)
    # A rare label keeps at least one image; asking for more than there is gives everything.
    rare = stratified_sample(_samples(199, 1), 10)
    assert sum(s.label for s in rare) == 1 and len(rare) == 10
    assert len(stratified_sample(samples[:5], 300)) == 5


def test_recipes_match_calibration_yaml(repo_root):
    from edge_sealant.quantize import DEFAULT_RECIPE, RECIPES, load_recipe_file, recipe_for

    parsed = load_recipe_file(repo_root / "calibration" / "recipes.yaml")
    assert parsed["default"] == DEFAULT_RECIPE
    assert parsed["families"] == RECIPES
    assert recipe_for("mobilenet_v3_large")["fast_bias_correction"] is False
    assert recipe_for("efficientnet_lite0")["preset"] == "performance"


def test_parse_reverted_reads_nncf_message():
    from edge_sealant.quantize import parse_reverted

    message = "2 out of 40 were reverted back to the floating-point precision:\n\t/conv/Conv\n\t/fc/Gemm"
    assert parse_reverted(["Accuracy drop: 0.1", message]) == ["/conv/Conv", "/fc/Gemm"]
    steps = [
        "Reverted 1 operations to the floating-point precision: \n\t/a/Conv",
        "Accuracy drop with the new quantization scope is 0.3 (absolute)",
        "Reverted 2 operations to the floating-point precision: \n\t/b/Add\n\t/a/Conv",
    ]
    assert parse_reverted(steps) == ["/a/Conv", "/b/Add"]  # no summary (interrupted): merged steps


def test_stdout_to_stderr_moves_prints_and_nncf_log(capsys):
    from nncf.common.logging import nncf_logger

    from edge_sealant.quantize import stdout_to_stderr

    with stdout_to_stderr():
        print("progress")
        nncf_logger.warning("nncf says")
    print("after")
    out, err = capsys.readouterr()
    assert "progress" in err and "progress" not in out and "after" in out


# ------------------------------------------------------------------------- OpenVINO INT8
def test_openvino_int8_ir_has_fake_quantize_metadata_and_small_weights(tiny, ov_result):
    import openvino as ov

    from edge_sealant.quantize import float_weighted_ops, head_op_names
    from edge_sealant.runtime.backends import open_backend
    from edge_sealant.runtime.model_file import read_card

    _, run = tiny
    xml = run / "openvino" / "int8" / "model.xml"
    model = ov.Core().read_model(str(xml))
    kinds = {op.get_type_name() for op in model.get_ops()}
    assert "FakeQuantize" in kinds
    fp32 = ov.Core().read_model(str(run / "openvino" / "fp32" / "model.xml"))
    head = head_op_names(fp32)
    assert len(head) == 1 and head[0] in float_weighted_ops(model)  # recipe: head kept in float
    assert len(float_weighted_ops(model)) < len(float_weighted_ops(fp32)) / 2
    card = read_card(xml)
    assert (card.precision, card.backend, card.model) == ("int8", "openvino", "mobilenet_v3_small")
    side = ModelCard.load(xml.parent / "run.json")
    assert side.precision == "int8" and side.metrics["quantization"]["fp32_vs_int8"]["val"]["int8"]["auroc"] is not None
    # Weights really are int8: MobileNetV3-Small's .bin shrinks to about a quarter.
    ratio = (xml.with_suffix(".bin")).stat().st_size / (run / "openvino" / "fp32" / "model.bin").stat().st_size
    assert ratio < 0.3, ratio
    assert ov_result[0]["weights"]["ratio"] == pytest.approx(ratio)
    probabilities = open_backend(xml).predict(np.zeros((2, *SIZE, 3), np.uint8))
    assert probabilities.shape == (2,) and np.all((probabilities >= 0) & (probabilities <= 1))
    assert not list(run.glob("openvino/.int8*")) and not list(run.glob("openvino/.quantize-*"))  # no staging left


def test_manifest_records_files_hashes_counts_and_settings(tiny, ov_result):
    from edge_sealant.quantize import sha1_file

    data_yaml, run = tiny
    manifest = json.loads((run / "openvino" / "int8" / "calibration.json").read_text())
    assert manifest["data"]["split"] == "train"
    assert manifest["counts"] == {"total": 30, "normal": 20, "defect": 10}  # 26:14 scaled to 30
    assert manifest["selection"]["available"] == {"normal": 26, "defect": 14}
    assert len(manifest["images"]) == 30
    first = manifest["images"][0]
    assert first["path"].startswith("images/train/")
    assert first["sha1"] == sha1_file(data_yaml.parent / first["path"])
    assert sum(image["label"] for image in manifest["images"]) == 10
    settings = manifest["settings"]
    assert settings["fast_bias_correction"] is False  # MobileNetV3 family: full bias correction
    assert settings["preset"] == "performance" and settings["subset_size"] == 30
    assert settings["family"] == "mobilenet_v3" and settings["overflow_fix"] == "enable"
    assert settings["engine"] == "nncf.quantize"
    assert {"nncf", "openvino"} <= set(manifest["versions"])
    assert manifest["created"][:2] == "20"


def test_report_compares_fp32_and_int8_on_val_and_test(tiny, ov_result):
    report, printed = ov_result
    _, run = tiny
    saved = json.loads((run / "openvino" / "int8" / "quantize_report.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(report["metrics"]))
    for split in ("val", "test"):
        row = saved["metrics"][split]
        for precision in ("fp32", "int8"):
            assert 0.0 <= row[precision]["auroc"] <= 1.0
            assert 0.0 <= row[precision]["accuracy"] <= 1.0
        assert row["auroc_drop"] == pytest.approx(row["fp32"]["auroc"] - row["int8"]["auroc"])
        lo, hi = row["auroc_drop_ci"]  # the drop's paired interval
        assert lo <= row["auroc_drop"] <= hi
    assert saved["settings"]["inference_precision_hint"] == "f32"
    assert "AUROC fp32" in printed and "test" in printed


def test_warns_when_fewer_than_300_calibration_images(ov_result):
    _, printed = ov_result
    assert "only 30 calibration images" in printed


def test_refuses_an_already_quantized_model(tiny, ov_result, tmp_path):
    from edge_sealant.quantize import quantize_run

    data_yaml, run = tiny
    copy = _copy_run(run, tmp_path / "run")
    for name in ("model.xml", "model.bin"):  # an INT8 IR where the FP32 one should be
        shutil.copy2(run / "openvino" / "int8" / name, copy / "openvino" / "fp32" / name)
    with pytest.raises(EdgeSealantError, match="already quantized"):
        quantize_run(copy, data_yaml, subset_size=10)


# ------------------------------------------------------------------------------ ONNX INT8
def test_onnx_backend_writes_qdq_model_that_onnxruntime_runs(tiny, onnx_result, tmp_path):
    import onnx

    from edge_sealant.runtime.backends import open_backend

    _, run = tiny
    path = run / "onnx" / "int8" / "model.onnx"
    proto = onnx.load(str(path))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    backend = open_backend(path)
    assert backend.card.precision == "int8" and backend.card.backend == "onnxruntime"
    assert backend.predict(np.zeros((3, *SIZE, 3), np.uint8)).shape == (3,)
    assert (run / "onnx" / "int8" / "calibration.json").is_file()
    assert onnx_result["metrics"]["test"]["int8"]["auroc"] is not None
    assert path.stat().st_size < 0.4 * (run / "onnx" / "fp32" / "model.onnx").stat().st_size
    # ONNX Runtime turns the QDQ pairs into integer kernels (the reason for quantize_static).
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    fused = {node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert "QLinearConv" in fused
    settings = json.loads((run / "onnx" / "int8" / "calibration.json").read_text())["settings"]
    assert settings["engine"] == "onnxruntime.quantization.quantize_static" and settings["activation_type"] == "uint8"


def test_max_drop_needs_the_openvino_backend(tiny):
    from edge_sealant.quantize import quantize_run

    data_yaml, run = tiny
    with pytest.raises(EdgeSealantError, match="--backend openvino only"):
        quantize_run(run, data_yaml, backend="onnx", max_drop=0.01)


def test_int8_threshold_is_rechosen_on_int8_val_scores_with_the_runs_policy(tiny, tmp_path, monkeypatch):
    from edge_sealant import quantize
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import score
    from edge_sealant.metrics import threshold_choice
    from edge_sealant.runtime.backends import open_backend

    data_yaml, run = tiny
    monkeypatch.setitem(quantize.RECIPES, "mobilenet_v3", {"fast_bias_correction": True})  # speed; not what is tested
    copy = _copy_run(run, tmp_path / "run")
    card = ModelCard.load(copy)
    card.threshold_policy = "recall@0.9"  # as training leaves it: a policy applied on val
    card.save(copy)
    report = quantize.quantize_run(copy, data_yaml, subset_size=12)
    int8 = open_backend(copy / "openvino" / "int8" / "model.xml")
    loaded, scores = score(int8, load_dataset_like(data_yaml, card.data_summary).split("val"))
    expected = threshold_choice(loaded.labels, scores, "recall@0.9")
    assert int8.card.threshold == pytest.approx(expected.threshold)  # embedded in the INT8 model
    assert report["int8_threshold"]["value"] == pytest.approx(expected.threshold)
    assert report["int8_threshold"]["operating_point"]["chosen_on"] == "val (INT8 scores)"
    assert report["threshold"] == card.threshold  # FP32's is untouched
    assert report["metrics"]["val"]["int8"]["recall"] >= 0.9  # INT8 measured at its own threshold
    kept = quantize.quantize_run(copy, data_yaml, subset_size=12, keep_threshold=True, force=True)
    assert kept["int8_threshold"]["value"] == card.threshold and kept["int8_threshold"]["operating_point"] is None
    assert open_backend(copy / "openvino" / "int8" / "model.xml").card.threshold == card.threshold


def test_a_hand_set_threshold_is_kept_for_int8(ov_result):
    report, printed = ov_result  # the fixture's card has no policy: its 0.5 was set by hand
    assert report["int8_threshold"]["value"] == report["threshold"] == 0.5
    assert "INT8 threshold: 0.5, FP32's" in printed


# ----------------------------------------------------------------------- accuracy control
def test_max_drop_runs_accuracy_control_and_records_float_layers(tiny, tmp_path, monkeypatch):
    from edge_sealant import quantize

    data_yaml, run = tiny
    copy = _copy_run(run, tmp_path / "run")
    # Fast bias correction here: this test is about the accuracy-control path, not BC.
    monkeypatch.setitem(quantize.RECIPES, "mobilenet_v3", {"fast_bias_correction": True})
    report = quantize.quantize_run(copy, data_yaml, subset_size=12, max_drop=0.5)
    control = report["accuracy_control"]
    assert control["metric"] == "val AUROC" and control["drop_type"] == "absolute"
    assert isinstance(control["kept_in_float"], list)
    manifest = json.loads((copy / "openvino" / "int8" / "calibration.json").read_text())
    assert manifest["accuracy_control"]["kept_in_float"] == control["kept_in_float"]
    assert manifest["settings"]["max_drop"] == 0.5


# ------------------------------------------------------------------------------------ CLI
def test_cli_quantize(tiny, tmp_path):
    from typer.testing import CliRunner

    from edge_sealant.cli import app

    data_yaml, run = tiny
    copy = _copy_run(run, tmp_path / "run")
    shutil.rmtree(copy / "onnx")  # quantize exports the FP32 model itself when it is missing
    result = CliRunner().invoke(
        app, ["quantize", str(copy), str(data_yaml), "--backend", "onnx", "--subset-size", "12", "--split", "val", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert (copy / "onnx" / "fp32" / "model.onnx").is_file()
    assert (copy / "onnx" / "int8" / "model.onnx").is_file()
    manifest = json.loads((copy / "onnx" / "int8" / "calibration.json").read_text())
    assert manifest["counts"] == {"total": 12, "normal": 6, "defect": 6}
    report = json.loads(result.stdout)  # --json: stdout holds the JSON alone
    assert report["backend"] == "onnxruntime" and set(report["metrics"]) == {"val", "test"}
    bad = CliRunner().invoke(app, ["quantize", str(copy), str(data_yaml), "--backend", "tflite"])
    assert bad.exit_code == 1 and "unknown backend" in bad.output


def test_requantizing_needs_force(tiny, ov_result):
    from typer.testing import CliRunner

    from edge_sealant.cli import app

    data_yaml, run = tiny
    before = (run / "openvino" / "int8" / "model.xml").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["quantize", str(run), str(data_yaml), "--subset-size", "10"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "pass --force to replace it" in " ".join(result.output.split())
    assert (run / "openvino" / "int8" / "model.xml").stat().st_mtime_ns == before  # untouched


def test_overflow_fix_disable_is_recorded_and_warned_on_a_cpu_without_vnni(tiny, ov_result, tmp_path, monkeypatch):
    from edge_sealant.quantize import quantize_run
    from edge_sealant.runtime import backends

    data_yaml, run = tiny
    copy = _copy_run(run, tmp_path / "run")
    warnings_seen: list[str] = []
    quantize_run(copy, data_yaml, subset_size=10, overflow_fix="disable", warn=warnings_seen.append)
    assert any("overflow fix disable" in line and "VNNI" in line for line in warnings_seen)
    xml = copy / "openvino" / "int8" / "model.xml"
    manifest = json.loads((xml.parent / "calibration.json").read_text())
    assert manifest["settings"]["overflow_fix"] == "disable"
    assert backends.open_backend(xml).card.metrics["quantization"]["overflow_fix"] == "disable"
    monkeypatch.setattr(backends, "read_cpuinfo", lambda: ("an AVX2 PC", {"sse4_2", "avx2"}))
    with pytest.warns(RuntimeWarning, match="no VNNI/AMX-INT8"):
        backends.open_backend(xml)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recipe's model (fix enabled) runs anywhere without a word
        assert backends.open_backend(run / "openvino" / "int8" / "model.xml").card.metrics["quantization"]["overflow_fix"] == "enable"


def test_overflow_fix_is_checked_before_any_work(tiny):
    from edge_sealant.quantize import quantize_run

    data_yaml, run = tiny
    with pytest.raises(EdgeSealantError, match="--overflow-fix 'off' is not one of enable, first_layer_only, disable"):
        quantize_run(run, data_yaml, overflow_fix="off", force=True)
    with pytest.raises(EdgeSealantError, match="applies to NNCF quantization"):
        quantize_run(run, data_yaml, backend="onnx", overflow_fix="disable", force=True)


# ------------------------------------------------------------------ quantization-aware fine-tune
def test_fake_quantizers_see_every_entry_point_of_the_net(tiny):
    """The fine-tune trains through ``forward_parts``: NNCF's hooks wrap ``forward`` only, so a
    method that bypassed it would train (and export) the float net without quantization noise."""
    import torch

    from edge_sealant.checkpoint import load_trained
    from edge_sealant.quantize.qat import ignored_scope, quantize_torch
    from edge_sealant.quantize.recipes import recipe_for
    from edge_sealant.train.parts import training_input

    _, run = tiny
    net, card = load_trained(run)
    images = np.random.default_rng(0).integers(0, 255, (8, *SIZE, 3), dtype=np.uint8)
    pixels = training_input(torch.from_numpy(images))
    with torch.no_grad():
        float_logits = net(pixels).clone()
    scope, _ = ignored_scope(net, pixels[:1], recipe_for(card.model), card.has_heatmap)
    qnet = quantize_torch(net, images, recipe_for(card.model), scope)
    with torch.no_grad():
        logits = qnet(pixels)
        fused, _, classifier = qnet.forward_parts(pixels)
        with_heatmap, _ = qnet.forward_with_heatmap(pixels)
    assert not torch.allclose(logits, float_logits, atol=1e-4)  # quantization noise is there
    assert torch.allclose(fused, logits) and torch.allclose(with_heatmap, logits) and torch.allclose(classifier, logits)


def test_quantization_aware_fine_tune_of_an_image_only_run(tiny, tmp_path):
    import openvino as ov

    from edge_sealant.quantize import quantize_run

    data_yaml, run = tiny
    copy = _copy_run(run, tmp_path / "run")
    lines: list[str] = []
    report = quantize_run(copy, data_yaml, subset_size=16, qat_epochs=0.5, log=lines.append)
    qat = report["settings"]["qat"]
    assert qat["steps"] == round(0.5 * 40 / 32) and qat["train_images"] == 40 and qat["loss_first"] > 0
    assert qat["ignored"] and all("heatmap" not in name for name in qat["ignored"])  # the classifier only
    model = ov.Core().read_model(copy / "openvino" / "int8" / "model.xml")
    assert len(model.outputs) == 1 and any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    assert model.inputs[0].get_any_name() == "images" and model.outputs[0].get_any_name() == "defect_probability"
    assert any("quantization-aware fine-tune of" in line for line in lines)
    manifest = json.loads((copy / "openvino" / "int8" / "calibration.json").read_text())
    assert manifest["settings"]["qat"]["steps"] == qat["steps"]
    # NNCF applies the overflow fix on the torch route too: the card says so for the runtime
    assert ModelCard.load(copy / "openvino" / "int8" / "run.json").metrics["quantization"]["overflow_fix"] == "enable"
    with pytest.raises(EdgeSealantError, match="--qat-epochs .* must be in"):
        quantize_run(copy, data_yaml, qat_epochs=-1, force=True)
    control = quantize_run(copy, data_yaml, subset_size=16, qat_epochs=0, force=True)  # the torch route, no fine-tune
    assert control["settings"]["qat"]["steps"] == 0 and control["settings"]["engine"].startswith("nncf.quantize (torch)")
    model = ov.Core().read_model(copy / "openvino" / "int8" / "model.xml")
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def test_lite0_with_heatmap_converts_to_openvino_with_its_fake_quantizers():
    """Lite0's "SAME" padding must not add traced shape arithmetic: under NNCF's hooks it shifted
    the op counters that place the quantizers, and conversion failed (a quantizer on a Long).
    Also: every entry point of the net sees the quantizers, and the IR keeps both outputs."""
    import openvino as ov
    import torch

    from edge_sealant.models.net import DeployNet
    from edge_sealant.models.registry import build_inspection_net, get_spec
    from edge_sealant.quantize.qat import ignored_scope, quantize_torch, to_openvino
    from edge_sealant.quantize.recipes import recipe_for
    from edge_sealant.train.parts import training_input

    torch.manual_seed(0)
    spec = get_spec("efficientnet_lite0")
    net = build_inspection_net("efficientnet_lite0", pretrained="none", heatmap=16).eval()
    images = np.random.default_rng(1).integers(0, 255, (6, *SIZE, 3), dtype=np.uint8)
    pixels = training_input(torch.from_numpy(images))
    with torch.no_grad():  # an untrained net answers constants: heads that read the features, BN statistics of inputs
        net.heatmap_head.out.weight.normal_(0.0, 1.0)
        net.backbone.classifier.weight.normal_(0.0, 0.1)
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None
        net.train()
        net(pixels)
        net.eval()
    card = ModelCard(model="efficientnet_lite0", input_size=SIZE, mean=spec.mean, std=spec.std, threshold=0.5,
                     supervision="boxes", heatmap_stride=16)
    with torch.no_grad():
        _, float_heatmap, float_classifier = (part.clone() for part in net.forward_parts(pixels))
    scope, _ = ignored_scope(net, pixels[:1], recipe_for(card.model), card.has_heatmap)
    qnet = quantize_torch(net, images, recipe_for(card.model), scope)
    with torch.no_grad():  # the fine-tune's entry point sees the quantizers on the heatmap path too
        fused, heatmap_logits, classifier = qnet.forward_parts(pixels)
        assert torch.allclose(fused, qnet(pixels))
    assert not torch.allclose(classifier, float_classifier, atol=1e-4)  # kept in float, fed quantized features
    assert not torch.allclose(heatmap_logits, float_heatmap, atol=1e-4)
    model = to_openvino(qnet, card)
    assert sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops()) > 40
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    outputs = compiled(images)
    with torch.no_grad():
        probability, heatmap = DeployNet(qnet).eval()(torch.from_numpy(images))
    # No parity check here: OpenVINO's integer kernels and NNCF's float simulation differ by
    # rounding, which a random deep net amplifies (calibration/qat_parity.py measures a trained one).
    assert outputs[0].shape == tuple(probability.shape) == (6, 1) and ((outputs[0] >= 0) & (outputs[0] <= 1)).all()
    assert outputs[1].shape == tuple(heatmap.shape) == (6, 1, 4, 2)
    assert compiled(images[:2])[0].shape == (2, 1)  # dynamic batch, as the exported FP32 IR
