"""Export to ONNX / OpenVINO: validity, embedded card, parity, thresholds, bundle, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.register_assert_rewrite("deploy_fixtures")  # before the import below
from deploy_fixtures import SIZE, copy_artifact, make_run, no_torch_env, write_jpeg
from edge_sealant.artifacts import artifact_path
from edge_sealant.card import ModelCard
from edge_sealant.errors import EdgeSealantError
from edge_sealant.export import TOLERANCE

pytest_plugins = ["deploy_fixtures"]  # session fixtures: exported_run, images_dir, dataset_root

VOLATILE = {"backend", "precision", "library_versions", "edge_sealant_version"}


def _card_fields(card: ModelCard) -> dict:
    return {k: v for k, v in card.to_dict().items() if k not in VOLATILE}


def test_onnx_is_valid_with_dynamic_batch_and_metadata(exported_run):
    import onnx

    path = artifact_path(exported_run, "onnxruntime", "fp32")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    (inp,) = proto.graph.input
    assert inp.name == "images"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [SIZE[0], SIZE[1], 3]
    assert [o.name for o in proto.graph.output] == ["defect_probability"]
    meta = {p.key: p.value for p in proto.metadata_props}
    for key in ("edge_sealant.card", "edge_sealant.threshold", "edge_sealant.labels", "edge_sealant.input_size",
                "edge_sealant.resize_mode", "edge_sealant.mean", "edge_sealant.std", "edge_sealant.channel_order",
                "edge_sealant.model", "edge_sealant.precision", "edge_sealant.version"):
        assert key in meta
    assert json.loads(meta["edge_sealant.card"])["data_summary"]["root"]


def test_metadata_round_trip_through_inspector(exported_run):
    from edge_sealant.runtime import Inspector

    run_card = ModelCard.load(exported_run)
    for backend, precision in (("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "fp16")):
        path = artifact_path(exported_run, backend, precision)
        inspector = Inspector.load(path)
        assert _card_fields(inspector.card) == _card_fields(run_card)
        assert inspector.card.backend == backend and inspector.card.precision == precision
        side = ModelCard.load(path.parent)  # run.json next to the artifact
        assert side.backend == backend and side.precision == precision
        assert inspector.threshold_source == "embedded"


def test_ir_input_layout_and_names(exported_run):
    import openvino as ov

    model = ov.Core().read_model(str(artifact_path(exported_run, "openvino", "fp32")))
    assert model.inputs[0].get_any_name() == "images"
    assert model.inputs[0].get_element_type() == ov.Type.u8
    assert str(model.inputs[0].get_node().get_layout()) == "[N,H,W,C]"
    assert model.inputs[0].get_partial_shape()[0].is_dynamic
    assert model.outputs[0].get_any_name() == "defect_probability"


def test_fp32_parity_on_val_images(exported_run, dataset_root):
    """Same uint8 input to torch, ONNX Runtime and OpenVINO f32: within 1e-4."""
    from edge_sealant.checkpoint import load_trained
    from edge_sealant.data.loading import load_dataset
    from edge_sealant.export import torch_reference
    from edge_sealant.imageset import load_images
    from edge_sealant.runtime import open_backend

    report = json.loads((exported_run / "export_report.json").read_text())
    assert "val images of" in report["parity_source"]
    for artifact in report["artifacts"]:
        assert artifact["max_abs_diff"] <= artifact["tolerance"]
    net, card = load_trained(exported_run)
    images = load_images(load_dataset(dataset_root).split("val"), card).images
    reference = torch_reference(net, images)
    assert reference.std() > 1e-3  # the check must not be trivially exact
    for backend_name in ("onnxruntime", "openvino"):
        backend = open_backend(artifact_path(exported_run, backend_name, "fp32"))
        assert np.abs(backend.predict(images) - reference).max() <= 1e-4
    fp16 = open_backend(artifact_path(exported_run, "openvino", "fp16"))
    fp16_diff = np.abs(fp16.predict(images) - reference).max()
    assert 0 < fp16_diff <= TOLERANCE["fp16"]  # really rounded weights, yet within the export gate


def test_fp32_ir_weights_are_really_fp32(exported_run):
    import openvino as ov
    import torch

    from edge_sealant.checkpoint import load_trained

    core = ov.Core()
    types32 = {op.get_element_type().get_type_name() for op in core.read_model(str(artifact_path(exported_run, "openvino", "fp32"))).get_ops() if op.get_type_name() == "Constant"}
    types16 = {op.get_element_type().get_type_name() for op in core.read_model(str(artifact_path(exported_run, "openvino", "fp16"))).get_ops() if op.get_type_name() == "Constant"}
    assert "f16" not in types32 and "f32" in types32
    assert "f16" in types16
    net, _ = load_trained(exported_run)
    params = sum(p.numel() for p in net.parameters()) + sum(b.numel() for b in net.buffers() if b.dtype == torch.float32)
    bin32 = artifact_path(exported_run, "openvino", "fp32").with_suffix(".bin").stat().st_size
    bin16 = artifact_path(exported_run, "openvino", "fp16").with_suffix(".bin").stat().st_size
    assert 0.9 * 4 * params <= bin32 <= 1.1 * 4 * params
    assert bin16 < 0.6 * bin32


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_set_threshold_embedded_then_sidecar(exported_run, tmp_path, backend):
    from edge_sealant.runtime.model_file import set_threshold
    from edge_sealant.runtime import Inspector, sidecar_path

    model = copy_artifact(artifact_path(exported_run, backend, "fp32"), tmp_path / "m")
    bin_before = model.with_suffix(".bin").read_bytes() if backend == "openvino" else None
    change = set_threshold(model, 0.3)
    assert change["previous"] == 0.5 and change["effective_source"] == "embedded"
    inspector = Inspector.load(model)
    assert (inspector.threshold, inspector.threshold_source) == (0.3, "embedded")
    assert inspector.card.threshold == 0.3
    assert ModelCard.load(model.parent).threshold == 0.3
    if bin_before is not None:
        assert model.with_suffix(".bin").read_bytes() == bin_before

    set_threshold(model, 0.8, mode="sidecar")
    assert json.loads(sidecar_path(model).read_text())["threshold"] == 0.8
    inspector = Inspector.load(model)
    assert (inspector.threshold, inspector.threshold_source) == (0.8, "sidecar")
    assert inspector.card.threshold == 0.3  # the embedded value is untouched
    inspector = Inspector.load(model, threshold=0.1)
    assert (inspector.threshold, inspector.threshold_source) == (0.1, "override")
    # Embedded change while a sidecar exists: the sidecar follows so the new value is in force.
    set_threshold(model, 0.6)
    assert Inspector.load(model).threshold == 0.6

    with pytest.raises(EdgeSealantError, match="outside"):
        set_threshold(model, 1.5)
    assert Inspector.load(model).threshold == 0.6


def test_threshold_sidecar_out_of_range_is_an_error(exported_run, tmp_path):
    from edge_sealant.runtime import Inspector, sidecar_path

    model = copy_artifact(artifact_path(exported_run, "onnxruntime", "fp32"), tmp_path / "m")
    sidecar_path(model).write_text('{"threshold": 1.7}')
    with pytest.raises(EdgeSealantError) as info:
        Inspector.load(model)
    assert "model.threshold.json" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EdgeSealantError, match="outside"):
        Inspector.load(model, threshold=-0.1)


def test_failed_parity_is_loud_and_leaves_previous_artifact(tmp_path, monkeypatch):
    """Dataset gone -> random images (reported); a parity failure writes nothing."""
    from edge_sealant import export

    run = make_run(tmp_path / "run")  # its dataset path does not exist
    report = export.export_run(run, formats=["onnx"])
    assert any("random images" in note for note in report.notes)
    target = artifact_path(run, "onnxruntime", "fp32")
    before = target.read_bytes()

    monkeypatch.setitem(export.TOLERANCE, "fp32", -1.0)
    with pytest.raises(EdgeSealantError, match="differ from torch"):
        export.export_run(run, formats=["onnx"])
    assert target.read_bytes() == before  # the old artifact survives intact
    leftovers = [p.name for p in (run / "onnx").iterdir() if p.name != "fp32"] + [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_artifact_folder_swap_keeps_sidecar_and_cleans_up(tmp_path):
    from edge_sealant.export import _publish_dir, _staging_dir

    dest = tmp_path / "onnx" / "fp32"
    dest.mkdir(parents=True)
    (dest / "model.onnx").write_text("old")
    (dest / "model.threshold.json").write_text('{"threshold": 0.2}')
    staging = _staging_dir(dest)
    (staging / "model.onnx").write_text("new")
    _publish_dir(staging, dest)
    assert (dest / "model.onnx").read_text() == "new"
    assert (dest / "model.threshold.json").read_text() == '{"threshold": 0.2}'
    assert sorted(p.name for p in dest.parent.iterdir()) == ["fp32"]


def test_bad_export_requests(tmp_path, exported_run):
    from edge_sealant.export import export_run

    with pytest.raises(EdgeSealantError, match="not found"):
        export_run(tmp_path / "missing")
    with pytest.raises(EdgeSealantError, match="unknown format"):
        export_run(exported_run, formats=["tflite"])
    with pytest.raises(EdgeSealantError, match="fp32 only"):
        export_run(exported_run, formats=["onnx"], precisions=["fp16"])
    existing = tmp_path / "b.zip"
    existing.write_bytes(b"x")
    with pytest.raises(EdgeSealantError, match="already exists"):
        export_run(exported_run, bundle=existing)
    assert existing.read_bytes() == b"x"


def test_bundle_contents_and_example_runs_without_torch(exported_run, tmp_path):
    from edge_sealant.bundle import build_bundle

    out = build_bundle(exported_run, tmp_path / "deploy.zip")
    with pytest.raises(EdgeSealantError, match="already exists"):
        build_bundle(exported_run, out)
    names = set(zipfile.ZipFile(out).namelist())
    for name in ("requirements.txt", "inspect_folder.py", "README.txt", "edge_sealant/runtime/inspector.py",
                 "edge_sealant/card.py", "edge_sealant/preprocess.py", "edge_sealant/errors.py", "edge_sealant/__init__.py",
                 "models/openvino-fp32/model.xml", "models/openvino-fp32/model.bin", "models/openvino-fp32/run.json",
                 "models/onnx-fp32/model.onnx", "ovms/config.json", "ovms/edge_sealant_fp32/1/model.xml",
                 "ovms/edge_sealant_fp32/1/model.bin"):
        assert name in names, name
    assert not [n for n in names if n.endswith((".pt", ".pyc"))]
    requirements = [line.split(">")[0] for line in zipfile.ZipFile(out).read("requirements.txt").decode().splitlines()
                    if line and not line.startswith("#")]
    assert requirements == ["numpy", "opencv-python-headless", "openvino", "onnxruntime"]
    config = json.loads(zipfile.ZipFile(out).read("ovms/config.json"))
    assert {c["config"]["name"] for c in config["model_config_list"]} == {"edge_sealant_fp32", "edge_sealant_fp16"}

    target = tmp_path / "unzipped"
    zipfile.ZipFile(out).extractall(target)
    images = tmp_path / "imgs"
    for i in range(3):
        write_jpeg(images / f"{i}.jpg", 300 + i, (100, 50))
    env = no_torch_env(tmp_path)
    proc = subprocess.run(
        [sys.executable, "inspect_folder.py", str(images), "--csv", str(tmp_path / "rows.csv")],
        cwd=target, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len([line for line in proc.stdout.splitlines() if "\t" in line]) == 3
    assert len((tmp_path / "rows.csv").read_text().splitlines()) == 4
    check = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, '.'); import edge_sealant.runtime as r; print(r.__file__)"],
        cwd=target, env=env, capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0 and Path(check.stdout.strip()).resolve().is_relative_to(target.resolve())


def test_bundle_runtime_files_are_the_runtime_import_closure():
    """What the zip vendors is exactly what ``import edge_sealant.runtime`` loads."""
    from edge_sealant.bundle import PACKAGE_DIR, RUNTIME_FILES

    code = "import edge_sealant.runtime, sys; print('\\n'.join(m.__file__ for n, m in list(sys.modules.items()) if n.split('.')[0] == 'edge_sealant'))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE_DIR.parent, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = {Path(f).resolve().relative_to(PACKAGE_DIR).as_posix() for f in proc.stdout.splitlines() if f}
    assert loaded == set(RUNTIME_FILES)


def test_torch_backend_implements_the_protocol(exported_run):
    from edge_sealant.runtime import Backend
    from edge_sealant.torch_backend import TorchBackend

    backend = TorchBackend.from_run(exported_run)
    assert isinstance(backend, Backend)
    assert backend.path == exported_run / "best.pt" and backend.size_mb > 0
    assert (backend.inference_precision, backend.optimal_requests) == ("f32", 1)
    images = np.random.default_rng(0).integers(0, 256, size=(5, SIZE[0], SIZE[1], 3), dtype=np.uint8)
    np.testing.assert_array_equal(backend.submit(images).result().probability, backend.predict(images))
    backend.wait_all()


# ----------------------------------------------------------------------------------- CLI
def test_cli_export_and_set_threshold(tmp_path, exported_run):
    from edge_sealant.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best.pt", "run.json"):
        (run / name).write_bytes((exported_run / name).read_bytes())
    result = runner.invoke(app, ["export", str(run), "--format", "onnx", "--parity-images", "4", "--bundle", str(tmp_path / "b.zip")])
    assert result.exit_code == 0, result.output
    model = artifact_path(run, "onnxruntime", "fp32")
    assert model.is_file() and (tmp_path / "b.zip").is_file()
    assert "max |p - p_torch|" in result.output

    again = runner.invoke(app, ["export", str(run), "--format", "onnx", "--bundle", str(tmp_path / "b.zip")])
    assert again.exit_code == 1 and "already exists" in again.output

    result = runner.invoke(app, ["set-threshold", str(model), "0.25"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["set-threshold", str(model), "0.75", "--sidecar"])
    assert result.exit_code == 0 and "sidecar" in result.output
    from edge_sealant.runtime import Inspector

    inspector = Inspector.load(model)
    assert (inspector.threshold, inspector.threshold_source, inspector.card.threshold) == (0.75, "sidecar", 0.25)

    bad = runner.invoke(app, ["set-threshold", str(model), "2"])
    assert bad.exit_code == 1 and "outside [0, 1]" in bad.output
    bad = runner.invoke(app, ["set-threshold", str(run / "best.pt"), "0.5"])
    assert bad.exit_code == 1 and "unknown model file type" in bad.output
