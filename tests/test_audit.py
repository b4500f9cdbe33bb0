"""audit_dataset / render_audit and the ``data inspect`` command."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from edge_sealant.cli import app
from edge_sealant.cli.data import render_audit
from edge_sealant.data.audit import audit_dataset
from edge_sealant.data.fingerprint import near_pairs, perceptual_hash, popcount as _popcount
from edge_sealant.data.loading import load_dataset

REPO = Path(__file__).resolve().parents[1]
MAGNETIC_TILE = REPO.parent / "shared" / "datasets" / "magnetic-tile" / "data.yaml"
BOX = "0.5 0.5 0.2 0.2"
POLY = "0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5"
TOP_LEVEL = {
    "root", "format", "notes", "class_names", "normal_classes", "splits", "boxes_per_class",
    "images_per_class", "image_size", "unreadable", "label_problems", "duplicates", "warnings", "grouping", "defect_scale",
    "frame_shapes",
}


def smooth_image(seed: int, hw: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Random but smooth (structure at low frequencies, like a real scene), BGR uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def write(path: Path, image: np.ndarray, *params: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image, list(params))
    return path


def label(root: Path, rel: str, text: str) -> None:
    path = root / "labels" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    img = tmp_path / "images"
    write(img / "train" / "a.png", smooth_image(1))
    write(img / "train" / "b.png", smooth_image(2))
    write(img / "train" / "c.png", smooth_image(3))
    (img / "train" / "d.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    write(img / "train" / "grey.png", cv2.cvtColor(smooth_image(4), cv2.COLOR_BGR2GRAY))
    write(img / "train" / "alpha.png", cv2.cvtColor(smooth_image(5, (40, 80)), cv2.COLOR_BGR2BGRA))
    write(img / "val" / "g.jpg", smooth_image(6), cv2.IMWRITE_JPEG_QUALITY, 95)
    write(img / "test" / "h.png", smooth_image(7))
    shutil.copy(img / "train" / "a.png", img / "test" / "a_copy.png")  # exact duplicate across splits
    brighter = cv2.add(smooth_image(2), np.full((48, 64, 3), 12, np.uint8))
    write(img / "test" / "b_bright.jpg", brighter, cv2.IMWRITE_JPEG_QUALITY, 80)  # near duplicate of train/b
    label(tmp_path, "train/a.txt", f"0 {BOX}\n")
    label(tmp_path, "train/b.txt", f"0 {BOX}\n1 {POLY}\n0 {BOX.replace('0.2', '0.3')}\n")
    label(tmp_path, "train/c.txt", "1 1.0000001 0.5 0.2 0.2\n")  # clipped, not fatal
    label(tmp_path, "train/ghost.txt", f"0 {BOX}\n")  # no image
    label(tmp_path, "val/g.txt", f"1 {BOX}\n1 {BOX}\n")  # duplicate line
    label(tmp_path, "test/a_copy.txt", f"0 {BOX}\n")
    (tmp_path / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames: [scratch, bubble]\n"
    )
    return tmp_path


def test_audit_report(dataset_dir):
    ds = load_dataset(dataset_dir / "data.yaml")
    report = audit_dataset(ds)
    assert set(report) == TOP_LEVEL
    json.loads(json.dumps(report))  # JSON-able as is
    assert report["format"] == "yolo" and report["class_names"] == ["scratch", "bubble"]
    assert report["splits"] == {
        "train": {"normal": 3, "defect": 3},
        "val": {"normal": 0, "defect": 1},
        "test": {"normal": 2, "defect": 1},
    }
    assert report["boxes_per_class"]["train"] == {"scratch": 3, "bubble": 2}
    assert report["images_per_class"]["train"] == {"scratch": 2, "bubble": 2}
    assert report["images_per_class"]["val"] == {"bubble": 1}
    # the corrupt file is reported, not fatal, and does not enter sizes or duplicates
    assert report["unreadable"] == ["images/train/d.jpg: cannot decode"]
    assert report["image_size"]["train"] == {"min_hw": [40, 64], "max_hw": [48, 80], "channels": [1, 3, 4]}
    assert report["image_size"]["val"]["channels"] == [3]
    problems = report["label_problems"]
    assert "labels/train/c.txt:1: coordinates slightly outside [0, 1] clipped" in problems
    assert "labels/val/g.txt:2: duplicate of line 1" in problems
    assert "labels/train/ghost.txt: label file without an image" in problems

    dup = report["duplicates"]
    assert dup["exact"] == [{"a": "images/train/a.png", "b": "images/test/a_copy.png", "splits": ["train", "test"], "cross_split": True}]
    assert dup["cross_split_exact"] == 1
    near = [(p["a"], p["b"]) for p in dup["near"]]
    assert ("images/train/b.png", "images/test/b_bright.jpg") in near
    assert dup["cross_split_near"] == len(near) == 1 and dup["near"][0]["distance"] <= 4
    warnings = report["warnings"]
    assert "1 images appear in both train and test (exact duplicates): metrics on test are inflated" in warnings
    assert any(w.startswith("1 test images are near duplicates of train images") for w in warnings)
    assert any("cannot be read or decoded" in w for w in warnings)
    assert "val has no normal images: false alarms cannot be measured there" in warnings


def test_frame_shapes_flag_a_class_whose_val_frames_train_never_had(tmp_path):
    """Train's scratches are all in tall frames, val's in wide ones: the audit says so; a split
    whose frames match train's (test) and classes with too few images stay quiet."""
    img = tmp_path / "images"
    shapes = {"train": (64, 32), "val": (32, 96), "test": (60, 30)}
    for split, hw in shapes.items():
        for i in range(3):
            write(img / split / f"s{i}.png", smooth_image(10 * i + len(split), hw))
            label(tmp_path, f"{split}/s{i}.txt", f"0 {BOX}\n")
            write(img / split / f"n{i}.png", smooth_image(100 + 10 * i + len(split), (48, 48)))
    write(img / "val" / "b0.png", smooth_image(7, (32, 96)))
    label(tmp_path, "val/b0.txt", f"1 {BOX}\n")  # one image: not enough to speak of
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames: [scratch, bubble]\n")
    report = audit_dataset(load_dataset(tmp_path / "data.yaml"))
    shapes_seen = report["frame_shapes"]
    assert shapes_seen["train"]["scratch"] == {"images": 3, "aspect_range": [0.5, 0.5]}
    assert shapes_seen["val"]["scratch"]["outside_train"] == 3 and shapes_seen["test"]["scratch"]["outside_train"] == 0
    assert shapes_seen["val"]["bubble"]["outside_train"] is None  # no train image of the class to compare with
    assert shapes_seen["val"]["normal"]["outside_train"] == 0
    flagged = [w for w in report["warnings"] if "train's scratch range" in w]
    assert flagged == [
        "val: 3 of 3 scratch images have frames 3 wide per tall, outside train's scratch range 0.5: "
        "the resize distorts their defects unlike any training scratch image, so val's scratch figures also measure that shift"
    ]
    letterbox = audit_dataset(load_dataset(tmp_path / "data.yaml"), resize_mode="letterbox")["warnings"]
    assert any("the resize scales their defects" in w for w in letterbox)


def test_near_duplicate_threshold(dataset_dir):
    ds = load_dataset(dataset_dir / "data.yaml")
    assert audit_dataset(ds, near_duplicate_distance=0)["duplicates"]["cross_split_near"] <= 1
    assert audit_dataset(ds, near_duplicate_distance=64)["duplicates"]["cross_split_near"] > 10


def test_render_audit(dataset_dir):
    report = audit_dataset(load_dataset(dataset_dir / "data.yaml"))
    console = Console(record=True, width=120, color_system=None)
    render_audit(report, console)
    text = console.export_text()
    for expected in ("Images per split", "Boxes (images) per class", "Image sizes", "scratch", "3 (2)",
                     "train/d.jpg: cannot decode", "Exact duplicates: 1 cross-split", "train/a.png", "test/a_copy.png",
                     "metrics on test are inflated", "label file without an image"):
        assert expected in text, expected


def test_imagefolder_audit_and_clean_dataset(tmp_path):
    for split in ("train", "val", "test"):
        for cls, offset in (("good", 0), ("ng", 50)):
            for i in range(2):
                write(tmp_path / split / cls / f"{i}.png", smooth_image(hash((split, cls, i)) % 10_000 + offset))
    report = audit_dataset(load_dataset(tmp_path))
    assert report["format"] == "imagefolder"
    assert report["splits"]["test"] == {"normal": 2, "defect": 2}
    assert report["boxes_per_class"] == {} and report["unreadable"] == [] and report["label_problems"] == []
    assert report["duplicates"]["cross_split_exact"] == 0
    console = Console(record=True, width=100, color_system=None)
    render_audit(report, console)
    assert "Exact duplicates: none" in console.export_text()


def test_near_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, 40).astype(np.uint64)
    hashes = np.concatenate([base, base ^ flips, rng.integers(0, 2**63, 500, dtype=np.uint64)])
    got = sorted(near_pairs(hashes, 3, block=64))
    brute = sorted(
        (i, j, bin(int(hashes[i]) ^ int(hashes[j])).count("1"))
        for i in range(len(hashes)) for j in range(i + 1, len(hashes))
        if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= 3
    )
    assert got == brute and len(got) >= 40
    assert _popcount(np.array([2**64 - 1], dtype=np.uint64))[0] == 64


def test_perceptual_hash_is_stable_under_brightness():
    grey = cv2.cvtColor(smooth_image(9, (128, 128)), cv2.COLOR_BGR2GRAY)
    a, b = perceptual_hash(grey), perceptual_hash(cv2.add(grey, 15))
    other = perceptual_hash(cv2.cvtColor(smooth_image(10, (128, 128)), cv2.COLOR_BGR2GRAY))
    assert bin(a ^ b).count("1") <= 4 < bin(a ^ other).count("1")


# ------------------------------------------------------------------------------ CLI
def test_cli_inspect_json(dataset_dir):
    result = CliRunner().invoke(app, ["data", "inspect", str(dataset_dir / "data.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["splits"]["train"] == {"normal": 3, "defect": 3}
    assert report["duplicates"]["cross_split_exact"] == 1


def test_cli_inspect_table_with_normal_classes(dataset_dir):
    result = CliRunner().invoke(app, ["data", "inspect", str(dataset_dir), "--normal-classes", "bubble"])
    assert result.exit_code == 0, result.output
    assert "Images per split" in result.stdout and "(normal)" in result.stdout


def test_cli_bad_dataset_is_one_line(dataset_dir):
    (dataset_dir / "labels" / "train" / "a.txt").write_text(f"0 {BOX}\n9 {BOX}\n")
    result = CliRunner().invoke(app, ["data", "inspect", str(dataset_dir / "data.yaml"), "--json"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == ["error: labels/train/a.txt:2: class id 9 out of range (names has 2 classes)"]


def test_cli_unknown_normal_class(dataset_dir):
    result = CliRunner().invoke(app, ["data", "inspect", str(dataset_dir), "--normal-classes", "dent"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "normal class 'dent' is not in names (scratch, bubble)" in result.output


# ------------------------------------------------------------------------------ real data
@pytest.mark.skipif(not MAGNETIC_TILE.exists(), reason="magnetic-tile dataset not present")
def test_magnetic_tile_audit():
    start = time.process_time()
    report = audit_dataset(load_dataset(MAGNETIC_TILE))
    assert time.process_time() - start < 20
    assert report["splits"] == {
        "train": {"normal": 667, "defect": 259},
        "val": {"normal": 144, "defect": 67},
        "test": {"normal": 141, "defect": 66},
    }
    assert report["unreadable"] == [] and report["image_size"]["train"]["channels"] == [1]
    # split by tile: no tile, photographed under several lightings, sits in two splits
    assert report["duplicates"]["cross_split_exact"] == 0
    assert report["duplicates"]["cross_split_near"] == 0
    assert report["duplicates"]["within_split_near"] > 100
    # val's one crack tile is photographed in wide frames (2.4:1); every train crack is at most 1.2:1
    assert report["frame_shapes"]["val"]["crack"]["outside_train"] == 12
    flagged = [w for w in report["warnings"] if "wide per tall" in w]
    assert len(flagged) == 1 and flagged[0].startswith("val: 12 of 12 crack images have frames 2.43-2.5 wide per tall")
