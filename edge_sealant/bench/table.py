"""The benchmark table: which rows a run folder yields, and every figure of each row.

One row per (backend, precision): torch FP32 eager (the baseline), ONNX Runtime FP32/INT8 (the
peers), OpenVINO FP32 (inference precision forced to f32), FP16, INT8 and, when the CPU has
it, BF16 (the FP32 IR run with ``INFERENCE_PRECISION_HINT=bf16``). Accuracy comes from
:func:`edge_sealant.evaluate.score` / :func:`~edge_sealant.evaluate.report` through the
:class:`~edge_sealant.runtime.protocol.Backend` protocol, so it is computed exactly like
``edge-sealant evaluate``; timing follows the rules of :mod:`edge_sealant.bench.measure`.

:func:`run_bench` strings the steps together and returns a :class:`BenchResult`; it prints
nothing (progress goes to its ``log`` callback), and writing or showing the table is
:mod:`edge_sealant.bench.report`'s and the CLI's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edge_sealant.artifacts import existing_artifacts
from edge_sealant.bench.measure import (
    THROUGHPUT_BATCH,
    measure_batched_throughput,
    measure_end_to_end,
    measure_latency,
    measure_openvino_throughput,
    measure_preprocess,
    measure_reference,
    set_torch_threads,
    source_size,
)
from edge_sealant.bench.system import physical_cores, system_header
from edge_sealant.card import ModelCard
from edge_sealant.choices import parse_choices
from edge_sealant.errors import EdgeSealantError
from edge_sealant.runtime.model_file import model_size_mb

Log = Callable[[str], None]

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
ROW_ORDER = [
    ("torch", "fp32"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "fp16"),
    ("onnxruntime", "int8"),
    ("openvino", "fp32"),
    ("openvino", "fp16"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
]
# Columns of the CSV/Markdown tables and of every JSON row (None where a figure does not apply).
ROW_KEYS = (
    "label", "backend", "precision",
    "auroc", "auroc_ci", "accuracy", "balanced_accuracy", "recall", "recall_ci", "fpr", "fpr_ci",
    "size_mb",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "preprocess_ms",
    "throughput_ips", "throughput_mode", "speedup_vs_torch",
    "e2e_ips", "e2e_p50_ms",
    "inference_precision", "path", "timing_only",
)  # fmt: skip
ACCURACY_KEYS = ("auroc", "auroc_ci", "accuracy", "balanced_accuracy", "recall", "recall_ci", "fpr", "fpr_ci")
ENGINE_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


@dataclass
class BenchOptions:
    """Every knob of ``edge-sealant bench``."""

    run: str | Path
    data: str | Path
    split: str = "test"
    backends: Optional[Sequence[str]] = None  # default: all
    precisions: Optional[Sequence[str]] = None  # default: all
    threads: Optional[int] = None  # default: physical cores
    iterations: int = 200
    warmup: int = 20
    throughput_images: Optional[int] = None  # default: max(iterations, 64)
    e2e_images: int = 200
    e2e: bool = True
    reference: Optional[str] = None  # "full-res"
    reference_size: Optional[tuple[int, int]] = None  # default: the split's source size
    reference_iterations: int = 3
    out_dir: Optional[str | Path] = None  # PNGs (+ bench.json); default RUN/bench

    def __post_init__(self) -> None:
        self.backends = parse_choices(self.backends, BACKENDS, "backend", option="--backends")
        self.precisions = parse_choices(self.precisions, PRECISIONS, "precision", option="--precisions")
        if self.threads is not None and self.threads < 1:
            raise EdgeSealantError("--threads must be >= 1")
        if self.iterations < 1 or self.warmup < 0 or self.e2e_images < 1:
            raise EdgeSealantError("--iterations and --e2e-images must be >= 1, --warmup >= 0")
        if self.reference not in (None, "full-res"):
            raise EdgeSealantError(f"--reference {self.reference!r}: only 'full-res' is known")


@dataclass
class RowSpec:
    """One row to measure: which engine runs which file, and how it is labelled."""

    backend: str
    precision: str
    path: Path
    label: str
    ov_inference_precision: Optional[str] = None  # "f32" / "bf16" forced; None = plugin default


@dataclass
class BenchResult:
    """The header (machine, run, split), one dict per row, ROC inputs per row, plots, gate."""

    header: dict[str, Any]
    rows: list[dict[str, Any]]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    gate: list[str] = field(default_factory=list)  # INT8 rows over the drop limit

    def to_dict(self) -> dict[str, Any]:
        """What bench.json holds (the curves stay out: they are the plots' input)."""
        return {"header": self.header, "rows": self.rows, "plots": self.plots, "gate": self.gate}


# ---------------------------------------------------------------------------- planning
def plan_rows(
    run: Path,
    backends: Sequence[str],
    precisions: Sequence[str],
    bf16: bool,
) -> list[RowSpec]:
    """The rows to measure, in a fixed order, from what the run folder holds."""
    found = existing_artifacts(run)
    specs: list[RowSpec] = []
    for backend, precision in ROW_ORDER:
        if backend in backends and precision in precisions:
            spec = _row_spec(run, found, backend, precision, bf16)
            if spec is not None:
                specs.append(spec)
    if not specs:
        raise EdgeSealantError(
            f"{run}: nothing to benchmark for backends {','.join(backends)} and precisions {','.join(precisions)} "
            "(train, then 'edge-sealant export' / 'quantize' first)"
        )
    return specs


def _row_spec(run: Path, found: dict, backend: str, precision: str, bf16: bool) -> Optional[RowSpec]:
    """The row of one (backend, precision), or None when the run has no file for it."""
    if backend == "torch":
        checkpoint = run / "best.pt"
        return RowSpec("torch", "fp32", checkpoint, "torch FP32 eager (baseline)") if checkpoint.is_file() else None
    if backend == "openvino" and precision == "bf16":
        # No BF16 IR exists: the FP32 IR runs with the bf16 hint, only where the CPU has BF16.
        if bf16 and ("openvino", "fp32") in found:
            return RowSpec("openvino", "bf16", found[("openvino", "fp32")], "OpenVINO BF16 (FP32 IR, bf16 hint)", "bf16")
        return None
    if (backend, precision) not in found:
        return None
    label = f"{ENGINE_NAMES[backend]} {precision.upper()}"
    if backend == "openvino" and precision == "fp32":
        # Said in the label: on BF16 CPUs OpenVINO's default would run this IR in bf16 (open_row_backend forces f32).
        return RowSpec(backend, precision, found[(backend, precision)], f"{label} (f32 forced)", "f32")
    return RowSpec(backend, precision, found[(backend, precision)], label)


# ---------------------------------------------------------------------------- backends
def open_row_backend(spec: RowSpec, run: Path, threads: int, hint: str = "LATENCY") -> Any:
    """A :class:`Backend` for one table row, with the shared thread count and the given OV hint.

    Not :func:`edge_sealant.runtime.backends.open_backend`: this one also opens the torch
    checkpoint and applies the bench's per-row precision rules.
    """
    if spec.backend == "torch":
        from edge_sealant.torch_backend import TorchBackend

        set_torch_threads(threads)
        backend = TorchBackend.from_run(run)
        backend.batch_size = THROUGHPUT_BATCH
        return backend
    from edge_sealant.runtime import backends as runtime

    if spec.backend == "onnxruntime":
        return runtime.OnnxRuntimeBackend(spec.path, threads=threads)
    # precision None = f32 forced for FP32, FP16 and INT8 IRs; "bf16" for the bf16 row.
    precision = "bf16" if spec.ov_inference_precision == "bf16" else None
    return runtime.OpenVINOBackend(spec.path, device="CPU", hint=hint, precision=precision, threads=threads)


def inference_precision(backend: Any) -> Optional[str]:
    """The precision the engine really computes in (OpenVINO: read back from the compiled model)."""
    value = backend.inference_precision
    return None if value is None else str(value).lower()


def measure_throughput(spec: RowSpec, backend: Any, images: np.ndarray, threads: int, total: int) -> tuple[float, str]:
    """(images/s, how it was measured) for one row.

    OpenVINO gets a second backend compiled with the THROUGHPUT hint; the others run batches
    on the backend already open.
    """
    if spec.backend == "openvino":
        throughput_backend = open_row_backend(spec, Path("."), threads, hint="THROUGHPUT")
        ips, jobs = measure_openvino_throughput(throughput_backend, images, total)
        return ips, f"AsyncInferQueue of {jobs} batch-1 request{'s' * (jobs != 1)}"
    return measure_batched_throughput(backend, images, total), f"batch {THROUGHPUT_BATCH}, {threads} intra-op thread{'s' * (threads != 1)}"


# ---------------------------------------------------------------------------- rows
def empty_row(spec: RowSpec) -> dict[str, Any]:
    """A row with every key of ``ROW_KEYS``, None where not measured yet."""
    row: dict[str, Any] = {key: None for key in ROW_KEYS}
    row.update(label=spec.label, backend=spec.backend, precision=spec.precision, path=str(spec.path), timing_only=False)
    return row


def bench_row(
    spec: RowSpec,
    run: Path,
    samples: Sequence[Any],
    options: BenchOptions,
    threads: int,
    preprocess_ms: float,
    log: Log,
    group_of: dict[Any, int] | None = None,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Accuracy (evaluate.score/report), size, latency, throughput and end-to-end of one row.

    ``group_of`` maps an image path to its part (:func:`edge_sealant.evaluate.part_groups`),
    computed once for all rows; without it the row groups its split itself.
    Returns the row and its (labels, scores) for the ROC plot.
    """
    row = empty_row(spec)
    backend = open_row_backend(spec, run, threads, hint="LATENCY")
    loaded, scores = _add_accuracy(row, backend, samples, group_of)
    row["size_mb"] = round(model_size_mb(spec.path), 3)
    row["inference_precision"] = inference_precision(backend) or spec.ov_inference_precision
    _add_latency(row, backend, loaded.images, options)
    row["preprocess_ms"] = preprocess_ms
    total = options.throughput_images or max(options.iterations, 64)
    row["throughput_ips"], row["throughput_mode"] = measure_throughput(spec, backend, loaded.images, threads, total)
    del backend  # release the compiled model before the end-to-end run compiles its own
    if options.e2e and spec.backend != "torch":  # the runtime is torch-free: no e2e for the torch row
        files = [s.path for s in loaded.samples]
        precision = "bf16" if spec.ov_inference_precision == "bf16" else None
        row["e2e_ips"], row["e2e_p50_ms"] = measure_end_to_end(spec.path, files, threads, options.e2e_images, precision)
    log(_row_summary(row))
    return row, (loaded.labels, scores)


def _add_accuracy(row: dict[str, Any], backend: Any, samples: Sequence[Any], group_of: dict[Any, int] | None) -> tuple[Any, np.ndarray]:
    """Score the split like ``edge-sealant evaluate`` and put its figures in ``row``."""
    from edge_sealant.evaluate import report, score

    loaded, scores = score(backend, samples)
    groups = None if group_of is None else [group_of[s.path] for s in loaded.samples]
    metrics = report(loaded, scores, backend.card, groups=groups)
    row.update({key: metrics[key] for key in ACCURACY_KEYS})
    row["threshold"] = metrics["threshold"]
    return loaded, scores


def _add_latency(row: dict[str, Any], backend: Any, images: np.ndarray, options: BenchOptions) -> None:
    latency = measure_latency(backend, images, options.iterations, options.warmup)
    row.update(
        latency_p50_ms=latency.p50, latency_p90_ms=latency.p90, latency_p99_ms=latency.p99, latency_mean_ms=latency.mean
    )


def _row_summary(row: dict[str, Any]) -> str:
    """The progress line logged after each row."""
    auroc = "-" if row["auroc"] is None else f"{row['auroc']:.4f}"
    return (
        f"{row['label']}: AUROC {auroc}, p50 {row['latency_p50_ms']:.2f} ms, "
        f"{row['throughput_ips']:.0f} img/s" + (f", e2e {row['e2e_ips']:.0f} img/s" if row["e2e_ips"] else "")
    )


def reference_row(size: tuple[int, int], threads: int, iterations: int) -> dict[str, Any]:
    """Timing-only row: EfficientNet-B0 at the full source resolution, torch eager."""
    spec = RowSpec("torch", "fp32", Path("-"), f"reference: EfficientNet-B0 full-res {size[0]}x{size[1]} torch eager (timing only)")
    row = empty_row(spec)
    timing = measure_reference(size, threads, iterations=iterations)
    row.update(
        latency_p50_ms=timing.p50,
        latency_p90_ms=timing.p90,
        latency_p99_ms=timing.p99,
        latency_mean_ms=timing.mean,
        throughput_ips=1e3 / timing.mean,
        throughput_mode=f"batch 1, {iterations} runs after 1 warm-up",
        timing_only=True,
        path=None,
        inference_precision="f32",
    )
    return row


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """``speedup_vs_torch`` = torch FP32 p50 latency / row p50 latency (>1 is faster)."""
    base = next((r for r in rows if r["backend"] == "torch" and r["precision"] == "fp32" and not r["timing_only"]), None)
    for row in rows:
        if base and row["latency_p50_ms"]:
            row["speedup_vs_torch"] = base["latency_p50_ms"] / row["latency_p50_ms"]


# ---------------------------------------------------------------------------- gate
def drop_gate(rows: Sequence[dict[str, Any]], max_drop: float) -> list[str]:
    """INT8 rows losing more than ``max_drop`` AUROC against the FP32 row of the same backend.

    Without an FP32 row of that backend, the torch FP32 row is the reference.
    """
    by_key = {(r["backend"], r["precision"]): r for r in rows if not r["timing_only"]}
    failures = []
    for row in rows:
        if row["precision"] != "int8" or row["timing_only"]:
            continue
        ref = by_key.get((row["backend"], "fp32")) or by_key.get(("torch", "fp32"))
        if ref is None or ref["auroc"] is None or row["auroc"] is None:
            continue
        drop = ref["auroc"] - row["auroc"]
        if drop > max_drop + 1e-9:  # float noise must not fail a release
            failures.append(f"{row['label']}: AUROC {row['auroc']:.4f} is {drop:+.4f} below {ref['label']} ({ref['auroc']:.4f}) > {max_drop:g}")
    return failures


# ---------------------------------------------------------------------------- main
def run_bench(options: BenchOptions, log: Log = lambda message: None) -> BenchResult:
    """Measure every selected row of ``options.run`` on ``options.split`` of ``options.data``."""
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import card_group_by, part_groups

    run = Path(options.run)
    card = ModelCard.load(run)
    threads = options.threads or physical_cores()
    header = system_header(threads)
    samples = load_dataset_like(options.data, card.data_summary).split(options.split)
    header.update(_run_description(run, card, options, samples))
    specs = plan_rows(run, options.backends, options.precisions, header["bf16"])
    preprocess_ms = measure_preprocess([s.path for s in samples], card, options.iterations)
    header["preprocess_ms"] = preprocess_ms
    log(f"{len(specs)} rows on {header['cpu']} with {threads} threads; preprocessing {preprocess_ms:.2f} ms/image")
    group_of = dict(zip((s.path for s in samples), part_groups(samples, card_group_by(card))))  # once, not per row
    rows, curves = [], {}
    for spec in specs:
        row, curve = bench_row(spec, run, samples, options, threads, preprocess_ms, log, group_of)
        rows.append(row)
        curves[spec.label] = curve
    if options.reference:
        size = options.reference_size or source_size([s.path for s in samples])
        rows.append(reference_row(tuple(size), threads, options.reference_iterations))
        log(f"{rows[-1]['label']}: p50 {rows[-1]['latency_p50_ms']:.0f} ms")
    add_speedups(rows)
    return BenchResult(header=header, rows=rows, curves=curves)


def _run_description(run: Path, card: ModelCard, options: BenchOptions, samples: Sequence[Any]) -> dict[str, Any]:
    """The header fields about the run, the split and the timing settings."""
    from edge_sealant.evaluate import split_role

    return dict(
        run=str(run),
        model=card.model,
        input_size=list(card.input_size),
        threshold=card.threshold,
        threshold_policy=card.threshold_policy,
        data=str(options.data),
        split=options.split,
        split_role=split_role(card, options.split),
        images=len(samples),
        iterations=options.iterations,
        warmup=options.warmup,
        e2e_images=options.e2e_images,
    )
