"""One pipeline: train -> evaluate -> export -> quantize -> bench, each stage timed.

Used by ``edge-sealant demo`` and by ``benchmarks/run_magnetic_tile.py``, so the demo and the
real-data benchmark cannot drift apart. Re-running on a folder continues where it stopped: a
finished run is not trained again and existing artifacts are not exported or quantized again.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

Log = Callable[[str], None]


@dataclass
class PipelineOptions:
    """What to run; ``train`` None reuses the finished run in ``run`` (its run.json)."""

    data: Path
    run: Path
    train: Any = None  # edge_sealant.train.TrainOptions
    evaluate: bool = False  # a separate test-split evaluation (the bench scores every artifact anyway)
    export_formats: tuple[str, ...] = ("onnx", "openvino")
    export_precisions: tuple[str, ...] = ("fp32",)
    quantize_backends: tuple[str, ...] = ("openvino",)  # "openvino" (NNCF IR) and/or "onnx"
    subset_size: int = 300
    bench: Optional[dict[str, Any]] = None  # BenchOptions fields but run and data; None: no bench
    bench_md: bool = True  # also write RUN/bench/bench.md


@dataclass
class PipelineResult:
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    train: Any = None  # TrainResult when trained here
    evaluation: Optional[dict[str, Any]] = None
    bench: Any = None  # BenchResult
    bench_files: dict[str, str] = field(default_factory=dict)


@contextmanager
def stage(name: str, stages: dict[str, float], log: Log) -> Iterator[None]:
    """Log the start and the duration of a stage, and record its seconds in ``stages``."""
    log(f"[{len(stages) + 1}] {name} ...")
    started = time.perf_counter()
    yield
    stages[name] = round(time.perf_counter() - started, 2)
    log(f"    {name} done in {stages[name]:.1f} s")


def run_pipeline(options: PipelineOptions, log: Log = print, progress: Any = None, stages: Optional[dict[str, float]] = None) -> PipelineResult:
    """Run every stage ``options`` asks for; ``progress`` receives training progress.

    ``stages`` may hold stages timed before (the demo's data generation): numbering continues.
    """
    result = PipelineResult(stages=stages if stages is not None else {})
    run, data = Path(options.run), Path(options.data)
    indented = lambda message: log(f"    {message}")  # noqa: E731
    if options.train is not None and not (run / "run.json").is_file():
        from edge_sealant.train import TextProgress, train

        with stage("train", result.stages, log):
            result.train = train(options.train, progress=progress or TextProgress(indented))
    else:
        log(f"reusing the finished run in {run}")
    if options.evaluate:
        from edge_sealant.evaluate import evaluate_run

        with stage("evaluate", result.stages, log):
            result.evaluation = evaluate_run(run, data, split="test")
    _export_missing(options, result, indented, log)
    _quantize_missing(options, result, indented, log)
    if options.bench is not None:
        _bench(options, result, indented, log)
    return result


def _export_missing(options: PipelineOptions, result: PipelineResult, indented: Log, log: Log) -> None:
    from edge_sealant.artifacts import existing_artifacts
    from edge_sealant.export import export_run

    found = existing_artifacts(options.run)
    wanted = [("onnxruntime", "fp32")] * ("onnx" in options.export_formats)
    wanted += [("openvino", p) for p in options.export_precisions] * ("openvino" in options.export_formats)
    if any(key not in found for key in wanted):
        formats, precisions = list(options.export_formats), list(options.export_precisions)
        with stage(f"export ({' + '.join(formats)} {' + '.join(precisions)})", result.stages, log):
            export_run(options.run, formats=formats, precisions=precisions, log=indented)


def _quantize_missing(options: PipelineOptions, result: PipelineResult, indented: Log, log: Log) -> None:
    from edge_sealant.artifacts import existing_artifacts
    from edge_sealant.quantize import quantize_run

    missing = [b for b in options.quantize_backends if ("onnxruntime" if b == "onnx" else b, "int8") not in existing_artifacts(options.run)]
    if not missing:
        return
    with stage("quantize (int8)", result.stages, log):
        for backend in missing:
            started = time.perf_counter()
            quantize_run(options.run, options.data, backend=backend, subset_size=options.subset_size, split="train", warn=indented)
            indented(f"{backend} int8 in {time.perf_counter() - started:.1f} s")


def _bench(options: PipelineOptions, result: PipelineResult, indented: Log, log: Log) -> None:
    from edge_sealant import bench

    bench_options = bench.BenchOptions(run=Path(options.run), data=Path(options.data), **options.bench)
    with stage("bench", result.stages, log):
        result.bench = bench.run_bench(bench_options, log=indented)
        folder = Path(options.run) / "bench"
        result.bench_files = bench.write_outputs(result.bench, folder, md_path=folder / "bench.md" if options.bench_md else None)
