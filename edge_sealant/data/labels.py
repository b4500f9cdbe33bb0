"""YOLO label files: where an image's label file is, and what its lines say.

Detection lines (``cls cx cy w h``) and segmentation lines (``cls x1 y1 ... xn yn``), all
coordinates normalised to [0, 1]. Fatal problems raise one-line :class:`EdgeSealantError`
naming file and line; small problems (clipped coordinates, empty boxes, repeated lines) are
returned for the audit.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge_sealant.errors import EdgeSealantError

COORD_TOLERANCE = 1e-6  # exports often write 1.0000001; clipped and reported, not fatal


@dataclass(frozen=True)
class Shape:
    """One label line: a class id and its normalised geometry.

    ``points`` is ``(cx, cy, w, h)`` for a box, ``(x1, y1, ..., xn, yn)`` for a polygon
    (n >= 3), every value in [0, 1] relative to the image's width and height.
    """

    class_id: int
    points: tuple[float, ...]

    @property
    def kind(self) -> str:
        return "box" if len(self.points) == 4 else "polygon"


@dataclass
class LabelFile:
    """What one YOLO label file says: one shape per line, plus non-fatal problems."""

    shapes: list[Shape] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def class_ids(self) -> list[int]:
        return [shape.class_id for shape in self.shapes]


def label_path_text(image: str) -> str:
    # strings, not pathlib: this runs once per image and must stay cheap for 10k images
    head, name = os.path.split(image)
    stem = os.path.splitext(name)[0]
    marker = os.sep + "images" + os.sep
    wrapped = os.sep + head + os.sep
    i = wrapped.rfind(marker)
    if i >= 0:
        head = (wrapped[:i] + os.sep + "labels" + os.sep + wrapped[i + len(marker) :])[1:].rstrip(os.sep) or os.sep
    return os.path.join(head, stem + ".txt")


def label_path_for(image: Path) -> Path:
    """YOLO convention: the last ``images`` path component becomes ``labels``, suffix ``.txt``."""
    return Path(label_path_text(str(image)))


def parse_label_text(text: str, n_classes: int | None, where: str) -> LabelFile:
    """Parse detection (``cls cx cy w h``) and segmentation (``cls x1 y1 ... xn yn``) lines.

    ``where`` names the file in messages. Fatal problems raise; clipped coordinates,
    zero-sized boxes and repeated lines are returned in ``problems``.
    """
    out = LabelFile()
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        n = len(parts)
        if n != 5 and not (n >= 7 and n % 2 == 1):
            raise EdgeSealantError(
                f"{where}:{lineno}: {n} fields; expected 5 (class cx cy w h) or a class and an even number >= 6 of polygon coordinates"
            )
        try:
            cls_value = float(parts[0])
        except ValueError:
            raise EdgeSealantError(f"{where}:{lineno}: class id {parts[0]!r} is not a number") from None
        if not math.isfinite(cls_value) or not cls_value.is_integer() or cls_value < 0:
            raise EdgeSealantError(f"{where}:{lineno}: class id {parts[0]} is not a non-negative integer")
        cls = int(cls_value)
        if n_classes is not None and cls >= n_classes:
            raise EdgeSealantError(f"{where}:{lineno}: class id {cls} out of range (names has {n_classes} classes)")
        clipped = False
        try:
            coords = [float(v) for v in parts[1:]]
        except ValueError:
            bad = next(v for v in parts[1:] if not _is_float(v))
            raise EdgeSealantError(f"{where}:{lineno}: coordinate {bad!r} is not a number") from None
        if not (0.0 <= min(coords) and max(coords) <= 1.0) or any(c != c for c in coords):  # slow path; c != c: nan
            for k, value in enumerate(coords):
                if 0.0 <= value <= 1.0:
                    continue
                if -COORD_TOLERANCE <= value <= 1.0 + COORD_TOLERANCE:
                    clipped = True
                    coords[k] = min(max(value, 0.0), 1.0)
                else:
                    raise EdgeSealantError(
                        f"{where}:{lineno}: coordinate {parts[k + 1]} outside [0, 1] (YOLO coordinates are normalised to the image size)"
                    )
        if clipped:
            out.problems.append(f"{where}:{lineno}: coordinates slightly outside [0, 1] clipped")
        if n == 5 and (coords[2] <= 0.0 or coords[3] <= 0.0):
            out.problems.append(f"{where}:{lineno}: box has zero width or height")
        key = " ".join(parts)
        if key in seen:
            out.problems.append(f"{where}:{lineno}: duplicate of line {seen[key]}")
        else:
            seen[key] = lineno
        out.shapes.append(Shape(cls, tuple(coords)))
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_label_file(path: str | Path, n_classes: int | None, where: str) -> LabelFile | None:
    """Parse a label file; None when it does not exist (the image is normal)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise EdgeSealantError(f"{where}: is a folder, expected a label file") from None
    except OSError as exc:
        raise EdgeSealantError(f"{where}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise EdgeSealantError(f"{where}: not a text label file (not UTF-8)") from None
    return parse_label_text(text, n_classes, where)
