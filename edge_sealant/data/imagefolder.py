"""ImageFolder layouts: ``ROOT/{train,val,test}/{normal,defect}/`` or ``ROOT/{normal,defect}/``.

``good``/``ok`` mean normal, ``ng``/``bad`` mean defect (case-insensitive); other folders are
ignored and named in the dataset notes.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from edge_sealant.data.paths import (
    DEFECT_ALIASES,
    NORMAL_ALIASES,
    SPLIT_ALIASES,
    relative,
    scan_images,
)
from edge_sealant.data.types import DEFECT, NORMAL, Sample
from edge_sealant.errors import EdgeSealantError


def _class_dirs(folder: Path) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = {}
    for child in sorted(folder.iterdir()):
        if not child.is_dir():
            continue
        key = child.name.lower()
        if key in NORMAL_ALIASES:
            out.setdefault(NORMAL, []).append(child)
        elif key in DEFECT_ALIASES:
            out.setdefault(DEFECT, []).append(child)
    return out


def imagefolder_splits(root: Path, notes: list[str]) -> dict[str, list[Sample]] | None:
    split_dirs: dict[str, list[Path]] = defaultdict(list)
    for child in sorted(root.iterdir()):
        split = SPLIT_ALIASES.get(child.name.lower())
        if child.is_dir() and split:
            split_dirs[split].append(child)
    layout: dict[str, dict[int, list[Path]]] = {}
    for split, dirs in split_dirs.items():
        merged: dict[int, list[Path]] = {}
        for d in dirs:
            for label, class_dirs in _class_dirs(d).items():
                merged.setdefault(label, []).extend(class_dirs)
        if merged:
            layout[split] = merged
    if not layout:
        top = _class_dirs(root)
        if not top:
            return None
        layout = {"train": top}
        notes.append("ImageFolder without split folders: all images start in train")
    splits: dict[str, list[Sample]] = {}
    for split, by_label in layout.items():
        samples = []
        for label, dirs in by_label.items():
            for d in dirs:
                samples.extend(Sample(path=p, label=label) for p in scan_images(d))
        splits[split] = samples
    ignored = sorted(
        relative(c, root)
        for split, dirs in split_dirs.items()
        for d in dirs
        for c in d.iterdir()
        if c.is_dir() and c.name.lower() not in NORMAL_ALIASES | DEFECT_ALIASES
    )
    if ignored:
        notes.append(f"ignored folders that are neither normal nor defect: {', '.join(ignored[:5])}" + (" ..." if len(ignored) > 5 else ""))
    if not splits.get("train"):
        raise EdgeSealantError(f"{root}: ImageFolder layout has no train images (splits: {', '.join(splits) or 'none'})")
    return splits
