"""Plain data types for an image-level normal/defect dataset (torch-free)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NORMAL, DEFECT = 0, 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Region:
    """Where a defect is: a YOLO box ``(cx, cy, w, h)`` or polygon ``(x1, y1, ...)``, normalised."""

    class_name: str
    kind: str  # "box" or "polygon"
    points: tuple[float, ...]


@dataclass(frozen=True)
class Sample:
    """One image and its image-level label.

    ``label`` is 1 (defect) when the image has at least one box/polygon of a defect class.
    ``defect_classes`` holds the YOLO class names present (for per-class recall).
    ``regions`` are the defect boxes/polygons (empty for normal images and for defects known
    only by their image label, e.g. an ImageFolder ``defect/`` folder or a class named in
    ``--image-level-classes``, whose boxes mark the image but do not outline the defect).
    """

    path: Path
    label: int
    defect_classes: tuple[str, ...] = ()
    boxes: int = 0
    regions: tuple[Region, ...] = ()
    image_level: bool = False  # holds a defect whose outline is not labelled (an image-level class)

    @property
    def has_geometry(self) -> bool:
        """Whether a complete defect map can be drawn: normal images (all clear) or defects
        whose every defect has a region."""
        return not self.image_level and (self.label == NORMAL or bool(self.regions))


@dataclass
class LabelledDataset:
    """Samples per split plus what the loader had to decide or skip on the way."""

    root: Path
    format: str  # "yolo" or "imagefolder"
    class_names: list[str]
    normal_classes: list[str]
    splits: dict[str, list[Sample]]
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason" for unreadable files
    split_settings: dict[str, Any] = field(default_factory=dict)  # seed, fractions, grouping options
    grouping: dict[str, Any] = field(default_factory=dict)  # groups of the split made here (empty: none made)

    def split(self, name: str) -> list[Sample]:
        from edge_sealant.errors import EdgeSealantError

        if name not in self.splits or not self.splits[name]:
            have = ", ".join(k for k, v in self.splits.items() if v) or "none"
            raise EdgeSealantError(f"{self.root}: dataset has no '{name}' split (splits: {have})")
        return self.splits[name]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for name, samples in self.splits.items():
            defect = sum(s.label for s in samples)
            out[name] = {"normal": len(samples) - defect, "defect": defect}
        return out

    def summary(self) -> dict[str, Any]:
        """Short, JSON-able description embedded in run.json and model metadata."""
        return {
            "root": str(self.root),
            "format": self.format,
            "class_names": list(self.class_names),
            "normal_classes": list(self.normal_classes),
            "counts": self.counts(),
            "notes": list(self.notes),
            "split_settings": dict(self.split_settings),
            "grouping": dict(self.grouping),
        }


def class_histogram(samples: list[Sample]) -> dict[str, int]:
    """Images per defect class (an image with two classes counts for both)."""
    counter: Counter[str] = Counter()
    for sample in samples:
        counter.update(set(sample.defect_classes))
    return dict(sorted(counter.items()))


def with_image_level_classes(dataset: LabelledDataset, classes: list[str]) -> LabelledDataset:
    """``dataset`` with the boxes/polygons of ``classes`` kept as image labels only.

    For classes whose geometry does not outline the defect (a whole-frame smear boxed
    loosely, a "wrong bead colour" class): their images stay defects, but no mask is drawn
    from them, so the heatmap is not taught that the box is the defect.
    """
    from edge_sealant.errors import EdgeSealantError

    unknown = sorted(set(classes) - set(dataset.class_names))
    if unknown:
        raise EdgeSealantError(f"image-level class '{unknown[0]}' is not a class of the dataset ({', '.join(dataset.class_names)})")
    chosen = set(classes)
    import dataclasses

    def convert(sample: Sample) -> Sample:
        if not any(region.class_name in chosen for region in sample.regions):
            return sample
        kept = tuple(region for region in sample.regions if region.class_name not in chosen)
        return dataclasses.replace(sample, regions=kept, image_level=True)

    splits = {name: [convert(s) for s in samples] for name, samples in dataset.splits.items()}
    notes = dataset.notes + [f"image-level classes (no masks drawn): {', '.join(sorted(chosen))}"]
    return dataclasses.replace(dataset, splits=splits, notes=notes)
