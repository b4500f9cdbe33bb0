"""Load a YOLO or ImageFolder dataset as image-level normal/defect labels.

Nothing is decoded here (10k images load in about a second); ``edge_sealant.data.audit``
decodes, hashes and reports unreadable files. Every input problem becomes a one-line
:class:`EdgeSealantError` that names the file and line at fault.

Layouts, tried in this order when DATA is a folder:

* a YOLO ``data.yaml`` (or ``dataset.yaml``, or the folder's only ``*.yaml``);
* ImageFolder: ``ROOT/{train,val,test}/{normal,defect}/`` or ``ROOT/{normal,defect}/``
  (``good``/``ok`` mean normal, ``ng``/``bad`` mean defect, case-insensitive);
* YOLO ``images/`` + ``labels/`` without a yaml (class ids serve as names unless a
  ``classes.txt`` names them).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from edge_sealant.data.imagefolder import imagefolder_splits
from edge_sealant.data.labels import Shape, label_path_text, read_label_file
from edge_sealant.data.paths import SPLIT_ALIASES, absolute, image_path_texts, is_image_name, relative
from edge_sealant.data.types import DEFECT, NORMAL, SPLITS, LabelledDataset, Region, Sample
from edge_sealant.errors import EdgeSealantError

YAML_NAMES = ("data.yaml", "dataset.yaml")


def _yaml_key_line(text: str, key: str) -> int | None:
    match = re.search(rf"^{re.escape(key)}\s*:", text, flags=re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _at(name: str, text: str, key: str) -> str:
    line = _yaml_key_line(text, key)
    return f"{name}:{line}" if line else name


# ------------------------------------------------------------------------------ splitting
@dataclass(frozen=True)
class SplitSettings:
    """How missing splits are made: fractions, seed and what counts as one group."""

    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    group_by: str | None = None
    max_group_size: int | None = None

    def check(self) -> None:
        for name, fraction in (("val", self.val_fraction), ("test", self.test_fraction)):
            if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
                raise EdgeSealantError(f"{name} fraction {fraction} must be in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise EdgeSealantError(f"val fraction {self.val_fraction} + test fraction {self.test_fraction} leave no training images")
        if self.max_group_size is not None and self.max_group_size < 1:
            raise EdgeSealantError(f"--max-group {self.max_group_size} must be >= 1")
        from edge_sealant.data.groups import name_key_function

        name_key_function(self.group_by)  # a bad regex fails now, even when no split is made


def _complete_splits(
    splits: dict[str, list[Sample]], settings: SplitSettings, notes: list[str]
) -> tuple[dict[str, list[Sample]], dict[str, Any]]:
    """Carve missing val/test out of train, keeping every group of duplicates in one split."""
    from edge_sealant.data.groups import grouped_split

    settings.check()
    train = splits.get("train", [])
    have = {name for name in SPLITS if splits.get(name)}
    missing = {"val": settings.val_fraction, "test": settings.test_fraction}
    missing = {name: f for name, f in missing.items() if name not in have and f > 0}
    if not missing:
        return {name: splits.get(name, []) for name in SPLITS}, {}
    if have == {"train"}:
        fractions = missing
        described = ", ".join(f"{name} {f:g}" for name, f in fractions.items())
    else:
        # carve the missing split(s) out of train so that each is its fraction of all images
        total = sum(len(v) for v in splits.values())
        fractions = {name: min(0.5, f * total / max(1, len(train))) for name, f in missing.items()}
        described = ", ".join(f"{name} {missing[name]:g} of all images ({f:.3f} of train)" for name, f in fractions.items())
    if sum(fractions.values()) >= 1.0:
        raise EdgeSealantError(f"split fractions {fractions} leave no training images")
    shares = {"train": 1.0 - sum(fractions.values()), **fractions}
    made, grouping = grouped_split(
        train, shares, seed=settings.seed, group_by=settings.group_by, max_group_size=settings.max_group_size
    )
    summary = grouping.summary()
    notes.append(
        f"made {'/'.join(fractions)}: stratified, seed {settings.seed}, fractions {described}; grouped: "
        f"{summary['groups']} groups of duplicates{' and --group-by keys' if settings.group_by else ''}, largest {summary['largest_group']}"
    )
    if grouping.split_chains:
        notes.append(
            f"{len(grouping.split_chains)} near-duplicate chains over {grouping.max_group_size} images were cut apart "
            f"({grouping.cut_pairs} near pairs may cross splits; see the audit)"
        )
    result = {name: splits.get(name, []) for name in SPLITS}
    result.update(made)
    return result, summary


# ------------------------------------------------------------------------------ YOLO
def _class_names_from_yaml(data: dict[str, Any], name: str, text: str) -> list[str] | None:
    nc = data.get("nc")
    names = data.get("names")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 0):
        raise EdgeSealantError(f"{_at(name, text, 'nc')}: nc must be a non-negative integer, got {nc!r}")
    if names is None:
        return None if nc is None else [f"class{i}" for i in range(nc)]
    if isinstance(names, list):
        out = [str(n) for n in names]
    elif isinstance(names, dict):
        by_id: dict[int, str] = {}
        for key, value in names.items():
            try:
                idx = int(key)
                if isinstance(key, float) or idx < 0:
                    raise ValueError
            except (TypeError, ValueError):
                raise EdgeSealantError(f"{_at(name, text, 'names')}: names key {key!r} is not a class id (0, 1, ...)") from None
            by_id[idx] = str(value)
        gaps = [i for i in range(len(by_id)) if i not in by_id]
        if gaps:
            raise EdgeSealantError(
                f"{_at(name, text, 'names')}: names must cover class ids 0..{len(by_id) - 1}; id {gaps[0]} is missing"
            )
        out = [by_id[i] for i in range(len(by_id))]
    else:
        raise EdgeSealantError(f"{_at(name, text, 'names')}: names must be a list or a {{id: name}} mapping")
    if nc is not None and nc != len(out):
        raise EdgeSealantError(f"{_at(name, text, 'nc')}: nc is {nc} but names has {len(out)} entries")
    return out


def _resolve_root(data: dict[str, Any], yaml_path: Path, name: str, text: str, notes: list[str]) -> Path:
    yaml_dir = yaml_path.parent
    value = data.get("path")
    if value in (None, ""):
        notes.append("no 'path' in the yaml: dataset root is the yaml folder")
        return yaml_dir
    given = Path(os.path.expanduser(str(value)))
    train_entries = _entries(data.get("train"), "train", name, text)

    def train_found(root: Path) -> bool:
        return any(_find_entry(root, e)[0] is not None for e in train_entries)

    if given.is_absolute():
        if given.is_dir():
            return given
        if train_found(yaml_dir):  # an export made on another machine
            notes.append(f"path '{value}' does not exist here; using the yaml folder, where the splits are")
            return yaml_dir
        raise EdgeSealantError(f"{_at(name, text, 'path')}: path '{value}' does not exist")
    candidates = [
        (yaml_dir / given, "the yaml folder"),
        (yaml_dir.parent / given, "the yaml folder's parent (Ultralytics-style)"),
        (absolute(Path.cwd()) / given, "the current folder"),
    ]
    existing = [(Path(os.path.normpath(c)), how) for c, how in candidates if c.is_dir()]
    if not existing:
        raise EdgeSealantError(
            f"{_at(name, text, 'path')}: path '{value}' not found relative to the yaml folder, its parent or the current folder"
        )
    chosen = next(((c, how) for c, how in existing if train_found(c)), existing[0])
    notes.append(f"path '{value}' resolved relative to {chosen[1]}: {chosen[0]}")
    return chosen[0]


def _entries(value: Any, split: str, name: str, text: str) -> list[str]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (str, Path)) for v in items):
        raise EdgeSealantError(f"{_at(name, text, split)}: {split} must be a path or a list of paths")
    return [str(v) for v in items]


def _find_entry(root: Path, entry: str) -> tuple[Path | None, str | None]:
    """(existing path, note) for a split entry; Roboflow's '../train/images' also tried under root."""
    path = Path(os.path.expanduser(entry))
    if path.is_absolute():
        return (path, None) if path.exists() else (None, None)
    direct = Path(os.path.normpath(root / path))
    if direct.exists():
        return direct, None
    if entry.startswith("../"):
        inside = Path(os.path.normpath(root / entry[3:]))
        if inside.exists():
            return inside, f"'{entry}' not found; using '{entry[3:]}' under the dataset root (Roboflow-style export)"
    return None, None


def _images_from_list(list_file: Path, root: Path) -> list[str]:
    where = relative(list_file, root)
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeSealantError(f"{where}: cannot read image list ({exc})") from None
    out = []
    cwd, base, root_text = os.getcwd(), str(list_file.parent), str(root)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        item = os.path.expanduser(line)
        if os.path.isabs(item):
            candidates = [item]
        elif line.startswith("./"):
            candidates = [os.path.join(base, item)]
        else:
            candidates = [os.path.join(root_text, item), os.path.join(base, item), os.path.join(cwd, item)]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise EdgeSealantError(f"{where}:{lineno}: image '{line}' does not exist")
        out.append(os.path.normpath(found))
    return out


def _images_for_split(
    data: dict[str, Any], split: str, root: Path, name: str, text: str, notes: list[str]
) -> list[str] | None:
    entries = _entries(data.get(split), split, name, text)
    if not entries:
        return None
    images: list[str] = []
    for entry in entries:
        found, note = _find_entry(root, entry)
        if found is None:
            raise EdgeSealantError(f"{_at(name, text, split)}: {split} path '{entry}' does not exist (under {root})")
        if note:
            notes.append(f"{split}: {note}")
        if found.is_dir():
            images.extend(image_path_texts(found))
        elif found.suffix.lower() == ".txt":
            images.extend(_images_from_list(found, root))
        elif is_image_name(found.name):
            images.append(str(found))
        else:
            raise EdgeSealantError(f"{_at(name, text, split)}: {split} path '{entry}' is neither a folder, a .txt list nor an image")
    return images


def _yolo_samples(
    images_per_split: dict[str, list[str]],
    root: Path,
    class_names: list[str] | None,
    normal_classes: list[str],
    notes: list[str],
) -> tuple[dict[str, list[Sample]], list[str]]:
    n_classes = len(class_names) if class_names is not None else None
    parsed: dict[str, list[tuple[str, list[int]]]] = {}
    max_id = -1
    listings: dict[str, set[str] | None] = {}  # one listdir per label folder spares a failed open per unlabelled image

    def may_exist(label_path: str) -> bool:
        folder, name = os.path.split(label_path)
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(folder or "."))
            except OSError:
                listings[folder] = None if os.path.exists(folder or ".") else set()
        names = listings[folder]
        return names is None or name in names
    for split, images in images_per_split.items():
        rows = []
        with_labels = 0
        for image in images:
            label_path = label_path_text(image)
            labels = read_label_file(label_path, n_classes, relative(label_path, root)) if may_exist(label_path) else None
            shapes = labels.shapes if labels is not None else []
            with_labels += labels is not None
            if shapes:
                max_id = max(max_id, max(shape.class_id for shape in shapes))
            rows.append((image, shapes))
        if images and not with_labels:
            example = relative(label_path_text(images[0]), root)
            notes.append(f"{split}: no label files found (looked for e.g. {example}): all {len(images)} images count as normal")
        parsed[split] = rows
    if class_names is None:
        class_names = [str(i) for i in range(max_id + 1)]
        notes.append("class names unknown: class ids are used as names")
        unknown = [c for c in normal_classes if not c.isdigit()]
        if unknown:
            raise EdgeSealantError(f"normal class '{unknown[0]}' is not a class id (the dataset has no class names)")
        normal_ids = {int(c) for c in normal_classes}
    else:
        normal_ids = {i for i, n in enumerate(class_names) if n in set(normal_classes)}
    splits: dict[str, list[Sample]] = {}
    for split, rows in parsed.items():
        samples = []
        for image, shapes in rows:
            samples.append(_sample(image, shapes, class_names, normal_ids))
        splits[split] = samples
    return splits, class_names


def _sample(image: str, shapes: list[Shape], class_names: list[str], normal_ids: set[int]) -> Sample:
    """An image's label and defect regions from its label lines (normal-class shapes ignored)."""
    def name(class_id: int) -> str:
        return class_names[class_id] if class_id < len(class_names) else str(class_id)

    defects = [shape for shape in shapes if shape.class_id not in normal_ids]
    return Sample(
        path=Path(image),
        label=DEFECT if defects else NORMAL,
        defect_classes=tuple(sorted({name(shape.class_id) for shape in defects})),
        boxes=len(shapes),
        regions=tuple(Region(name(shape.class_id), shape.kind, shape.points) for shape in defects),
    )


def _check_normal_classes(normal_classes: list[str], class_names: list[str] | None, where: str) -> None:
    if class_names is None:
        return
    known = set(class_names)
    for name in normal_classes:
        if name not in known:
            shown = ", ".join(class_names[:20]) + (", ..." if len(class_names) > 20 else "")
            raise EdgeSealantError(f"{where}: normal class '{name}' is not in names ({shown})")


def _load_yolo_yaml(yaml_path: Path, normal_classes: list[str], notes: list[str]) -> tuple[Path, list[str], list[str], dict]:
    name = str(yaml_path)
    try:
        text = yaml_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeSealantError(f"{name}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EdgeSealantError(f"{name}{line}: YAML does not parse ({problem})") from None
    if not isinstance(data, dict):
        raise EdgeSealantError(f"{name}: expected a mapping with path/train/val/test/names, got {type(data).__name__}")
    if not data.get("train"):
        raise EdgeSealantError(f"{name}: missing key 'train' (a folder, a .txt list of images, or a list of those)")
    class_names = _class_names_from_yaml(data, name, text)
    _check_normal_classes(normal_classes, class_names, _at(name, text, "names"))
    abs_yaml = absolute(yaml_path)
    root = _resolve_root(data, abs_yaml, name, text, notes)
    images = {}
    for split in SPLITS:
        found = _images_for_split(data, split, root, name, text, notes)
        if found is not None:
            images[split] = found
    if not images.get("train"):
        raise EdgeSealantError(f"{_at(name, text, 'train')}: no images in train path(s) {data.get('train')!r} (under {root})")
    splits, class_names = _yolo_samples(images, root, class_names, normal_classes, notes)
    return root, class_names, normal_classes, splits


def _yolo_without_yaml(
    root: Path, normal_classes: list[str], notes: list[str]
) -> tuple[dict[str, list[Sample]], list[str]] | None:
    images: dict[str, list[str]] = {}
    image_dir = root / "images"
    if image_dir.is_dir():
        for child in sorted(image_dir.iterdir()):
            split = SPLIT_ALIASES.get(child.name.lower())
            if child.is_dir() and split:
                images.setdefault(split, []).extend(image_path_texts(child))
        if not images:
            images["train"] = image_path_texts(image_dir)
    else:
        for child in sorted(root.iterdir()):
            split = SPLIT_ALIASES.get(child.name.lower())
            if child.is_dir() and split and (child / "images").is_dir():
                images.setdefault(split, []).extend(image_path_texts(child / "images"))
    if not any(images.values()):
        return None
    class_names = None
    for candidate in (root / "classes.txt", root / "labels" / "classes.txt"):
        if candidate.is_file():
            class_names = [ln.strip() for ln in candidate.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
            notes.append(f"no data.yaml: class names from {relative(candidate, root)}")
            break
    _check_normal_classes(normal_classes, class_names, "classes.txt")
    if "train" not in images or not images["train"]:
        raise EdgeSealantError(f"{root}: YOLO images/ layout has no train images")
    return _yolo_samples(images, root, class_names, normal_classes, notes)


# ------------------------------------------------------------------------------ entry point
def _find_yaml(folder: Path) -> Path | None:
    for name in YAML_NAMES:
        if (folder / name).is_file():
            return folder / name
    yamls = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file())
    return yamls[0] if len(yamls) == 1 else None


def _dedupe(splits: dict[str, list[Sample]], root: Path, notes: list[str]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    seen_in: dict[Path, str] = {}
    shared: dict[tuple[str, str], int] = defaultdict(int)
    for split in SPLITS:
        unique: dict[Path, Sample] = {}
        for sample in splits.get(split, []):
            unique.setdefault(sample.path, sample)
        repeated = len(splits.get(split, [])) - len(unique)
        if repeated:
            notes.append(f"{split}: {repeated} repeated image paths listed once")
        for path in unique:
            if path in seen_in:
                shared[(seen_in[path], split)] += 1
            else:
                seen_in[path] = split
        out[split] = sorted(unique.values(), key=lambda s: str(s.path))
    for (a, b), count in shared.items():
        notes.append(f"{count} image files are in both {a} and {b} (the same file)")
    return out


def _read_layout(
    source: Path, yaml_path: Path | None, normal: list[str], notes: list[str]
) -> tuple[Path, str, list[str], list[str], dict[str, list[Sample]]]:
    """(root, format, class names, normal classes, samples per split) of the first layout that fits."""
    if yaml_path is not None:
        if yaml_path is not source:
            notes.append(f"using {yaml_path.name}")
        root, class_names, normal, splits = _load_yolo_yaml(yaml_path, normal, notes)
        fmt = "yolo"
    else:
        root = absolute(source)
        splits = imagefolder_splits(root, notes)
        if splits is not None:
            fmt, class_names = "imagefolder", []
            if normal:
                raise EdgeSealantError(
                    f"{source}: normal classes name YOLO classes; an ImageFolder dataset says normal/defect by folder"
                )
        else:
            found = _yolo_without_yaml(root, normal, notes)
            if found is None:
                yamls = [p.name for p in root.iterdir() if p.suffix.lower() in (".yaml", ".yml")]
                hint = f" (several yaml files: {', '.join(sorted(yamls))}; pass one)" if len(yamls) > 1 else ""
                raise EdgeSealantError(
                    f"{source}: no images found: expected a data.yaml, {{train,val,test}}/{{normal,defect}}/ folders or images/ + labels/{hint}"
                )
            (splits, class_names), fmt = found, "yolo"
            notes.append("no data.yaml: YOLO images/ + labels/ layout")
    return root, fmt, class_names, normal, splits


def load_dataset(
    source: str | Path,
    normal_classes: Iterable[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    group_by: str | None = None,
    max_group_size: int | None = None,
) -> LabelledDataset:
    """Load DATA (a YOLO ``data.yaml`` or a dataset folder) as image-level labels.

    An image is a defect iff it has at least one box/polygon of a class not in
    ``normal_classes`` (by default every class is a defect). Missing val/test splits are
    made by a stratified, seeded, grouped split of train: exact and near duplicates (and
    images whose names share a ``group_by`` key) stay in one split, so the split made here
    never leaks (see :mod:`edge_sealant.data.groups`). Samples are sorted by path per split.
    """
    settings = SplitSettings(seed, val_fraction, test_fraction, group_by, max_group_size)
    settings.check()
    source = Path(source)
    normal = [c.strip() for c in (normal_classes or []) if c.strip()]
    notes: list[str] = []
    if not source.exists():
        raise EdgeSealantError(f"{source}: no such file or folder")
    yaml_path = source if source.is_file() else _find_yaml(source)
    if source.is_file() and source.suffix.lower() not in (".yaml", ".yml"):
        raise EdgeSealantError(f"{source}: expected a YOLO data.yaml or a dataset folder")
    root, fmt, class_names, normal, splits = _read_layout(source, yaml_path, normal, notes)
    for split in SPLITS:
        if split in splits and not splits[split]:
            notes.append(f"{split} split is empty")
    if not any(splits.values()):
        raise EdgeSealantError(f"{source}: dataset has no images")
    splits = _dedupe(splits, root, notes)
    splits, grouping = _complete_splits(splits, settings, notes)
    defects = sum(s.label for v in splits.values() for s in v)
    if defects == 0:
        notes.append("no defect images at all: check --normal-classes and the label files")
    return LabelledDataset(
        root=root,
        format=fmt,
        class_names=list(class_names),
        normal_classes=list(normal),
        splits=splits,
        notes=notes,
        split_settings=dataclasses.asdict(settings),
        grouping=grouping,
    )


def load_dataset_like(source: str | Path, data_summary: dict[str, Any]) -> LabelledDataset:
    """Load ``source`` as a run saw it: same normal classes, same split seed and grouping.

    ``data_summary`` is the card's (``run.json``) record of the training data, so ``evaluate``,
    ``quantize`` and ``bench`` carve the very same test split the run was trained around.
    """
    settings = data_summary.get("split_settings") or {}
    known = {f.name for f in dataclasses.fields(SplitSettings)}
    return load_dataset(
        source,
        normal_classes=data_summary.get("normal_classes") or None,
        **{k: v for k, v in settings.items() if k in known},
    )
