"""Grouped splitting: duplicates and --group-by keys never cross splits; chains are bounded."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sealant.cli import app
from edge_sealant.data import groups as groups_module
from edge_sealant.data.audit import audit_dataset
from edge_sealant.data.fingerprint import ImageInfo
from edge_sealant.data.groups import assign_groups, find_groups, group_kfold
from edge_sealant.data.loading import load_dataset
from edge_sealant.data.types import Sample
from edge_sealant.errors import EdgeSealantError

runner = CliRunner()
BOX = "0.5 0.5 0.2 0.2"


def scene(seed: int, size: int = 48) -> np.ndarray:
    """A distinct structured picture per seed (random blobs on a gradient): distinct pHashes."""
    rng = np.random.default_rng(seed)
    image = np.tile(np.linspace(0, 120, size, dtype=np.float32), (size, 1))
    for _ in range(6):
        x, y, r = rng.integers(4, size - 4, 2).tolist() + [int(rng.integers(3, 9))]
        cv2.circle(image, (x, y), r, float(rng.integers(130, 255)), -1)
    return cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_GRAY2BGR)


def planted_dataset(root: Path, n: int = 80) -> tuple[Path, list[tuple[str, str]]]:
    """Train-only YOLO set with planted exact copies and re-exposed (brighter) near copies."""
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    planted = []
    for i in range(n):
        picture = scene(i)
        defect = i % 3 == 0
        names = [f"img{i:03d}"]
        if i % 8 == 0:
            names.append(f"copy{i:03d}")  # the same file again
        if i % 8 == 4:
            names.append(f"bright{i:03d}")  # the same part under another exposure
        for name in names:
            shown = cv2.add(picture, 12) if name.startswith("bright") else picture
            cv2.imwrite(str(images / f"{name}.png"), shown)
            (labels / f"{name}.txt").write_text(f"{i % 2} {BOX}\n" if defect else "")
        planted += [(names[0], other) for other in names[1:]]
    (root / "data.yaml").write_text("train: images/train\nnames: [scratch, bubble]\n")
    return root / "data.yaml", planted


def split_of(dataset) -> dict[str, str]:
    return {s.path.stem: split for split, samples in dataset.splits.items() for s in samples}


def test_carved_split_keeps_planted_duplicates_together(tmp_path):
    data, planted = planted_dataset(tmp_path)
    for seed in range(3):
        dataset = load_dataset(data, seed=seed)
        where = split_of(dataset)
        assert all(where[a] == where[b] for a, b in planted)
        duplicates = audit_dataset(dataset)["duplicates"]
        assert duplicates["cross_split_exact"] == 0 and duplicates["cross_split_near"] == 0
        assert duplicates["within_split_exact"] + duplicates["within_split_near"] >= len(planted)
    assert dataset.grouping["multi_image_groups"] >= len(planted)
    assert dataset.summary()["split_settings"]["seed"] == 2


def test_group_by_regex_keeps_a_part_together(tmp_path):
    images, labels = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for part in range(20):
        for view in range(3):
            cv2.imwrite(str(images / f"part{part:02d}_view{view}.png"), scene(part * 10 + view))
            (labels / f"part{part:02d}_view{view}.txt").write_text(f"0 {BOX}\n" if part % 4 == 0 else "")
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: [scratch]\n")
    dataset = load_dataset(tmp_path / "data.yaml", group_by=r"^(part\d+)_")
    where = split_of(dataset)
    for part in range(20):
        assert len({where[f"part{part:02d}_view{v}"] for v in range(3)}) == 1
    assert dataset.grouping["largest_group"] == 3 and dataset.grouping["group_by"] == r"^(part\d+)_"
    with pytest.raises(EdgeSealantError, match="not a regular expression"):
        load_dataset(tmp_path / "data.yaml", group_by="(unclosed")


def fake_samples(n: int, defect_every: int = 4) -> list[Sample]:
    return [Sample(Path(f"/x/img{i:03d}.png"), int(i % defect_every == 0), ("scratch",) if i % defect_every == 0 else ()) for i in range(n)]


def test_near_duplicate_chains_are_cut_to_the_bound(monkeypatch):
    # image k has its first k bits set: each is 1 bit from the next, so near links chain all 40
    infos = [ImageInfo(sha1=f"{k}", phash=(1 << k) - 1 if k else 0) for k in range(40)] + [ImageInfo(sha1="x", phash=(2**64 - 1) ^ (2**50 - 1))]  # far from all
    monkeypatch.setattr(groups_module, "fingerprints", lambda paths, workers=None: infos[: len(paths)])
    grouping = find_groups(fake_samples(41), max_group_size=10)
    assert grouping.largest <= 10
    assert grouping.split_chains and grouping.split_chains[0]["size"] == 40
    assert grouping.cut_pairs > 0  # reported: these near pairs may now cross splits
    unbounded = find_groups(fake_samples(41), max_group_size=100)
    assert unbounded.largest == 40 and not unbounded.split_chains


def test_exact_and_name_links_are_never_cut(monkeypatch):
    infos = [ImageInfo(sha1="same", phash=k * 0x0F0F0F0F) for k in range(30)]
    monkeypatch.setattr(groups_module, "fingerprints", lambda paths, workers=None: infos[: len(paths)])
    assert find_groups(fake_samples(30), max_group_size=5).largest == 30


def test_kfold_is_grouped_and_stratified(tmp_path):
    data, planted = planted_dataset(tmp_path, n=96)
    pool = load_dataset(data, val_fraction=0, test_fraction=0).splits["train"]
    folds, grouping = group_kfold(pool, 4, seed=1)
    stems = [{s.path.stem for s in fold} for fold in folds]
    assert sum(map(len, stems)) == len(pool) and len(set().union(*stems)) == len(pool)
    for a, b in planted:
        assert [a in f for f in stems] == [b in f for f in stems]
    share = sum(s.label for s in pool) / len(pool)
    for fold in folds:
        assert abs(sum(s.label for s in fold) / len(fold) - share) < 0.1
        assert len(fold) >= len(pool) // 4 - 3


def test_assign_groups_spreads_defect_classes_and_rejects_bad_shares():
    samples = [Sample(Path(f"/x/{i}.png"), 1, (("a", "b", "c")[i % 3],)) for i in range(60)] + fake_samples(60, 10**9)
    grouping = groups_module.Grouping(list(range(len(samples))), 4, None, 16)
    parts = assign_groups(samples, grouping, {"train": 0.7, "val": 0.15, "test": 0.15}, np.random.default_rng(0))
    for name in ("val", "test"):
        classes = [c for i in parts[name] for c in samples[i].defect_classes]
        assert {classes.count(c) for c in "abc"} == {3}  # 15% of 20 each, rounded half up
    with pytest.raises(EdgeSealantError, match="sum to 1"):
        assign_groups(samples, grouping, {"train": 0.7, "val": 0.2}, np.random.default_rng(0))


# ------------------------------------------------------------------------------ data split
def test_data_split_cli_writes_a_leak_free_dataset(tmp_path):
    data, planted = planted_dataset(tmp_path / "src")
    out = tmp_path / "frozen"
    result = runner.invoke(app, ["data", "split", str(data), str(out), "--val", "0.2", "--test", "0.2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    frozen = load_dataset(out / "data.yaml")
    where = split_of(frozen)
    assert all(where[a] == where[b] for a, b in planted)
    report = audit_dataset(frozen)
    assert report["duplicates"]["cross_split_exact"] == 0 and report["duplicates"]["cross_split_near"] == 0
    manifest = json.loads((out / "split.json").read_text())
    assert manifest["counts"] == frozen.counts()
    assert len(manifest["files"]) == sum(len(v) for v in frozen.splits.values())
    assert manifest["grouping"]["multi_image_groups"] >= len(planted)
    assert (out / "images" / "train").is_dir() and next((out / "images" / "train").iterdir()).is_symlink()
    labelled = [f for f in manifest["files"] if f["label"] == 1]
    assert labelled and all((out / f["file"].replace("images/", "labels/", 1)).with_suffix(".txt").exists() for f in labelled)
    again = runner.invoke(app, ["data", "split", str(data), str(out)])
    assert again.exit_code == 1 and "already exists" in again.output and "Traceback" not in again.output


def test_data_split_copy_is_reproducible_and_readable(tmp_path):
    data, _ = planted_dataset(tmp_path / "src", n=40)
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert runner.invoke(app, ["data", "split", str(data), str(out), "--copy"]).exit_code == 0
    files = lambda out: [(f["split"], f["file"], f["sha1"]) for f in json.loads((out / "split.json").read_text())["files"]]  # noqa: E731
    assert files(first) == files(second)
    image = next((first / "images" / "train").iterdir())
    assert not image.is_symlink()
    assert (first / "split.json").stat().st_mode & 0o044 == 0o044  # readable by a service account (umask 022)


def test_data_split_rejects_bad_fractions(tmp_path):
    data, _ = planted_dataset(tmp_path / "src", n=20)
    result = runner.invoke(app, ["data", "split", str(data), str(tmp_path / "o"), "--val", "0.6", "--test", "0.5"])
    assert result.exit_code == 1 and "leave no training images" in result.output
    assert not (tmp_path / "o").exists()
