"""edge-sealant predict: folders, globs, videos, CSV/JSON output, error rows, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sealant.artifacts import artifact_path
from edge_sealant.errors import EdgeSealantError
from edge_sealant.predict import expand_source, predict, resolve_model

pytest_plugins = ["deploy_fixtures"]  # session fixtures: exported_run, images_dir, dataset_root


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_folder_to_csv_with_error_row(exported_run, images_dir, tmp_path):
    out = tmp_path / "preds.csv"
    report = predict(exported_run, images_dir, out=out)
    assert report.model == artifact_path(exported_run, "openvino", "fp32")  # best available
    rows = _read_csv(out)
    names = [Path(r["path"]).relative_to(images_dir).as_posix() for r in rows]
    assert names == ["a.jpg", "b.jpg", "corrupt.jpg", "sub/c.jpeg", "sub/d_gray.jpg"]
    assert list(rows[0]) == ["path", "probability", "decision", "latency_ms", "error"]
    bad = rows[2]
    assert bad["decision"] == "error" and bad["probability"] == "" and "corrupt.jpg" in bad["error"]
    good = [r for r in rows if r["decision"] != "error"]
    assert all(0.0 <= float(r["probability"]) <= 1.0 and r["decision"] in ("normal", "defect") for r in good)
    summary = report.summary
    assert summary["images"] == 5 and summary["errors"] == 1 and summary["p50_latency_ms"] > 0
    assert summary["images_per_s"] > 0
    with pytest.raises(EdgeSealantError, match="already exists"):
        predict(exported_run, images_dir, out=out)


def test_predict_glob_to_json_with_threshold(exported_run, images_dir, tmp_path):
    out = tmp_path / "preds.json"
    model = artifact_path(exported_run, "onnxruntime", "fp32")
    report = predict(model, str(images_dir / "*.jpg"), out=out, threshold=0.0)
    payload = json.loads(out.read_text())
    assert [Path(r["path"]).name for r in payload["rows"]] == ["a.jpg", "b.jpg", "corrupt.jpg"]
    assert payload["threshold"] == 0.0 and payload["threshold_source"] == "override"
    assert payload["backend"] == "onnxruntime" and payload["summary"]["errors"] == 1
    assert payload["summary"]["defects"] == 2  # threshold 0: every readable image is a defect
    assert report.summary == payload["summary"]
    recursive = expand_source(str(images_dir / "**" / "*.jp*g"))
    assert recursive.total == 5


def test_predict_video_frames(exported_run, tmp_path):
    video = tmp_path / "line.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (48, 96))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(6):
        writer.write(rng.integers(0, 256, size=(96, 48, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / "video.json"
    report = predict(exported_run, video, out=out)
    rows = json.loads(out.read_text())["rows"]
    assert [r["path"] for r in rows] == [f"{video}#frame={i}" for i in range(6)]
    assert report.summary["errors"] == 0
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(EdgeSealantError, match="cannot open video"):
        predict(exported_run, broken)


def test_resolve_model_prefers_int8_then_fp32_ir_then_onnx(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(EdgeSealantError, match="no exported model"):
        resolve_model(run.mkdir() or run)
    for backend, precision in (("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "int8")):
        path = artifact_path(run, backend, precision)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        assert resolve_model(run) == path


def test_bad_predict_inputs(exported_run, images_dir, tmp_path):
    with pytest.raises(EdgeSealantError, match=r"\.csv or \.json"):
        predict(exported_run, images_dir, out=tmp_path / "preds.txt")
    with pytest.raises(EdgeSealantError, match="no such file"):
        predict(exported_run, tmp_path / "nothing-here")
    with pytest.raises(EdgeSealantError, match="no images match"):
        predict(exported_run, str(tmp_path / "*.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeSealantError, match="no images"):
        predict(exported_run, tmp_path / "empty")
    with pytest.raises(EdgeSealantError, match="unknown model file type"):
        predict(exported_run / "best.pt", images_dir)
    with pytest.raises(EdgeSealantError, match="outside"):
        predict(exported_run, images_dir, threshold=1.5)


def test_cli_predict(exported_run, images_dir, tmp_path):
    from edge_sealant.cli import app

    runner = CliRunner()
    out = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(exported_run), str(images_dir), "--out", str(out), "--threshold", "0.5"])
    assert result.exit_code == 0, result.output
    assert len(_read_csv(out)) == 5
    assert "images/s" in result.output and "override" in result.output
    again = runner.invoke(app, ["predict", str(exported_run), str(images_dir), "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output
    assert len([line for line in again.output.splitlines() if line.strip()]) == 1
    listing = runner.invoke(app, ["predict", str(artifact_path(exported_run, "onnxruntime", "fp32")), str(images_dir / "a.jpg")])
    assert listing.exit_code == 0 and "a.jpg" in listing.output
    as_json = runner.invoke(app, ["predict", str(exported_run), str(images_dir / "b.jpg"), "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["summary"]["images"] == 1


def test_cli_predict_exits_1_when_nothing_could_be_inspected(exported_run, tmp_path):
    from edge_sealant.cli import app

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really\n a png")
    out = tmp_path / "preds.csv"
    result = CliRunner().invoke(app, ["predict", str(exported_run), str(folder), "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "none of the 2 images could be inspected" in " ".join(result.output.split())
    rows = _read_csv(out)  # the error rows are still written
    assert [r["decision"] for r in rows] == ["error", "error"]
    assert all("\n" not in r["error"] and r["error"] for r in rows)
    assert "zero.jpg: empty file" in rows[1]["error"]


def test_export_refuses_to_skip_the_parity_check(exported_run):
    from edge_sealant.export import export_run

    for count in (0, -3):
        with pytest.raises(EdgeSealantError, match="must be >= 1"):
            export_run(exported_run, formats=["onnx"], parity_limit=count)
