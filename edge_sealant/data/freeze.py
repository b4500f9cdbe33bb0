"""``edge-sealant data split``: freeze a leak-free split as a dataset of its own.

All images of DATA (every split it has) are pooled, grouped (exact and near duplicates,
optional ``--group-by`` name key; see :mod:`edge_sealant.data.groups`) and dealt to
train/val/test, stratified and seeded. The result is written as a new dataset of links (or
copies) with a ``split.json`` manifest listing every file, its group, label and SHA-1, so the
split used on Colab and on the line PC is the same file list, byte for byte.

YOLO in, YOLO out (``images/<split>/`` + ``labels/<split>/`` + ``data.yaml``); ImageFolder in,
ImageFolder out (``<split>/{normal,defect}/``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_sealant.card import atomic_write_text, check_new_folder, normal_permissions
from edge_sealant.data.fingerprint import fingerprints
from edge_sealant.data.groups import grouped_split
from edge_sealant.data.labels import label_path_for
from edge_sealant.data.loading import SplitSettings, load_dataset
from edge_sealant.data.types import DEFECT, SPLITS, LabelledDataset, Sample

MANIFEST = "split.json"


@dataclass
class SplitResult:
    """Where the frozen dataset is, its counts per split and how it was grouped."""

    out: Path
    data: Path  # data.yaml (YOLO) or the folder (ImageFolder): what to pass as DATA
    counts: dict[str, dict[str, int]]
    grouping: dict[str, Any]
    manifest: Path


def _unique_names(samples: list[Sample], root: Path) -> dict[Path, str]:
    """File name in the new dataset: the original name, prefixed by its folders on a clash."""
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for sample in samples:
        name = sample.path.name
        if name in taken:
            try:
                relative = sample.path.relative_to(root)
            except ValueError:
                relative = Path(*sample.path.parts[-3:])
            name = "__".join(relative.parts)
        while name in taken:
            name = f"{sample.path.stem}_{len(taken)}{sample.path.suffix}"
        taken.add(name)
        names[sample.path] = name
    return names


def _place(source: Path, target: Path, copy: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(source, target)
    else:
        os.symlink(os.path.abspath(source), target)


def split_dataset(
    data: str | Path,
    out: str | Path,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    group_by: str | None = None,
    max_group_size: int | None = None,
    normal_classes: list[str] | None = None,
    copy: bool = False,
) -> SplitResult:
    """Pool every image of ``data``, split it grouped and stratified, and write it to ``out``."""
    out = Path(out)
    settings = SplitSettings(seed=seed, val_fraction=val, test_fraction=test, group_by=group_by, max_group_size=max_group_size)
    settings.check()
    check_new_folder(out, "choose a new folder")
    source = load_dataset(data, normal_classes=normal_classes, val_fraction=0, test_fraction=0)
    pool = [s for split in SPLITS for s in source.splits.get(split, [])]
    shares = {"train": 1.0 - val - test, "val": val, "test": test}
    parts, grouping = grouped_split(pool, {k: v for k, v in shares.items() if v > 0}, seed=seed,
                                    group_by=group_by, max_group_size=max_group_size)
    ordered = sorted(pool, key=lambda s: str(s.path))
    group_of = {s.path: g for s, g in zip(ordered, grouping.group_of)}
    sha1 = {s.path: info.sha1 for s, info in zip(ordered, fingerprints([s.path for s in ordered]))}
    names = _unique_names(ordered, source.root)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = normal_permissions(Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)))
    try:  # built aside and renamed at the end: a failure leaves no half-written dataset
        files = []
        for split in SPLITS:
            for sample in parts.get(split, []):
                files.append(_write_sample(source, sample, split, names[sample.path], work, copy))
                files[-1].update(group=group_of[sample.path], sha1=sha1[sample.path])
        _write_index(source, work)
        counts = {split: _count(parts.get(split, [])) for split in SPLITS}
        manifest = {
            "source": str(source.root),
            "format": source.format,
            "source_splits_pooled": {k: len(v) for k, v in source.splits.items() if v},
            "settings": {**dataclasses.asdict(settings), "normal_classes": list(source.normal_classes), "mode": "copy" if copy else "symlink"},
            "counts": counts,
            "grouping": grouping.summary(),
            "files": files,
        }
        atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    data_path = out / "data.yaml" if source.format == "yolo" else out
    return SplitResult(out=out, data=data_path, counts=counts, grouping=grouping.summary(), manifest=out / MANIFEST)


def _count(samples: list[Sample]) -> dict[str, int]:
    defect = sum(s.label == DEFECT for s in samples)
    return {"normal": len(samples) - defect, "defect": defect}


def _write_sample(source: LabelledDataset, sample: Sample, split: str, name: str, out: Path, copy: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"split": split, "file": None, "source": str(sample.path), "label": sample.label}
    if source.format == "yolo":
        image = out / "images" / split / name
        _place(sample.path, image, copy)
        label_source = label_path_for(sample.path)
        if label_source.is_file():
            _place(label_source, label_path_for(image), copy)
    else:
        image = out / split / ("defect" if sample.label == DEFECT else "normal") / name
        _place(sample.path, image, copy)
    entry["file"] = image.relative_to(out).as_posix()
    return entry


def _write_index(source: LabelledDataset, out: Path) -> None:
    if source.format != "yolo":
        return
    index = {"path": ".", **{split: f"images/{split}" for split in SPLITS}, "names": dict(enumerate(source.class_names))}
    text = "# written by 'edge-sealant data split'; split.json lists every file\n" + yaml.safe_dump(index, sort_keys=False)
    atomic_write_text(out / "data.yaml", text)
