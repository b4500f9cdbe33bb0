"""Dataset audit: counts, boxes per class, image sizes and frame shapes, unreadable files, label problems, leakage.

``audit_dataset`` returns a JSON-able dict (its shape is a contract other code relies on);
``edge-sealant data inspect`` renders it (``cli/data.py``). Each image is decoded and hashed once by
:mod:`edge_sealant.data.fingerprint` (shared with the grouped splitter and the leak check).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from edge_sealant.card import RESIZE_MODES
from edge_sealant.data.fingerprint import NEAR_DUPLICATE_DISTANCE, fingerprints, near_pairs, popcount
from edge_sealant.data.labels import label_path_for, read_label_file
from edge_sealant.data.paths import relative
from edge_sealant.data.scale import DEFAULT_INPUT, DefectScale, defect_scale_of_images
from edge_sealant.data.types import SPLITS, LabelledDataset
from edge_sealant.errors import EdgeSealantError
from edge_sealant.preprocess import content_box

MAX_LISTED = 1000  # pairs / problems listed in the JSON; the counts are always complete
SPLIT_ORDER = {name: i for i, name in enumerate(SPLITS)}


# ------------------------------------------------------------------------------ audit
def _capped(items: list[Any]) -> list[Any]:
    if len(items) <= MAX_LISTED:
        return items
    return items[:MAX_LISTED] + [f"... and {len(items) - MAX_LISTED} more"]


def _label_stats(dataset: LabelledDataset) -> tuple[dict, dict, list[str]]:
    names = dataset.class_names
    boxes: dict[str, dict[str, int]] = {}
    images: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    if dataset.format != "yolo":
        return boxes, images, problems
    label_dirs: set[Path] = set()
    label_files: set[Path] = set()
    for split, samples in dataset.splits.items():
        if not samples:
            continue
        box_count: Counter[str] = Counter()
        image_count: Counter[str] = Counter()
        for sample in samples:
            label_path = label_path_for(sample.path)
            label_files.add(label_path)
            label_dirs.add(label_path.parent)
            try:
                parsed = read_label_file(label_path, None, relative(label_path, dataset.root))
            except EdgeSealantError as exc:  # changed since loading
                problems.append(str(exc))
                continue
            if parsed is None:
                continue
            problems.extend(parsed.problems)
            line_names = [names[c] if c < len(names) else str(c) for c in parsed.class_ids]
            box_count.update(line_names)
            image_count.update(set(line_names))
        order = {n: i for i, n in enumerate(names)}
        boxes[split] = {n: box_count[n] for n in sorted(box_count, key=lambda n: order.get(n, len(order)))}
        images[split] = {n: image_count[n] for n in sorted(image_count, key=lambda n: order.get(n, len(order)))}
    orphans = []
    for folder in sorted(label_dirs):
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.name.endswith(".txt") and entry.name != "classes.txt" and Path(entry.path) not in label_files:
                orphans.append(f"{relative(Path(entry.path), dataset.root)}: label file without an image")
    problems.extend(sorted(orphans))
    return boxes, images, problems


def audit_dataset(
    dataset: LabelledDataset,
    near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE,
    workers: int | None = None,
    input_size: tuple[int, int] = DEFAULT_INPUT,
    resize_mode: str = "stretch",
    stride: int = 16,
) -> dict[str, Any]:
    """Decode every image once and report what could hurt training or inflate metrics.

    ``input_size`` (height, width), ``resize_mode`` and ``stride`` describe the model the data
    is meant for: the labelled defects are measured against one heatmap cell there.
    """
    if resize_mode not in RESIZE_MODES:
        raise EdgeSealantError(f"resize mode {resize_mode!r} is not one of {', '.join(RESIZE_MODES)}")
    entries = [(split, sample) for split in SPLITS for sample in dataset.splits.get(split, [])]
    entries += [(split, s) for split, v in dataset.splits.items() if split not in SPLITS for s in v]
    infos = fingerprints([sample.path for _, sample in entries], workers)
    present = [split for split, samples in dataset.splits.items() if samples]
    counts = dataset.counts()
    boxes, images_per_class, label_problems = _label_stats(dataset)
    unreadable, sizes = _sizes_and_unreadable(entries, infos, present, dataset.root)
    exact, near = _duplicate_pairs(entries, infos, dataset.root, near_duplicate_distance)
    warnings = _warnings(dataset, counts, present, exact, near, near_duplicate_distance, unreadable, label_problems, images_per_class)
    scale = _defect_scale(entries, infos, input_size, resize_mode, stride)
    if scale is not None and scale.needs_larger_input:
        warnings.append(scale.advice())
    shapes = frame_shapes(entries, infos)
    warnings.extend(frame_shape_warnings(shapes, resize_mode))
    return {
        "root": str(dataset.root),
        "format": dataset.format,
        "notes": list(dataset.notes),
        "grouping": dict(dataset.grouping),
        "class_names": list(dataset.class_names),
        "normal_classes": list(dataset.normal_classes),
        "splits": {split: counts[split] for split in present},
        "boxes_per_class": boxes,
        "images_per_class": images_per_class,
        "image_size": sizes,
        "unreadable": _capped(unreadable),
        "label_problems": _capped(label_problems),
        "duplicates": _duplicate_summary(exact, near, near_duplicate_distance),
        "defect_scale": {**scale.to_dict(), "resize_mode": resize_mode} if scale is not None else None,
        "frame_shapes": shapes,
        "warnings": warnings,
    }


def _defect_scale(
    entries: list[tuple[str, Any]], infos: list[Any], input_size: tuple[int, int], resize_mode: str, stride: int
) -> DefectScale | None:
    """The labelled regions of every readable image, measured at ``input_size`` (data.scale)."""
    images = [
        (sample, content_box(info.hw, input_size, resize_mode)[2:], info.hw)
        for (_, sample), info in zip(entries, infos)
        if not info.error and info.hw is not None
    ]
    return defect_scale_of_images(images, input_size, stride, resize_mode)


# A val/test image is "shaped unlike train" when its aspect ratio (width / height) lies more than
# this factor outside the range of the train images of its class; a class is reported when at
# least half of its (>= 3) images there are. Why it matters: the stretch resize distorts each
# image by its own aspect ratio, and letterboxing scales it by its longer side, so a defect in a
# frame of another shape reaches the net thinner, wider or smaller than every training example
# of its kind. One camera and one frame size never trigger it.
SHAPE_TOLERANCE = 1.25
SHAPE_MIN_IMAGES = 3


def frame_shapes(entries: list[tuple[str, Any]], infos: list[Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per split and class (each defect class, and ``normal``): images, aspect ratio range
    (width / height), and for val/test how many lie outside train's range for that class by
    more than :data:`SHAPE_TOLERANCE` (None when train has no image of the class)."""
    aspects: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (split, sample), info in zip(entries, infos):
        if info.error:
            continue
        ratio = info.hw[1] / info.hw[0]
        for name in sample.defect_classes or (("normal",) if sample.label == 0 else ("defect",)):  # ImageFolder: no class names
            aspects[split][name].append(ratio)
    train = aspects.get("train", {})
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for split, classes in aspects.items():
        out[split] = {}
        for name, ratios in sorted(classes.items()):
            row: dict[str, Any] = {"images": len(ratios), "aspect_range": [round(min(ratios), 2), round(max(ratios), 2)]}
            if split != "train":
                low, high = (min(train[name]) / SHAPE_TOLERANCE, max(train[name]) * SHAPE_TOLERANCE) if name in train else (None, None)
                row["outside_train"] = None if low is None else sum(not low <= r <= high for r in ratios)
            out[split][name] = row
    return out


def frame_shape_warnings(shapes: dict[str, dict[str, dict[str, Any]]], resize_mode: str) -> list[str]:
    """One warning per val/test class whose images are mostly shaped unlike train's of that class."""
    effect = "distorts" if resize_mode == "stretch" else "scales"
    out = []
    for split in ("val", "test"):
        for name, row in shapes.get(split, {}).items():
            outside = row.get("outside_train")
            if outside is None or row["images"] < SHAPE_MIN_IMAGES or outside * 2 < row["images"]:
                continue
            out.append(
                f"{split}: {outside} of {row['images']} {name} images have frames {_span(row['aspect_range'])} wide per tall, outside "
                f"train's {name} range {_span(shapes['train'][name]['aspect_range'])}: the resize {effect} their defects unlike any training {name} image, "
                f"so {split}'s {name} figures also measure that shift"
            )
    return out


def _span(bounds: list[float]) -> str:
    low, high = bounds
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def _sizes_and_unreadable(
    entries: list[tuple[str, Any]], infos: list[Any], present: list[str], root: Path
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Files that would not decode, and min/max size and channel counts per split."""
    unreadable = []
    sizes: dict[str, dict[str, Any]] = {split: {"min_hw": None, "max_hw": None, "channels": []} for split in present}
    channels_seen: dict[str, set[int]] = defaultdict(set)
    for (split, sample), info in zip(entries, infos):
        if info.error:
            unreadable.append(f"{relative(sample.path, root)}: {info.error}")
            continue
        entry = sizes[split]
        h, w = info.hw
        entry["min_hw"] = [h, w] if entry["min_hw"] is None else [min(entry["min_hw"][0], h), min(entry["min_hw"][1], w)]
        entry["max_hw"] = [h, w] if entry["max_hw"] is None else [max(entry["max_hw"][0], h), max(entry["max_hw"][1], w)]
        channels_seen[split].add(info.channels)
    for split in present:
        sizes[split]["channels"] = sorted(channels_seen[split])
    return unreadable, sizes


def _duplicate_pairs(
    entries: list[tuple[str, Any]], infos: list[Any], root: Path, near_duplicate_distance: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Exact (identical bytes) and near (small pHash distance) pairs, cross-split pairs first."""
    rel_paths = [relative(sample.path, root) for _, sample in entries]
    splits_of = [split for split, _ in entries]

    def pair(i: int, j: int) -> dict[str, Any]:
        if SPLIT_ORDER.get(splits_of[j], 9) < SPLIT_ORDER.get(splits_of[i], 9):
            i, j = j, i
        return {"a": rel_paths[i], "b": rel_paths[j], "splits": [splits_of[i], splits_of[j]], "cross_split": splits_of[i] != splits_of[j]}

    by_sha: dict[str, list[int]] = defaultdict(list)
    for k, info in enumerate(infos):
        if info.sha1 is not None and not info.error:
            by_sha[info.sha1].append(k)
    exact = [pair(g[a], g[b]) for g in by_sha.values() if len(g) > 1 for a in range(len(g)) for b in range(a + 1, len(g))]
    hashed = [k for k, info in enumerate(infos) if info.phash is not None]
    hash_array = np.array([infos[k].phash for k in hashed], dtype=np.uint64)
    near = []
    for i, j, distance in near_pairs(hash_array, near_duplicate_distance):
        a, b = hashed[i], hashed[j]
        if infos[a].sha1 != infos[b].sha1:
            near.append({**pair(a, b), "distance": distance})
    exact.sort(key=lambda p: (not p["cross_split"], p["a"], p["b"]))
    near.sort(key=lambda p: (not p["cross_split"], p["distance"], p["a"], p["b"]))
    return exact, near


def _duplicate_summary(exact: list[dict], near: list[dict], near_duplicate_distance: int) -> dict[str, Any]:
    cross_exact = sum(p["cross_split"] for p in exact)
    cross_near = sum(p["cross_split"] for p in near)
    return {
        "exact": _capped(exact),
        "near": _capped(near),
        "cross_split_exact": cross_exact,
        "cross_split_near": cross_near,
        "within_split_exact": len(exact) - cross_exact,
        "within_split_near": len(near) - cross_near,
        "near_max_distance": near_duplicate_distance,
    }


def _warnings(
    dataset: LabelledDataset,
    counts: dict[str, dict[str, int]],
    present: list[str],
    exact: list[dict],
    near: list[dict],
    max_distance: int,
    unreadable: list[str],
    label_problems: list[str],
    images_per_class: dict[str, dict[str, int]],
) -> list[str]:
    out = []
    for kind, pairs in (("exact", exact), ("near", near)):
        by_split_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
        for p in pairs:
            if p["cross_split"]:
                by_split_pair[tuple(p["splits"])].add(p["b"])
        for (a, b), later in sorted(by_split_pair.items(), key=lambda kv: (SPLIT_ORDER.get(kv[0][0], 9), SPLIT_ORDER.get(kv[0][1], 9))):
            if kind == "exact":
                out.append(f"{len(later)} images appear in both {a} and {b} (exact duplicates): metrics on {b} are inflated")
            else:
                out.append(
                    f"{len(later)} {b} images are near duplicates of {a} images (pHash distance <= {max_distance}): metrics on {b} may be inflated"
                )
    within = sum(not p["cross_split"] for p in exact)
    if within:
        out.append(f"{within} exact duplicate pairs within a split")
    if unreadable:
        out.append(f"{len(unreadable)} images cannot be read or decoded: remove or fix them before training")
    if label_problems:
        out.append(f"{len(label_problems)} label problems (see label problems)")
    for split in present:
        c = counts[split]
        if c["defect"] == 0:
            out.append(f"{split} has no defect images: defect recall cannot be measured there")
        elif c["normal"] == 0:
            out.append(f"{split} has no normal images: false alarms cannot be measured there")
        elif split != "train" and c["defect"] < 20:
            out.append(f"{split} has only {c['defect']} defect images: recall moves in steps of {100 / c['defect']:.0f}%")
    normal = set(dataset.normal_classes)
    train_classes = set(images_per_class.get("train", {})) - normal
    for split in ("val", "test"):
        if split in images_per_class and counts.get(split, {}).get("defect"):
            absent = sorted(train_classes - set(images_per_class[split]))
            if absent:
                out.append(f"classes without {split} images (recall not measurable): {', '.join(absent)}")
    return out


def duplicated_elsewhere(
    dataset: LabelledDataset, split: str, max_distance: int = NEAR_DUPLICATE_DISTANCE, workers: int | None = None
) -> set[Path]:
    """Images of ``split`` with an exact or near duplicate in any other split.

    Metrics on the remaining images are the leak-free figures: a test image that is the same
    tile or bead as a training image, photographed again, measures memory, not inspection.
    """
    target = dataset.splits.get(split, [])
    others = [s for name, samples in dataset.splits.items() if name != split for s in samples]
    if not target or not others:
        return set()
    infos = fingerprints([s.path for s in target + others], workers)
    mine, theirs = infos[: len(target)], infos[len(target) :]
    other_sha = {info.sha1 for info in theirs if info.sha1}
    other_hash = np.array([info.phash for info in theirs if info.phash is not None], dtype=np.uint64)
    leaked = set()
    for sample, info in zip(target, mine):
        if info.sha1 in other_sha:
            leaked.add(sample.path)
        elif info.phash is not None and len(other_hash):
            if popcount(other_hash ^ np.uint64(info.phash)).min() <= max_distance:
                leaked.add(sample.path)
    return leaked
