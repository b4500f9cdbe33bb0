"""load_dataset: YOLO (yaml, txt lists, no yaml), ImageFolder, split making and bad input."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sealant.data.labels import label_path_for, parse_label_text
from edge_sealant.data.loading import load_dataset
from edge_sealant.errors import EdgeSealantError

REPO = Path(__file__).resolve().parents[1]
MAGNETIC_TILE = REPO.parent / "shared" / "datasets" / "magnetic-tile" / "data.yaml"
BOX = "0.5 0.5 0.2 0.2"
POLY = "0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5"


def write_image(path: Path, seed: int = 0, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return path


def make_yolo(root: Path, layout: dict[str, dict[str, str | None]], yaml_text: str | None = None) -> Path:
    """layout: split -> {image stem: label text (None: no label file)}; returns the yaml path."""
    seed = 0
    for split, items in layout.items():
        for stem, label in items.items():
            seed += 1
            write_image(root / "images" / split / f"{stem}.png", seed)
            if label is not None:
                lp = root / "labels" / split / f"{stem}.txt"
                lp.parent.mkdir(parents=True, exist_ok=True)
                lp.write_text(label)
    if yaml_text is None:
        yaml_text = "path: .\n" + "".join(f"{s}: images/{s}\n" for s in layout) + "names: [scratch, bubble]\n"
    (root / "data.yaml").write_text(yaml_text)
    return root / "data.yaml"


STANDARD = {
    "train": {"t1": f"0 {BOX}\n", "t2": "", "t3": None, "t4": f"1 {BOX}\n0 {BOX}\n"},
    "val": {"v1": f"1 {BOX}\n", "v2": ""},
    "test": {"s1": "", "s2": f"0 {BOX}\n"},
}


# ------------------------------------------------------------------------------ YOLO basics
def test_yolo_detection_counts_and_samples(tmp_path):
    ds = load_dataset(make_yolo(tmp_path, STANDARD))
    assert ds.format == "yolo"
    assert ds.class_names == ["scratch", "bubble"]
    assert ds.counts() == {"train": {"normal": 2, "defect": 2}, "val": {"normal": 1, "defect": 1}, "test": {"normal": 1, "defect": 1}}
    train = {s.path.stem: s for s in ds.splits["train"]}
    assert train["t4"].defect_classes == ("bubble", "scratch") and train["t4"].boxes == 2
    assert train["t3"].label == 0 and train["t3"].boxes == 0  # missing label file = normal
    assert train["t2"].label == 0  # empty label file = normal
    assert [s.path for s in ds.splits["train"]] == sorted(s.path for s in ds.splits["train"])
    assert all(s.path.is_absolute() and s.path.exists() for s in ds.splits["train"])
    assert any("resolved relative to the yaml folder" in n for n in ds.notes)


def test_segmentation_lines(tmp_path):
    layout = {"train": {"a": f"1 {POLY}\n", "b": f"0 {POLY} 0.2 0.9\n0 {BOX}\n", "c": ""}}
    ds = load_dataset(make_yolo(tmp_path, layout), val_fraction=0, test_fraction=0)
    got = {s.path.stem: (s.label, s.defect_classes, s.boxes) for s in ds.splits["train"]}
    assert got == {"a": (1, ("bubble",), 1), "b": (1, ("scratch",), 2), "c": (0, (), 0)}


def test_label_path_mirrors_last_images_component():
    assert label_path_for(Path("/d/images/x/images/train/a.b.jpg")) == Path("/d/images/x/labels/train/a.b.txt")
    assert label_path_for(Path("/d/pics/a.png")) == Path("/d/pics/a.txt")


def test_names_as_dict_and_nc_only(tmp_path):
    layout = {"train": {"a": f"2 {BOX}\n", "b": ""}}
    yaml_dict = "train: images/train\nnames:\n  0: scratch\n  1: bubble\n  2: chip\n"
    ds = load_dataset(make_yolo(tmp_path / "d", layout, yaml_dict), val_fraction=0, test_fraction=0)
    assert ds.class_names == ["scratch", "bubble", "chip"]
    assert ds.splits["train"][0].defect_classes == ("chip",)
    yaml_nc = "train: images/train\nnc: 3\n"
    ds = load_dataset(make_yolo(tmp_path / "n", layout, yaml_nc), val_fraction=0, test_fraction=0)
    assert ds.class_names == ["class0", "class1", "class2"]
    assert ds.splits["train"][0].defect_classes == ("class2",)
    consistent = "train: images/train\nnc: 3\nnames: [a, b, c]\n"
    assert load_dataset(make_yolo(tmp_path / "c", layout, consistent), val_fraction=0, test_fraction=0).class_names == ["a", "b", "c"]


def test_normal_classes(tmp_path):
    layout = {"train": {"only_normal_cls": f"1 {BOX}\n", "mixed": f"1 {BOX}\n0 {BOX}\n", "defect": f"0 {BOX}\n", "empty": ""}}
    ds = load_dataset(make_yolo(tmp_path, layout), normal_classes=["bubble"], val_fraction=0, test_fraction=0)
    got = {s.path.stem: (s.label, s.defect_classes, s.boxes) for s in ds.splits["train"]}
    assert got["only_normal_cls"] == (0, (), 1)
    assert got["mixed"] == (1, ("scratch",), 2)
    assert got["defect"] == (1, ("scratch",), 1)
    assert ds.normal_classes == ["bubble"]


# ------------------------------------------------------------------------------ path resolution
def _dataset_tree(root: Path) -> None:
    for split in ("train", "val", "test"):
        write_image(root / "images" / split / "a.png", 1)
        write_image(root / "images" / split / "b.png", 2)
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / "a.txt").write_text(f"0 {BOX}\n")


YAML_BODY = "train: images/train\nval: images/val\ntest: images/test\nnames: [scratch]\n"


def test_path_relative_to_yaml_folder(tmp_path):
    _dataset_tree(tmp_path / "cfg" / "ds")
    (tmp_path / "cfg" / "data.yaml").write_text("path: ds\n" + YAML_BODY)
    ds = load_dataset(tmp_path / "cfg" / "data.yaml")
    assert ds.root == tmp_path / "cfg" / "ds"
    assert any("path 'ds' resolved relative to the yaml folder:" in n for n in ds.notes)
    assert ds.counts()["test"] == {"normal": 1, "defect": 1}


def test_path_relative_to_parent_ultralytics_style(tmp_path):
    _dataset_tree(tmp_path / "Datasets")
    (tmp_path / "Datasets" / "data.yaml").write_text("path: Datasets\n" + YAML_BODY)
    ds = load_dataset(tmp_path / "Datasets")  # a folder with data.yaml in it
    assert ds.root == tmp_path / "Datasets"
    assert any("resolved relative to the yaml folder's parent" in n for n in ds.notes)


def test_path_relative_to_cwd(tmp_path, monkeypatch):
    _dataset_tree(tmp_path / "work" / "ds")
    (tmp_path / "cfg" / "deep").mkdir(parents=True)
    (tmp_path / "cfg" / "deep" / "data.yaml").write_text("path: ds\n" + YAML_BODY)
    monkeypatch.chdir(tmp_path / "work")
    ds = load_dataset(tmp_path / "cfg" / "deep" / "data.yaml")
    assert ds.root == tmp_path / "work" / "ds"
    assert any("resolved relative to the current folder" in n for n in ds.notes)


def test_missing_path_means_yaml_folder(tmp_path):
    _dataset_tree(tmp_path)
    (tmp_path / "data.yaml").write_text(YAML_BODY)
    ds = load_dataset(tmp_path / "data.yaml")
    assert ds.root == tmp_path and any("no 'path'" in n for n in ds.notes)


def test_roboflow_style_parent_prefix(tmp_path):
    for split in ("train", "valid"):
        write_image(tmp_path / split / "images" / "a.png", 1)
        (tmp_path / split / "labels").mkdir()
        (tmp_path / split / "labels" / "a.txt").write_text(f"0 {BOX}\n")
        write_image(tmp_path / split / "images" / "b.png", 2)
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['x']\n")
    ds = load_dataset(tmp_path / "data.yaml", test_fraction=0)
    assert ds.counts()["train"] == {"normal": 1, "defect": 1} and ds.counts()["val"] == {"normal": 1, "defect": 1}
    assert any("Roboflow" in n for n in ds.notes)


def test_txt_split_lists(tmp_path):
    _dataset_tree(tmp_path)
    (tmp_path / "train.txt").write_text("./images/train/a.png\nimages/train/b.png\n\n")
    (tmp_path / "val.txt").write_text(f"{tmp_path / 'images' / 'val' / 'a.png'}\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: train.txt\nval: [val.txt, images/test]\nnames: [scratch]\n")
    ds = load_dataset(tmp_path / "data.yaml", test_fraction=0)
    assert ds.counts()["train"] == {"normal": 1, "defect": 1}
    assert ds.counts()["val"] == {"normal": 1, "defect": 2}  # val/a + test/a, test/b


# ------------------------------------------------------------------------------ split making
def _train_only(tmp_path: Path, n_normal: int = 40, n_defect: int = 20) -> Path:
    for i in range(n_normal + n_defect):
        (tmp_path / "images" / "train").mkdir(parents=True, exist_ok=True)
        (tmp_path / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / "train" / f"im{i:03d}.jpg").write_bytes(b"")  # the loader never decodes
        if i >= n_normal:
            (tmp_path / "labels" / "train" / f"im{i:03d}.txt").write_text(f"{i % 2} {BOX}\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: [scratch, bubble]\n")
    return tmp_path / "data.yaml"


def test_train_only_split_is_stratified_and_deterministic(tmp_path):
    yaml_path = _train_only(tmp_path)
    ds = load_dataset(yaml_path, seed=0)
    counts = ds.counts()
    assert counts["val"] == {"normal": 6, "defect": 3} and counts["test"] == {"normal": 6, "defect": 3}
    assert counts["train"] == {"normal": 28, "defect": 14}
    assert any(n.startswith("made val/test: stratified, seed 0, fractions val 0.15, test 0.15") for n in ds.notes)
    all_paths = [s.path for v in ds.splits.values() for s in v]
    assert len(all_paths) == len(set(all_paths)) == 60
    again = load_dataset(yaml_path, seed=0)
    assert {k: [s.path for s in v] for k, v in again.splits.items()} == {k: [s.path for s in v] for k, v in ds.splits.items()}
    other = load_dataset(yaml_path, seed=1)
    assert [s.path for s in other.splits["test"]] != [s.path for s in ds.splits["test"]]
    for split in ds.splits.values():
        assert [s.path for s in split] == sorted(s.path for s in split)
    # both defect classes reach val and test (classes are spread, not only labels)
    for split in ("val", "test"):
        assert {c for s in ds.splits[split] for c in s.defect_classes} == {"scratch", "bubble"}


def test_train_and_val_carves_test_out_of_train(tmp_path):
    yaml_path = _train_only(tmp_path)
    write_image(tmp_path / "images" / "val" / "v.png")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [scratch, bubble]\n")
    ds = load_dataset(yaml_path)
    assert len(ds.splits["val"]) == 1
    assert len(ds.splits["test"]) == 9  # 15% of 61 images, stratified
    assert any(n.startswith("made test: stratified, seed 0") for n in ds.notes)


def test_load_is_fast_and_does_not_decode(tmp_path):
    # val and test are given: nothing to carve, so nothing is decoded (a carved split hashes images)
    for split in ("train", "val", "test"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
    for i in range(1500):
        split = "train" if i < 1000 else "val" if i < 1250 else "test"
        (tmp_path / "images" / split / f"{i:05d}.jpg").write_bytes(b"not an image")
        if i % 3 == 0:
            (tmp_path / "labels" / split / f"{i:05d}.txt").write_text(f"0 {BOX}\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\ntest: images/test\nnames: [scratch]\n")
    start = time.process_time()  # CPU time: robust to a busy shared machine
    ds = load_dataset(tmp_path / "data.yaml")
    assert time.process_time() - start < 0.6  # about 0.1 s; 10k images take about 0.5 s CPU
    assert sum(c["defect"] for c in ds.counts().values()) == 500


# ------------------------------------------------------------------------------ other layouts
def test_imagefolder_with_aliases(tmp_path):
    for split, folder, n in (("train", "Good", 3), ("train", "NG", 2), ("val", "ok", 1), ("val", "bad", 1), ("test", "normal", 2), ("test", "DEFECT", 1)):
        for i in range(n):
            write_image(tmp_path / split / folder / f"{folder}{i}.jpg", i)
    ds = load_dataset(tmp_path)
    assert ds.format == "imagefolder"
    assert ds.counts() == {"train": {"normal": 3, "defect": 2}, "val": {"normal": 1, "defect": 1}, "test": {"normal": 2, "defect": 1}}
    with pytest.raises(EdgeSealantError, match="ImageFolder"):
        load_dataset(tmp_path, normal_classes=["x"])


def test_imagefolder_without_splits(tmp_path):
    for folder, n in (("normal", 20), ("defect", 10)):
        for i in range(n):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / f"{i}.png").write_bytes(b"")
    ds = load_dataset(tmp_path, seed=3)
    assert ds.counts() == {"train": {"normal": 14, "defect": 6}, "val": {"normal": 3, "defect": 2}, "test": {"normal": 3, "defect": 2}}
    assert sum(len(v) for v in ds.splits.values()) == 30
    assert any(n.startswith("made val/test: stratified, seed 3") for n in ds.notes)


def test_images_labels_layout_without_yaml(tmp_path):
    make_yolo(tmp_path, STANDARD)
    (tmp_path / "data.yaml").unlink()
    ds = load_dataset(tmp_path)
    assert ds.format == "yolo" and ds.class_names == ["0", "1"]
    assert ds.counts()["train"] == {"normal": 2, "defect": 2}
    assert {c for s in ds.splits["train"] for c in s.defect_classes} == {"0", "1"}
    (tmp_path / "classes.txt").write_text("scratch\nbubble\n")
    assert load_dataset(tmp_path, normal_classes=["bubble"]).counts()["val"] == {"normal": 2, "defect": 0}


def test_label_files_missing_for_a_split_is_noted(tmp_path):
    make_yolo(tmp_path, {"train": {"a": None, "b": None}, "val": {"c": f"0 {BOX}\n"}})
    ds = load_dataset(tmp_path / "data.yaml", test_fraction=0)
    assert any("train: no label files found" in n and "labels/train/a.txt" in n for n in ds.notes)


# ------------------------------------------------------------------------------ bad input
BAD_LINES = [
    (f"0 {BOX}\n0 0.5 0.5 0.2\n", "labels/train/t1.txt:2: 4 fields; expected 5"),
    (f"0 {BOX}\n0 0.5 0.5 0.2 0.2 0.3\n", "labels/train/t1.txt:2: 6 fields"),
    ("0 0.5 abc 0.2 0.2\n", "labels/train/t1.txt:1: coordinate 'abc' is not a number"),
    ("x 0.5 0.5 0.2 0.2\n", "labels/train/t1.txt:1: class id 'x' is not a number"),
    (f"0 {BOX}\n7 {BOX}\n", "labels/train/t1.txt:2: class id 7 out of range (names has 2 classes)"),
    (f"-1 {BOX}\n", "labels/train/t1.txt:1: class id -1 is not a non-negative integer"),
    (f"1.5 {BOX}\n", "labels/train/t1.txt:1: class id 1.5 is not a non-negative integer"),
    ("0 1.5 0.5 0.2 0.2\n", "labels/train/t1.txt:1: coordinate 1.5 outside [0, 1]"),
    ("0 0.5 -0.01 0.2 0.2\n", "labels/train/t1.txt:1: coordinate -0.01 outside [0, 1]"),
    (f"\n\n1 {POLY} 2.0 0.5\n", "labels/train/t1.txt:3: coordinate 2.0 outside [0, 1]"),
]


@pytest.mark.parametrize("label, message", BAD_LINES)
def test_bad_label_lines(tmp_path, label, message):
    layout = {"train": {"t0": "", "t1": label}}
    with pytest.raises(EdgeSealantError) as info:
        load_dataset(make_yolo(tmp_path, layout))
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_tiny_overshoot_is_clipped_not_fatal():
    parsed = parse_label_text(f"0 1.0000001 0.5 0.2 0.2\n0 {BOX}\n0 {BOX}\n", 1, "labels/x.txt")
    assert parsed.class_ids == [0, 0, 0]
    assert parsed.problems == ["labels/x.txt:1: coordinates slightly outside [0, 1] clipped", "labels/x.txt:3: duplicate of line 2"]


BAD_YAML = [
    ("path: .\nval: images/train\nnames: [a]\n", "data.yaml: missing key 'train'"),
    ("path: .\ntrain: images/train\nval: images/nope\nnames: [a]\n", "data.yaml:3: val path 'images/nope' does not exist"),
    ("path: .\ntrain: images/train\nnames: [a, b\nnc: 2\n", "data.yaml:4: YAML does not parse"),
    ("path: .\ntrain: images/train\nnc: 3\nnames: [a, b]\n", "data.yaml:3: nc is 3 but names has 2 entries"),
    ("path: nowhere\ntrain: images/train\nnames: [a]\n", "data.yaml:1: path 'nowhere' not found relative to the yaml folder, its parent or the current folder"),
    ("path: .\ntrain: images/train\nnames: {0: a, 2: c}\n", "data.yaml:3: names must cover class ids 0..1; id 1 is missing"),
    ("- just\n- a list\n", "data.yaml: expected a mapping"),
    ("path: .\ntrain: images/empty\nnames: [a]\n", "data.yaml:2: no images in train path(s)"),
]


@pytest.mark.parametrize("text, message", BAD_YAML)
def test_bad_yaml(tmp_path, text, message):
    make_yolo(tmp_path, {"train": {"a": f"0 {BOX}\n"}})
    (tmp_path / "images" / "empty").mkdir()
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(EdgeSealantError) as info:
        load_dataset(tmp_path / "data.yaml")
    text_msg = str(info.value)
    assert "\n" not in text_msg
    assert text_msg.startswith(str(tmp_path / message.split(":")[0])), text_msg
    assert message in text_msg.replace(str(tmp_path) + "/", ""), text_msg


def test_bad_txt_list_names_file_and_line(tmp_path):
    _dataset_tree(tmp_path)
    (tmp_path / "train.txt").write_text("images/train/a.png\nimages/train/missing.png\n")
    (tmp_path / "data.yaml").write_text("train: train.txt\nnames: [a]\n")
    with pytest.raises(EdgeSealantError, match=r"^train.txt:2: image 'images/train/missing.png' does not exist$"):
        load_dataset(tmp_path / "data.yaml")


def test_unknown_normal_class(tmp_path):
    with pytest.raises(EdgeSealantError, match=r"data.yaml:\d+: normal class 'dent' is not in names \(scratch, bubble\)"):
        load_dataset(make_yolo(tmp_path, STANDARD), normal_classes=["dent"])


def test_no_images_and_missing_source(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeSealantError, match="no images found"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(EdgeSealantError, match="no such file or folder"):
        load_dataset(tmp_path / "nothing.yaml")
    (tmp_path / "normal").mkdir()
    (tmp_path / "defect").mkdir()
    with pytest.raises(EdgeSealantError, match="no train images"):
        load_dataset(tmp_path)


# ------------------------------------------------------------------------------ real data
@pytest.mark.skipif(not MAGNETIC_TILE.exists(), reason="magnetic-tile dataset not present")
def test_magnetic_tile_counts():
    ds = load_dataset(MAGNETIC_TILE)
    assert ds.class_names == ["blowhole", "break", "crack", "fray", "uneven"]
    assert ds.counts() == {
        "train": {"normal": 926 - 259, "defect": 259},
        "val": {"normal": 211 - 67, "defect": 67},
        "test": {"normal": 207 - 66, "defect": 66},
    }
