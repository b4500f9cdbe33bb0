"""``edge-sealant predict``: run an exported model over files, folders, globs or videos.

Torch-free (uses :mod:`edge_sealant.runtime`). One row per image or video frame; an image
that cannot be read becomes an error row and the run goes on. Output files are written
atomically and never overwrite an existing file.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge_sealant.artifacts import existing_artifacts
from edge_sealant.card import atomic_write_text, check_threshold
from edge_sealant.errors import EdgeSealantError
from edge_sealant.preprocess import IMAGE_SUFFIXES
from edge_sealant.runtime import InspectionResult, Inspector
from edge_sealant.runtime.model_file import preferred_artifact
from edge_sealant.runtime.regions import DEFAULT_LEVEL

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
OUTPUT_SUFFIXES = (".csv", ".json")
CSV_COLUMNS = ("path", "probability", "decision", "latency_ms", "error")
PROGRESS_MIN_ITEMS = 50


@dataclass
class PredictReport:
    model: Path
    backend: str
    precision: str
    threshold: float
    threshold_source: str
    rows: list[InspectionResult] = field(default_factory=list)
    elapsed_s: float = 0.0
    out: Path | None = None
    with_regions: bool = False  # rows carry the heatmap regions
    overlays: list[Path] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        ok = [r for r in self.rows if r.ok]
        latencies = np.array([r.latency_ms for r in ok], dtype=np.float64)
        return {
            "images": len(self.rows),
            "defects": sum(1 for r in ok if r.is_defect),
            "errors": len(self.rows) - len(ok),
            "mean_latency_ms": round(float(latencies.mean()), 3) if len(latencies) else None,
            "p50_latency_ms": round(float(np.median(latencies)), 3) if len(latencies) else None,
            "images_per_s": round(len(self.rows) / self.elapsed_s, 2) if self.elapsed_s > 0 else None,
            "overlays": len(self.overlays),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "backend": self.backend,
            "precision": self.precision,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "summary": self.summary,
            "rows": [_row(r, self.with_regions) for r in self.rows],
        }


def _row(result: InspectionResult, with_regions: bool = False) -> dict[str, Any]:
    row = {
        "path": result.name,
        "probability": None if result.probability is None else round(result.probability, 6),
        "decision": result.decision,
        "latency_ms": result.latency_ms,
        "error": result.error,
    }
    if with_regions:
        row["regions"] = [region.to_dict() for region in result.regions]
    return row


# -------------------------------------------------------------------------------- model
def resolve_model(model: str | Path) -> Path:
    """A ``.xml``/``.onnx`` file as is; a run folder -> its best exported artifact.

    Best: INT8 IR, then FP32 IR, then FP32 ONNX (``model_file.ARTIFACT_PREFERENCE``).
    """
    model = Path(model)
    if model.is_dir():
        best = preferred_artifact(existing_artifacts(model))
        if best is not None:
            return best
        raise EdgeSealantError(f"{model}: no exported model in this run folder (run 'edge-sealant export {model}' first)")
    return model


# ------------------------------------------------------------------------------- sources
@dataclass
class SourcePlan:
    """What SOURCE expands to: ``(name, path-or-frame)`` items and their count (if known)."""

    items: Iterator[Any]
    total: int | None
    description: str


def expand_source(source: str | Path) -> SourcePlan:
    """A file, a folder (recursive), a glob, or a video (one item per frame)."""
    text = str(source)
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EdgeSealantError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return SourcePlan(iter(files), len(files), f"{len(files)} images in {path}")
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return _video_plan(path)
        return SourcePlan(iter([path]), 1, str(path))
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EdgeSealantError(f"{text}: no images match this pattern")
        return SourcePlan(iter(files), len(files), f"{len(files)} images matching {text}")
    raise EdgeSealantError(f"{text}: no such file, folder or glob match")


def _video_plan(path: Path) -> SourcePlan:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise EdgeSealantError(f"{path}: cannot open video (corrupt or unsupported codec)")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def frames() -> Iterator[tuple[str, np.ndarray]]:
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                yield f"{path}#frame={index}", frame
                index += 1
        finally:
            capture.release()

    return SourcePlan(frames(), count if count > 0 else None, f"video {path}")


# ------------------------------------------------------------------------------- predict
def check_output(out: str | Path | None) -> Path | None:
    if out is None:
        return None
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise EdgeSealantError(f"{out}: output must end in .csv or .json")
    if out.exists():
        raise EdgeSealantError(f"{out}: already exists (predict never overwrites; choose another name)")
    return out


def predict(
    model: str | Path,
    source: str | Path,
    out: str | Path | None = None,
    threshold: float | None = None,
    device: str = "CPU",
    hint: str = "THROUGHPUT",
    precision: str | None = None,
    threads: int | None = None,
    on_start: Callable[[int | None, str], None] | None = None,
    on_result: Callable[[InspectionResult], None] | None = None,
    overlay: str | Path | None = None,
    regions: bool = False,
    region_level: float = DEFAULT_LEVEL,
) -> PredictReport:
    """Inspect every image of ``source`` with ``model``; write ``out`` (CSV or JSON) if given.

    ``on_start(total, description)`` and ``on_result(result)`` let a caller show progress.
    Heatmap models: ``overlay`` (a folder) receives a JPEG of every flagged image with its
    heatmap, regions and verdict; ``regions`` adds the regions (boxes in source pixels at
    ``region_level``, with their peak) to the rows.
    """
    out = check_output(out)
    path = resolve_model(model)
    overlay_dir = check_overlay_dir(overlay)
    plan = expand_source(source)
    inspector = Inspector.load(path, device=device, hint=hint, precision=precision, threads=threads, threshold=threshold)
    inspector.region_level = check_threshold(region_level)
    if (overlay_dir is not None or regions) and not inspector.card.has_heatmap:
        raise EdgeSealantError(f"{path}: an image-only model has no heatmap for --overlay/--regions (train with --supervision boxes)")
    report = PredictReport(
        model=path,
        backend=inspector.backend.name,
        precision=inspector.backend.precision,
        threshold=inspector.threshold,
        threshold_source=inspector.threshold_source,
        with_regions=regions,
    )
    if on_start is not None:
        on_start(plan.total, plan.description)
    start = time.perf_counter()
    in_flight: deque[Any] = deque()  # sources of the images being inspected, for overlays
    items = _remembered(plan.items, in_flight) if overlay_dir is not None else plan.items
    with inspector:
        for result in inspector.stream(items):
            report.rows.append(result)
            if overlay_dir is not None:
                _overlay(overlay_dir, in_flight.popleft(), result, report)
            if on_result is not None:
                on_result(result)
    report.elapsed_s = time.perf_counter() - start
    if out is not None:
        write_rows(report, out)
        report.out = out
    return report


def check_overlay_dir(overlay: str | Path | None) -> Path | None:
    """The overlay folder, made if missing (existing pictures are never overwritten)."""
    if overlay is None:
        return None
    folder = Path(overlay)
    if folder.exists() and not folder.is_dir():
        raise EdgeSealantError(f"--overlay {folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _remembered(items: Iterator[Any], in_flight: deque[Any]) -> Iterator[Any]:
    """Pass ``items`` on, keeping each one's source until its result comes back (in order):
    the stream's bounded queue bounds what is kept, video frames included."""
    for item in items:
        in_flight.append(item[1] if isinstance(item, tuple) else item)
        yield item


def _overlay(folder: Path, source: Any, result: InspectionResult, report: PredictReport) -> None:
    if not (result.ok and result.is_defect):
        return
    from edge_sealant.overlay import write_overlay

    try:
        report.overlays.append(write_overlay(folder, source, result))
    except EdgeSealantError as exc:  # the verdict stands; the picture is a convenience
        result.error = f"overlay not written: {exc}"


def write_rows(report: PredictReport, out: Path) -> None:
    """CSV (one row per image) or JSON (model, threshold, summary, rows), atomically."""
    if out.exists():
        raise EdgeSealantError(f"{out}: already exists (predict never overwrites; choose another name)")
    if out.suffix.lower() == ".json":
        atomic_write_text(out, json.dumps(report.to_dict(), indent=2) + "\n")
        return
    buffer = io.StringIO()
    columns = CSV_COLUMNS + (("regions",) if report.with_regions else ())
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for result in report.rows:
        row = _row(result, report.with_regions)
        if report.with_regions:
            row["regions"] = json.dumps(row["regions"], separators=(",", ":"))
        row["probability"] = "" if row["probability"] is None else f"{row['probability']:.6f}"
        row["error"] = " ".join(str(row["error"] or "").split())  # one line per image, whatever the decoder said
        writer.writerow(row)
    atomic_write_text(out, buffer.getvalue())

