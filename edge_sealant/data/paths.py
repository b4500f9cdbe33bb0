"""Paths in a dataset: image files under a folder, relative names for messages, folder aliases."""

from __future__ import annotations

import os
from pathlib import Path

from edge_sealant.errors import EdgeSealantError
from edge_sealant.preprocess import IMAGE_SUFFIXES

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
NORMAL_ALIASES = frozenset({"normal", "good", "ok"})
DEFECT_ALIASES = frozenset({"defect", "ng", "bad"})


def relative(path: str | Path, root: str | Path) -> str:
    """``path`` relative to the dataset root (POSIX separators) for messages, else as is."""
    text, prefix = str(path), str(root).rstrip(os.sep) + os.sep
    if text.startswith(prefix):
        return text[len(prefix) :].replace(os.sep, "/")
    return text


def absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def scan_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden files skipped), sorted."""
    return [Path(p) for p in image_path_texts(folder)]


def image_path_texts(folder: str | Path) -> list[str]:
    """Like :func:`scan_images`, as strings (cheap for 10k-image folders); symlink loops skipped."""
    found: list[str] = []
    stack = [str(folder)]
    visited: set[str] = set()
    while stack:
        current = stack.pop()
        real = os.path.realpath(current)
        if real in visited:  # symlink loops
            continue
        visited.add(real)
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            raise EdgeSealantError(f"{current}: cannot list folder ({exc.strerror or exc})") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                stack.append(entry.path)
            elif is_image_name(entry.name):
                found.append(entry.path)
    return sorted(found)
