"""The synthetic sealant-bead dataset: layout, labels, determinism, argument checks, speed."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sealant.data.synth import CLASSES, render, synthesize
from edge_sealant.errors import EdgeSealantError

SMALL = dict(n=40, defect_ratio=0.3, size=(96, 48))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _labels(root: Path, split: str) -> dict[str, list[list[float]]]:
    out = {}
    for path in sorted((root / "labels" / split).glob("*.txt")):
        out[path.stem] = [[float(v) for v in line.split()] for line in path.read_text().splitlines()]
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "ds"
    return root, synthesize(root, seed=3, **SMALL)


def test_layout_and_yaml(dataset):
    root, summary = dataset
    assert summary["path"] == str(root / "data.yaml")
    assert summary["classes"] == list(CLASSES) == ["gap", "thinning", "bubble", "smear", "offset"]
    text = (root / "data.yaml").read_text()
    for line in ("path: .", "train: images/train", "val: images/val", "test: images/test", "nc: 5"):
        assert line in text.splitlines()
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(text)["names"] == list(CLASSES)
    for split in ("train", "val", "test"):
        images = sorted(p.stem for p in (root / "images" / split).glob("*.jpg"))
        labels = sorted(p.stem for p in (root / "labels" / split).glob("*.txt"))
        assert images == labels and images


def test_counts_are_exact_and_stratified(dataset):
    root, summary = dataset
    counts = summary["counts"]
    assert summary["images"] == 40
    assert sum(c["normal"] + c["defect"] for c in counts.values()) == 40
    assert sum(c["defect"] for c in counts.values()) == round(40 * 0.3)
    assert [counts[s]["normal"] + counts[s]["defect"] for s in ("train", "val", "test")] == [28, 6, 6]
    assert [counts[s]["defect"] for s in ("train", "val", "test")] == [8, 2, 2]
    for split, c in counts.items():  # the label files agree with the summary
        labels = _labels(root, split)
        assert sum(1 for rows in labels.values() if rows) == c["defect"]
        assert sum(1 for rows in labels.values() if not rows) == c["normal"]


def test_label_lines_parse_and_lie_in_the_frame(dataset):
    root, _ = dataset
    seen = set()
    for split in ("train", "val", "test"):
        for rows in _labels(root, split).values():
            assert len(rows) <= 2
            for cls, cx, cy, w, h in rows:
                assert cls == int(cls) and 0 <= cls < len(CLASSES)
                seen.add(int(cls))
                assert w > 0 and h > 0
                assert 0 <= cx - w / 2 + 1e-6 and cx + w / 2 - 1e-6 <= 1
                assert 0 <= cy - h / 2 + 1e-6 and cy + h / 2 - 1e-6 <= 1
    assert seen == set(range(len(CLASSES)))  # 12 defect images cover all 5 classes


def test_images_are_tall_colour_jpegs(dataset):
    root, _ = dataset
    path = next((root / "images" / "train").glob("*.jpg"))
    image = cv2.imread(str(path))
    assert image.shape == (96, 48, 3)
    assert image.std() > 3  # not a blank frame


def test_same_seed_same_bytes_other_seed_differs(tmp_path, dataset):
    root, _ = dataset
    synthesize(tmp_path / "again", seed=3, **SMALL)
    synthesize(tmp_path / "other", seed=4, **SMALL)
    assert _files(tmp_path / "again") == _files(root)
    assert _files(tmp_path / "other") != _files(root)


def test_defect_pixels_differ_from_the_clean_frame():
    """Rendering with and without a defect from the same stream changes pixels in the box."""
    for cls in range(len(CLASSES)):
        clean, _ = render(np.random.default_rng([1, cls]), 320, 112, [])
        with_defect, boxes = render(np.random.default_rng([1, cls]), 320, 112, [cls])
        (got, x0, y0, x1, y1), = boxes
        assert got == cls and x1 > x0 and y1 > y0
        diff = np.abs(clean.astype(int) - with_defect.astype(int)).max(axis=2) > 12
        inside = diff[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))].sum()
        assert inside > 0 and inside >= 0.8 * diff.sum(), CLASSES[cls]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n=9),
        dict(n=40.0),
        dict(defect_ratio="lots"),
        dict(defect_ratio=-0.1),
        dict(defect_ratio=1.5),
        dict(size=(31, 48)),
        dict(size=(96, 20)),
        dict(size="big"),
        dict(split_fractions=(0, 0.5, 0.5)),
        dict(split_fractions=(0.5, 0.5)),
        dict(split_fractions=(0.8, -0.1, 0.3)),
        dict(jpeg_quality=0),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs):
    args = {**SMALL, **kwargs}
    with pytest.raises(EdgeSealantError) as err:
        synthesize(tmp_path / "ds", **args)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_refuses_non_empty_output(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep.txt").write_text("mine")
    with pytest.raises(EdgeSealantError, match="not empty"):
        synthesize(tmp_path / "ds", **SMALL)
    assert (tmp_path / "ds" / "keep.txt").read_text() == "mine"
    synthesize(tmp_path / "empty_ok", **SMALL)  # an absent folder is fine
    (tmp_path / "empty").mkdir()
    synthesize(tmp_path / "empty", **SMALL)  # and so is an empty one


def test_all_normal_and_all_defect(tmp_path):
    none = synthesize(tmp_path / "none", n=10, defect_ratio=0.0, size=(64, 32))
    assert sum(c["defect"] for c in none["counts"].values()) == 0
    every = synthesize(tmp_path / "all", n=10, defect_ratio=1.0, size=(64, 32))
    assert sum(c["normal"] for c in every["counts"].values()) == 0


def test_train_only_split(tmp_path):
    summary = synthesize(tmp_path / "ds", n=10, size=(64, 32), split_fractions=(1, 0, 0))
    assert summary["counts"]["train"] == {"normal": 7, "defect": 3}
    assert summary["counts"]["val"] == summary["counts"]["test"] == {"normal": 0, "defect": 0}
    assert (tmp_path / "ds" / "images" / "val").is_dir()  # data.yaml names it, so it exists


def test_hundred_images_are_fast(tmp_path):
    start = time.perf_counter()
    synthesize(tmp_path / "ds", n=100, size=(320, 112))
    assert time.perf_counter() - start < 10


def test_defect_scale_shrinks_defects_and_keeps_normal_frames(tmp_path):
    from edge_sealant.data.synth import synthesize

    base = synthesize(tmp_path / "a", n=30, defect_ratio=0.5, size=(256, 96), seed=4)
    small = synthesize(tmp_path / "b", n=30, defect_ratio=0.5, size=(256, 96), seed=4, defect_scale=0.3)
    assert small["defect_area"]["median"] < 0.4 * base["defect_area"]["median"]
    normal_a = sorted((tmp_path / "a" / "labels").rglob("*.txt"))
    normal = [p for p in normal_a if not p.read_text().strip()]
    assert normal  # frames without defects are the same bytes at any defect scale
    for label in normal[:5]:
        image = label.parent.parent.parent / "images" / label.parent.name / (label.stem + ".jpg")
        twin = tmp_path / "b" / image.relative_to(tmp_path / "a")
        assert image.read_bytes() == twin.read_bytes()
    with pytest.raises(EdgeSealantError, match="defect_scale"):
        synthesize(tmp_path / "c", n=10, defect_scale=0.0)
