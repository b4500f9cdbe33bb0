"""edge_sealant.runtime: torch-free import, input kinds, EXIF, stream, backends, bad models."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.register_assert_rewrite("deploy_fixtures")  # before the import below
from deploy_fixtures import SIZE, copy_artifact
from edge_sealant.artifacts import artifact_path
from edge_sealant.errors import EdgeSealantError

pytest_plugins = ["deploy_fixtures"]  # session fixtures: exported_run, images_dir, dataset_root


def _models(run: Path) -> list[Path]:
    return [artifact_path(run, "openvino", "fp32"), artifact_path(run, "onnxruntime", "fp32")]


def test_runtime_never_imports_torch(exported_run, images_dir):
    code = (
        "import edge_sealant.runtime, sys; assert 'torch' not in sys.modules\n"
        "from edge_sealant.runtime import Inspector\n"
        "for model in sys.argv[1:3]:\n"
        "    inspector = Inspector.load(model)\n"
        "    r = inspector.inspect(sys.argv[3])\n"
        "    assert r.ok, r\n"
        "    list(inspector.stream([sys.argv[3]] * 3))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    ov, onnx_model = _models(exported_run)
    proc = subprocess.run([sys.executable, "-c", code, str(ov), str(onnx_model), str(images_dir / "a.jpg")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("which", [0, 1], ids=["openvino", "onnxruntime"])
def test_same_probability_for_path_bytes_array_and_batch(exported_run, images_dir, which):
    from edge_sealant.runtime import Inspector, InspectionResult

    inspector = Inspector.load(_models(exported_run)[which])
    for name in ("a.jpg", "sub/d_gray.jpg"):
        path = images_dir / name
        data = path.read_bytes()
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        single = inspector.inspect(path)
        assert isinstance(single, InspectionResult) and single.ok
        assert single.name == str(path) and 0.0 <= single.probability <= 1.0
        assert single.latency_ms >= single.infer_ms >= 0 and single.preprocess_ms >= 0
        probabilities = [inspector.inspect(src).probability for src in (str(path), data, bgr)]
        if name.endswith("gray.jpg"):
            probabilities.append(inspector.inspect(gray).probability)
            probabilities.append(inspector.inspect(gray[:, :, None]).probability)
        batch = inspector.inspect([path, data, bgr])
        assert isinstance(batch, list) and [r.name for r in batch] == [str(path), "<bytes #1>", "<array #2>"]
        probabilities += [r.probability for r in batch]
        stacked = inspector.inspect(np.stack([bgr, bgr]))
        probabilities += [r.probability for r in stacked]
        np.testing.assert_allclose(probabilities, single.probability, atol=1e-6)
    assert inspector.inspect([]) == []


def test_exif_orientation_is_applied(exported_run, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from edge_sealant.runtime import Inspector

    # Left third white, rest black, stored 48 high x 96 wide; EXIF 6 = rotate 90 CW to display.
    stored = np.zeros((48, 96, 3), dtype=np.uint8)
    stored[:, :32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())

    inspector = Inspector.load(_models(exported_run)[1])
    upright = cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE)  # 96 high x 48 wide, white on top
    expected = inspector.preprocess(upright)
    got = inspector.preprocess(path)
    assert got.shape == (SIZE[0], SIZE[1], 3)
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 8
    ignored = inspector.preprocess(stored)  # what a decoder ignoring EXIF would feed
    assert np.abs(got.astype(int) - ignored.astype(int)).mean() > 60
    assert got[: SIZE[0] // 4].mean() > 200 and got[-SIZE[0] // 4 :].mean() < 50


@pytest.mark.parametrize("which,hint", [(0, "THROUGHPUT"), (0, "LATENCY"), (1, "LATENCY")], ids=["ov-tput", "ov-lat", "ort"])
def test_stream_keeps_order_and_reports_errors(exported_run, images_dir, which, hint):
    from edge_sealant.runtime import Inspector

    inspector = Inspector.load(_models(exported_run)[which], hint=hint)
    good = [images_dir / "a.jpg", images_dir / "b.jpg", images_dir / "sub" / "c.jpeg"]
    frame = cv2.imread(str(good[0]))
    sources = [good[0], images_dir / "corrupt.jpg", good[1], images_dir / "missing.jpg", ("frame#7", frame), good[2]] * 3
    with inspector:
        results = list(inspector.stream(iter(sources), queue_size=3))
    names = [s[0] if isinstance(s, tuple) else str(s) for s in sources]
    assert [r.name for r in results] == names
    errors = [r for r in results if not r.ok]
    assert len(errors) == 6 and all(r.decision == "error" and r.probability is None for r in errors)
    assert all("corrupt.jpg" in r.error or "missing.jpg" in r.error for r in errors)
    direct = {r.name: r.probability for r in inspector.inspect(good)}
    for r in results:
        if r.ok and r.name in direct:
            assert abs(r.probability - direct[r.name]) < 1e-6
    assert results[4].probability == pytest.approx(direct[str(good[0])], abs=1e-6)
    single = inspector.inspect(images_dir / "corrupt.jpg")  # a single bad image: a result, not a raise
    assert not single.ok and single.is_defect is None and "corrupt.jpg" in single.error


def test_openvino_backend_properties(exported_run, tmp_path):
    from edge_sealant.runtime import Backend, OnnxRuntimeBackend, OpenVINOBackend, open_backend

    ov_model, onnx_model = _models(exported_run)
    cache = tmp_path / "cache"
    backend = OpenVINOBackend(ov_model, device="CPU", hint="LATENCY", precision=None, cache_dir=cache, threads=1)
    assert isinstance(backend, Backend)
    assert (backend.name, backend.precision, backend.inference_precision) == ("openvino", "fp32", "f32")
    assert backend.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert 4 < backend.size_mb < 10
    assert any(cache.iterdir())  # compiled blob cached
    images = np.zeros((3, SIZE[0], SIZE[1], 3), dtype=np.uint8)
    out = backend.predict(images)
    assert out.dtype == np.float32 and out.shape == (3,)
    with pytest.raises(EdgeSealantError, match="uint8"):
        backend.predict(np.zeros((1, 10, 10, 3), dtype=np.uint8))
    bf16 = OpenVINOBackend(ov_model, precision="bf16")
    assert bf16.inference_precision in ("bf16", "f32")  # f32 where the CPU lacks bf16
    with pytest.raises(EdgeSealantError, match="precision"):
        OpenVINOBackend(ov_model, precision="int4")
    ort = open_backend(onnx_model, threads=1)
    assert isinstance(ort, OnnxRuntimeBackend) and isinstance(ort, Backend)
    assert (ort.name, ort.precision) == ("onnxruntime", "fp32")
    np.testing.assert_allclose(ort.predict(images), out, atol=1e-5)
    assert isinstance(open_backend(ov_model), OpenVINOBackend)


# ------------------------------------------------------------------------ bad model files
def _one_line(exc: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message


def test_unknown_model_file_type(tmp_path):
    from edge_sealant.runtime import Inspector

    for name in ("model.pt", "model.tflite", "model"):
        path = tmp_path / name
        path.write_bytes(b"\0" * 16)
        with pytest.raises(EdgeSealantError) as info:
            Inspector.load(path)
        _one_line(info, "unknown model file type", name)
    with pytest.raises(EdgeSealantError) as info:
        Inspector.load(tmp_path / "nope.onnx")
    _one_line(info, "not found", "nope.onnx")


def test_model_without_our_metadata(exported_run, tmp_path):
    import onnx

    from edge_sealant.runtime import Inspector

    proto = onnx.load(str(artifact_path(exported_run, "onnxruntime", "fp32")))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(EdgeSealantError) as info:
        Inspector.load(plain)
    _one_line(info, "plain.onnx", "no edge-sealant metadata")
    ir = artifact_path(exported_run, "openvino", "fp32")
    text = ir.read_text()
    start, end = text.index("<edge_sealant>"), text.index("</edge_sealant>") + len("</edge_sealant>")
    (tmp_path / "plain.xml").write_text(text[:start] + text[end:])
    shutil.copy(ir.with_suffix(".bin"), tmp_path / "plain.bin")
    with pytest.raises(EdgeSealantError) as info:
        Inspector.load(tmp_path / "plain.xml")
    _one_line(info, "plain.xml", "no edge-sealant metadata")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(EdgeSealantError) as info:
        Inspector.load(garbage)
    _one_line(info, "garbage.onnx")


def test_truncated_and_missing_bin(exported_run, tmp_path):
    from edge_sealant.runtime import Inspector

    model = copy_artifact(artifact_path(exported_run, "openvino", "fp32"), tmp_path / "ir")
    weights = model.with_suffix(".bin")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeSealantError) as info:
        Inspector.load(model)
    _one_line(info, "model.bin", "truncated")
    weights.unlink()
    with pytest.raises(EdgeSealantError) as info:
        Inspector.load(model)
    _one_line(info, "model.xml", "model.bin is missing")
    shutil.rmtree(tmp_path / "ir")


def test_cpu_flags_decide_whether_full_range_int8_weights_may_saturate(tmp_path):
    from edge_sealant.runtime.cpu import has_vnni, read_cpuinfo, saturation_warning

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx2 fma\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n")
    model, flags = read_cpuinfo(cpuinfo)
    assert model == "AMD EPYC 7B13" and flags == {"fpu", "sse4_2", "avx2", "fma"}  # the first CPU's
    assert has_vnni(flags) is False and has_vnni(flags | {"avx_vnni"}) is True and has_vnni(None) is None
    assert read_cpuinfo(tmp_path / "absent")[1] is None  # Windows, macOS: unknown
    assert "no VNNI/AMX-INT8" in saturation_warning("disable", flags)
    assert "first_layer_only" in saturation_warning("first_layer_only", flags)
    assert saturation_warning("enable", flags) is None  # 7-bit weights cannot saturate
    assert saturation_warning(None, flags) is None  # FP32 models, QAT models, older INT8 models
    assert saturation_warning("disable", flags | {"amx_int8"}) is None
    assert saturation_warning("disable", None) is None  # cannot tell: no warning rather than a wrong one
