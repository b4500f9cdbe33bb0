"""The standing bad-input suite: every verb against what a line PC's folders and a user's
config really hold. Each case must end in exit code 1 with one line ``error: ...`` (or an
error row), no traceback text, and no partial artifact left behind.

Fast by design: tiny images, the shared tiny exported run of ``deploy_fixtures``, no training
longer than the failure it provokes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sealant.cli import app

pytest_plugins = ["deploy_fixtures"]  # exported_run, dataset_root, images_dir

runner = CliRunner()
BOX = "0.5 0.5 0.2 0.2"


@dataclass
class World:
    root: Path
    yolo: Path  # a small YOLO data.yaml with train/val/test
    run: Path  # a copy of the exported tiny run (cases may edit it)
    images: Path

    def path(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="module")
def world(tmp_path_factory, exported_run, images_dir) -> World:
    root = tmp_path_factory.mktemp("bad-inputs")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        for i in range(n):
            image = root / "yolo" / "images" / split / f"{split}{i}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image), rng.integers(0, 255, (64, 32, 3), dtype=np.uint8))
            label = root / "yolo" / "labels" / split / f"{split}{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"0 {BOX}\n" if i % 2 else "")
    (root / "yolo" / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames: [scratch]\n")
    run = root / "run"
    shutil.copytree(exported_run, run)
    return World(root=root, yolo=root / "yolo" / "data.yaml", run=run, images=images_dir)


def yolo_copy(world: World, name: str) -> Path:
    """A fresh copy of the YOLO set that a case may break."""
    target = world.path(name)
    if not target.exists():
        shutil.copytree(world.yolo.parent, target)
    return target


def run_copy(world: World, name: str, edit: Callable[[dict], None] | None = None, text: str | None = None) -> Path:
    target = world.path(name)
    if not target.exists():
        shutil.copytree(world.run, target)
    if edit is not None:
        card = json.loads((target / "run.json").read_text())
        edit(card)
        (target / "run.json").write_text(json.dumps(card))
    if text is not None:
        (target / "run.json").write_text(text)
    return target


def broken_label(world: World, name: str, text: str, raw: bytes | None = None) -> Path:
    data = yolo_copy(world, name)
    label = data / "labels" / "train" / "train1.txt"
    if raw is not None:
        label.write_bytes(raw)
    else:
        label.write_text(text)
    return data / "data.yaml"


def written(world: World, name: str, text: str) -> Path:
    path = world.path(name)
    path.write_text(text)
    return path


@dataclass
class Case:
    id: str
    argv: Callable[[World], list[str]]
    message: str
    leaves_nothing: Optional[Callable[[World], Path]] = None


TINY_TRAIN = ["--model", "mobilenet_v3_small", "--pretrained", "none", "--imgsz", "64x32", "--epochs", "1"]

CASES = [
    # ------------------------------------------------------------------ data inspect / split / synth
    Case("inspect-missing", lambda w: ["data", "inspect", str(w.path("nothing.yaml"))], "no such file or folder"),
    Case("inspect-yaml-syntax", lambda w: ["data", "inspect", str(written(w, "bad.yaml", "train: [a\nnames: x\n"))], "YAML does not parse"),
    Case("inspect-yaml-list", lambda w: ["data", "inspect", str(written(w, "list.yaml", "- train\n- val\n"))], "expected a mapping"),
    Case("inspect-yaml-no-train", lambda w: ["data", "inspect", str(written(w, "notrain.yaml", "names: [a]\n"))], "missing key 'train'"),
    Case("inspect-label-fields", lambda w: ["data", "inspect", str(broken_label(w, "l1", "0 0.5 0.5 0.2\n"))], "train1.txt:1: 4 fields"),
    Case("inspect-label-class", lambda w: ["data", "inspect", str(broken_label(w, "l2", f"3 {BOX}\n"))], "class id 3 out of range"),
    Case("inspect-label-text", lambda w: ["data", "inspect", str(broken_label(w, "l3", "0 a b c d\n"))], "coordinate 'a' is not a number"),
    Case("inspect-label-range", lambda w: ["data", "inspect", str(broken_label(w, "l4", "0 0.5 1.7 0.2 0.2\n"))], "outside [0, 1]"),
    Case("inspect-label-negative-class", lambda w: ["data", "inspect", str(broken_label(w, "l5", f"-1 {BOX}\n"))], "not a non-negative integer"),
    Case("inspect-label-binary", lambda w: ["data", "inspect", str(broken_label(w, "l6", "", raw=b"\xff\xfe\x00\x81"))], "not UTF-8"),
    Case("inspect-label-is-folder", lambda w: ["data", "inspect", str(_label_folder(w))], "is a folder"),
    Case("inspect-normal-class", lambda w: ["data", "inspect", str(w.yolo), "--normal-classes", "dent"], "normal class 'dent'"),
    Case("inspect-group-regex", lambda w: ["data", "inspect", str(w.yolo), "--group-by", "(part"], "not a regular expression"),
    Case("inspect-not-a-dataset", lambda w: ["data", "inspect", str(written(w, "x.csv", "a,b\n"))], "expected a YOLO data.yaml"),
    Case("split-out-not-empty", lambda w: ["data", "split", str(w.yolo), str(w.images)], "already exists"),
    Case("split-fractions", lambda w: ["data", "split", str(w.yolo), str(w.path("s1")), "--val", "0.5", "--test", "0.5"],
         "leave no training images", lambda w: w.path("s1")),
    Case("split-negative", lambda w: ["data", "split", str(w.yolo), str(w.path("s2")), "--val", "-0.1"], "must be in [0, 1)",
         lambda w: w.path("s2")),
    Case("split-max-group", lambda w: ["data", "split", str(w.yolo), str(w.path("s3")), "--max-group", "0"], "--max-group 0",
         lambda w: w.path("s3")),
    Case("synth-few", lambda w: ["data", "synth", str(w.path("syn1")), "--n", "3"], "n must be an integer >= 10", lambda w: w.path("syn1")),
    Case("synth-size", lambda w: ["data", "synth", str(w.path("syn2")), "--size", "tall"], "is not HxW", lambda w: w.path("syn2")),
    Case("synth-ratio", lambda w: ["data", "synth", str(w.path("syn3")), "--defect-ratio", "2"], "defect_ratio must be in [0, 1]",
         lambda w: w.path("syn3")),
    # ------------------------------------------------------------------ train
    Case("train-no-data", lambda w: ["train", "--out", str(w.path("t0"))], "missing DATA", lambda w: w.path("t0")),
    Case("train-imgsz", lambda w: ["train", str(w.yolo), "--imgsz", "64x", "--out", str(w.path("t1"))], "is not HxW", lambda w: w.path("t1")),
    Case("train-imgsz-huge", lambda w: ["train", str(w.yolo), "--imgsz", "99999x64", "--out", str(w.path("t2"))], "[8, 8192]",
         lambda w: w.path("t2")),
    Case("train-lr-negative", lambda w: ["train", str(w.yolo), "--lr", "-0.1", "--out", str(w.path("t3"))], "--lr -0.1", lambda w: w.path("t3")),
    Case("train-lr-nan", lambda w: ["train", str(w.yolo), "--lr", "nan", "--out", str(w.path("t4"))], "--lr nan", lambda w: w.path("t4")),
    Case("train-epochs-zero", lambda w: ["train", str(w.yolo), "--epochs", "0", "--out", str(w.path("t5"))], "--epochs", lambda w: w.path("t5")),
    Case("train-balance", lambda w: ["train", str(w.yolo), "--balance", "magic", "--out", str(w.path("t6"))], "--balance 'magic'",
         lambda w: w.path("t6")),
    Case("train-policy", lambda w: ["train", str(w.yolo), "--threshold-policy", "recall@2", "--out", str(w.path("t7"))], "threshold policy",
         lambda w: w.path("t7")),
    Case("train-folds", lambda w: ["train", str(w.yolo), "--folds", "1", "--out", str(w.path("t8"))], "--folds 1 must be >= 2",
         lambda w: w.path("t8")),
    Case("train-time-limit", lambda w: ["train", str(w.yolo), "--time-limit", "-5", "--out", str(w.path("t9"))], "--time-limit -5",
         lambda w: w.path("t9")),
    Case("train-config-lr-text", lambda w: ["train", "--config", str(written(w, "c1.yaml", f"data: {w.yolo}\nlr: fast\n")), "--out", str(w.path("t10"))],
         "--lr 'fast' is not a number", lambda w: w.path("t10")),
    Case("train-config-epochs", lambda w: ["train", "--config", str(written(w, "c2.yaml", f"data: {w.yolo}\nepochs: many\n")), "--out", str(w.path("t11"))],
         "--epochs 'many' is not a whole number", lambda w: w.path("t11")),
    Case("train-config-list", lambda w: ["train", "--config", str(written(w, "c3.yaml", "- 1\n- 2\n"))], "must be a mapping"),
    Case("train-config-unknown", lambda w: ["train", "--config", str(written(w, "c4.yaml", f"data: {w.yolo}\nlearning_rate: 1\n"))],
         "unknown training option(s): learning_rate"),
    Case("train-config-missing", lambda w: ["train", "--config", str(w.path("none.yaml"))], "cannot read config"),
    Case("train-out-is-file", lambda w: ["train", str(w.yolo), *TINY_TRAIN, "--out", str(written(w, "outfile", "x"))], "exists and is not a folder"),
    Case("train-resume-nothing", lambda w: ["train", "--resume", str(w.images)], "checkpoint not found"),
    Case("train-unknown-model", lambda w: ["train", str(w.yolo), "--model", "resnet50", "--out", str(w.path("t12"))], "resnet50",
         lambda w: w.path("t12")),
    Case("train-weights-missing", lambda w: ["train", str(w.yolo), "--model", "mobilenet_v3_small", "--pretrained", str(w.path("no.pth")),
                                             "--out", str(w.path("t13"))], "weights file not found", lambda w: w.path("t13")),
    Case("train-no-defects", lambda w: ["train", str(_all_normal(w)), *TINY_TRAIN, "--out", str(w.path("t14"))], "need normal and defect",
         lambda w: w.path("t14")),
    # ------------------------------------------------------------------ evaluate
    Case("evaluate-no-run", lambda w: ["evaluate", str(w.path("norun")), str(w.yolo)], "not a run folder"),
    Case("evaluate-split", lambda w: ["evaluate", str(w.run), str(w.yolo), "--split", "holdout"], "no 'holdout' split"),
    Case("evaluate-card-json", lambda w: ["evaluate", str(run_copy(w, "r1", text="{not json")), str(w.yolo)], "not valid JSON"),
    Case("evaluate-card-size", lambda w: ["evaluate", str(run_copy(w, "r2", edit=lambda c: c.update(input_size="64x32"))), str(w.yolo)],
         "input_size must be"),
    Case("evaluate-card-std", lambda w: ["evaluate", str(run_copy(w, "r3", edit=lambda c: c.update(std=[0, 0, 0]))), str(w.yolo)],
         "std must be three positive numbers"),
    Case("evaluate-card-model", lambda w: ["evaluate", str(run_copy(w, "r4", edit=lambda c: c.update(model="efficientnet_b0"))), str(w.yolo)],
         "weights do not fit model 'efficientnet_b0'"),
    Case("evaluate-policy", lambda w: ["evaluate", str(w.run), str(w.yolo), "--threshold-policy", "best"], "threshold policy"),
    # ------------------------------------------------------------------ export / set-threshold
    Case("export-parity-zero", lambda w: ["export", str(w.run), "--parity-images", "0"], "--parity-images 0 must be >= 1"),
    Case("export-format", lambda w: ["export", str(w.run), "--format", "tflite"], "tflite"),
    Case("export-precision", lambda w: ["export", str(w.run), "--precision", "int4"], "int4"),
    Case("export-no-checkpoint", lambda w: ["export", str(_without_checkpoint(w))], "checkpoint not found"),
    Case("set-threshold-range", lambda w: ["set-threshold", str(w.run / "onnx" / "fp32" / "model.onnx"), "1.5"], "outside [0, 1]"),
    Case("set-threshold-file-type", lambda w: ["set-threshold", str(written(w, "model.txt", "x")), "0.5"], "model.txt"),
    # ------------------------------------------------------------------ quantize
    Case("quantize-subset", lambda w: ["quantize", str(w.run), str(w.yolo), "--subset-size", "0"], "--subset-size must be at least 1"),
    Case("quantize-drop", lambda w: ["quantize", str(w.run), str(w.yolo), "--max-drop", "2"], "--max-drop 2"),
    Case("quantize-backend", lambda w: ["quantize", str(w.run), str(w.yolo), "--backend", "tensorrt"], "tensorrt"),
    # ------------------------------------------------------------------ predict
    Case("predict-no-model", lambda w: ["predict", str(w.path("none.xml")), str(w.images)], "none.xml"),
    Case("predict-no-source", lambda w: ["predict", str(w.run), str(w.path("nowhere"))], "no such file"),
    Case("predict-threshold", lambda w: ["predict", str(w.run), str(w.images), "--threshold", "2"], "outside [0, 1]"),
    Case("predict-out-suffix", lambda w: ["predict", str(w.run), str(w.images), "--out", str(w.path("p.txt"))], ".csv or .json",
         lambda w: w.path("p.txt")),
    Case("predict-all-broken", lambda w: ["predict", str(w.run), str(_broken_images(w))], "none of the 3 images could be inspected"),
    # ------------------------------------------------------------------ bench / demo
    Case("bench-iterations", lambda w: ["bench", str(w.run), str(w.yolo), "--iterations", "0"], "--iterations"),
    Case("bench-drop", lambda w: ["bench", str(w.run), str(w.yolo), "--fail-on-drop", "-1"], "--fail-on-drop -1"),
    Case("bench-backend", lambda w: ["bench", str(w.run), str(w.yolo), "--backends", "tensorflow"], "tensorflow"),
    Case("demo-out-not-empty", lambda w: ["demo", "--quick", "--out", str(w.images)], "not empty"),
]


def _label_folder(world: World) -> Path:
    data = yolo_copy(world, "lf")
    label = data / "labels" / "train" / "train1.txt"
    if label.is_file():
        label.unlink()
        label.mkdir()
    return data / "data.yaml"


def _all_normal(world: World) -> Path:
    data = yolo_copy(world, "normal-only")
    for label in (data / "labels").rglob("*.txt"):
        label.write_text("")
    return data / "data.yaml"


def _without_checkpoint(world: World) -> Path:
    run = run_copy(world, "nockpt")
    (run / "best.pt").unlink(missing_ok=True)
    return run


def _broken_images(world: World) -> Path:
    folder = world.path("broken-images")
    folder.mkdir(exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    (folder / "text.png").write_bytes(b"hello")
    return folder


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_error(world, case):
    result = runner.invoke(app, case.argv(world))
    output = result.output
    assert result.exit_code == 1, output
    assert "Traceback" not in output and "Error:" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert case.message in errors[0] or case.message in " ".join(output.split()), output
    if case.leaves_nothing is not None:
        assert not case.leaves_nothing(world).exists(), f"partial artifact left: {case.leaves_nothing(world)}"


def test_the_suite_is_large_enough():
    assert len(CASES) >= 40


# ------------------------------------------------------------------------------ runtime API
def test_runtime_api_bad_inputs(world):
    from edge_sealant.errors import EdgeSealantError
    from edge_sealant.runtime import Inspector

    for bad in (None, 3, ""):
        with pytest.raises(EdgeSealantError, match="needs the path"):
            Inspector.load(bad)
    with pytest.raises(EdgeSealantError):
        Inspector.load(world.path("missing.xml"))
    inspector = Inspector.load(world.run / "openvino" / "fp32" / "model.xml")
    sources = [bytearray(b"junk"), memoryview(b""), np.zeros((8, 8, 2), np.uint8), np.zeros((8, 8, 3), np.float64), b"\x89PNG\r\n\x1a\n"]
    for source in sources:
        result = inspector.inspect(source)
        assert result.error and "\n" not in result.error and "cv2" not in result.error.lower()
        assert result.decision == "error" and result.probability is None
    good = cv2.imencode(".jpg", np.full((40, 20, 3), 128, np.uint8))[1]
    for buffer in (good.tobytes(), bytearray(good.tobytes()), memoryview(good.tobytes())):
        assert inspector.inspect(buffer).error is None


def test_a_preload_larger_than_memory_is_refused_before_decoding():
    from edge_sealant.errors import EdgeSealantError
    from edge_sealant.imageset import check_fits_in_memory

    check_fits_in_memory(1000, (512, 192))  # 0.3 GiB
    with pytest.raises(EdgeSealantError, match="use a smaller input size"):
        check_fits_in_memory(10_000, (8192, 8192))


def test_published_artifacts_are_readable_by_other_users(exported_run):
    import os

    umask = os.umask(0)
    os.umask(umask)
    for folder in ("onnx/fp32", "openvino/fp32"):
        assert (exported_run / folder).stat().st_mode & 0o777 == 0o777 & ~umask, folder
        for file in (exported_run / folder).iterdir():
            assert file.stat().st_mode & 0o666 == 0o666 & ~umask, file
