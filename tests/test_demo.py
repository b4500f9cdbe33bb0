"""edge-sealant demo: the quick preset end to end, the refusal to overwrite, the presets."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edge_sealant.cli import app
from edge_sealant.demo import DemoOptions

runner = CliRunner()
STAGES = ["generate data", "train", "export (onnx + openvino fp32)", "quantize (int8)", "bench"]


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    for stage in STAGES:
        assert stage in result.output
    assert "done in" in result.output and "report:" in result.output
    summary = json.loads((out / "demo.json").read_text())
    assert list(summary["stages"]) == STAGES
    assert summary["total_seconds"] > 0 and summary["options"]["quick"] is True
    rows = json.loads((out / "run" / "bench" / "bench.json").read_text())["rows"]
    keys = {(r["backend"], r["precision"]) for r in rows}
    assert {("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "int8")} <= keys
    report = (out / "report.md").read_text()
    assert "| stage | seconds |" in report and "## Training" in report and "| row | AUROC [95% CI] |" in report
    assert "](run/bench/roc.png)" in report and (out / "run" / "bench" / "roc.png").is_file()


def test_demo_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "not empty" in result.output
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_presets():
    default = DemoOptions.preset()
    assert default.model == "efficientnet_lite0" and default.pretrained == "imagenet"
    height, width = default.imgsz
    assert height > width and height % 32 == 0 and width % 32 == 0  # small, tall, no odd stride-2 maps
    # fixed epochs: the time limit is a safety net that fails loudly, never a silent early stop
    assert default.time_limit_action == "fail" and default.time_limit_min >= 10
    quick = DemoOptions.preset(quick=True)
    assert quick.quick and quick.n <= 100 and quick.epochs <= 2 and quick.imgsz == (64, 32)
    assert DemoOptions.preset(quick=True, threads=1).threads == 1


@pytest.mark.slow
def test_demo_default_reaches_auroc_target(tmp_path):
    """The embedded default: within 5 minutes on a 2-core CPU, test AUROC >= 0.95 (quiet machine)."""
    from edge_sealant.demo import run_demo

    options = DemoOptions.preset(out=tmp_path / "demo")
    result = run_demo(options, log=lambda message: None)
    assert result.test_auroc >= 0.95 and result.test_auroc_ci[0] <= result.test_auroc <= result.test_auroc_ci[1]
    assert result.total_seconds < 300
    card = json.loads((tmp_path / "demo" / "run" / "run.json").read_text())
    stopped = card["train"]["stopped_by"]
    assert stopped is None or stopped.startswith("early stop")  # never the clock
    assert card["train"]["epochs_run"] == options.epochs or stopped is not None


def test_a_failed_demo_leaves_no_folder(tmp_path, monkeypatch):
    from edge_sealant.data import synth
    from edge_sealant.errors import EdgeSealantError

    def broken(out, **_):
        (out / "images").mkdir(parents=True)  # something was written before the failure
        raise EdgeSealantError("disk full")

    monkeypatch.setattr(synth, "synthesize", broken)
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 1 and "disk full" in result.output
    assert not (tmp_path / "demo").exists()
