"""Benchmark every artifact of a run: accuracy, size, latency, throughput and end-to-end speed.

One row per (backend, precision): torch FP32 eager (the baseline), ONNX Runtime FP32/INT8 (the
peers), OpenVINO FP32 (inference precision forced to f32), FP16, INT8 and, when the CPU has
it, BF16 (the FP32 IR run with ``INFERENCE_PRECISION_HINT=bf16``). Accuracy comes from
:func:`edge_sealant.evaluate.score` / :func:`~edge_sealant.evaluate.report` through the
:class:`~edge_sealant.runtime.backend.Backend` protocol, so it is computed exactly like
``edge-sealant evaluate``.

Timing rules (the same for every row):

* one thread count for all backends (``torch.set_num_threads``, ORT ``intra_op_num_threads``,
  OpenVINO ``INFERENCE_NUM_THREADS``), by default the physical cores;
* latency: batch 1, LATENCY hint, real images of the split already decoded and resized
  (inference only), cycling through them after a warm-up; preprocessing (decode + resize
  of the same files) is timed apart and reported as ``preprocess_ms``;
* throughput: THROUGHPUT hint. OpenVINO runs batch-1 requests through an ``AsyncInferQueue``
  holding the compiled model's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``; ONNX Runtime and torch
  run batches (``THROUGHPUT_BATCH`` images) on the same threads (``throughput_mode`` says which);
* end to end: the torch-free runtime (``Inspector``) from files to decisions, decode and
  resize included: ``Inspector.stream`` for images/s, one ``inspect`` call per file for p50.

Everything here is a small function; ``run_bench`` strings them together and the CLI only
parses options.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edge_sealant.artifacts import existing_artifacts
from edge_sealant.card import ModelCard, atomic_write_text
from edge_sealant.errors import EdgeSealantError
from edge_sealant.runtime.backends import model_size_mb
from edge_sealant.versions import BENCHMARK, library_versions

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
THROUGHPUT_BATCH = 16
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
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
    "label",
    "backend",
    "precision",
    "auroc",
    "auroc_ci",
    "accuracy",
    "balanced_accuracy",
    "recall",
    "recall_ci",
    "fpr",
    "fpr_ci",
    "size_mb",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_mean_ms",
    "preprocess_ms",
    "throughput_ips",
    "throughput_mode",
    "speedup_vs_torch",
    "e2e_ips",
    "e2e_p50_ms",
    "inference_precision",
    "path",
    "timing_only",
)


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
        self.backends = _check_choices(self.backends, BACKENDS, "--backends")
        self.precisions = _check_choices(self.precisions, PRECISIONS, "--precisions")
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
class Timing:
    p50: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Timing:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(ms.mean()))


@dataclass
class BenchResult:
    header: dict[str, Any]
    rows: list[dict[str, Any]]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    gate: list[str] = field(default_factory=list)  # INT8 rows over the drop limit

    def to_dict(self) -> dict[str, Any]:
        return {"header": self.header, "rows": self.rows, "plots": self.plots, "gate": self.gate}


def _check_choices(values: Optional[Sequence[str]], allowed: Sequence[str], option: str) -> list[str]:
    if not values:
        return list(allowed)
    values = [v.strip().lower() for v in values if v.strip()]
    aliases = {"ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "pytorch": "torch"}
    values = [aliases.get(v, v) for v in values]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise EdgeSealantError(f"{option}: unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
    return values


# ---------------------------------------------------------------------------- machine
def physical_cores() -> int:
    """Physical cores (hyper-threads do not help these networks); logical CPUs as fallback."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
        if cores:
            return int(cores)
    except ImportError:
        pass
    try:
        pairs = set()
        physical = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                core = value.strip()
                pairs.add((physical, core))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


def cpu_info() -> dict[str, Any]:
    """CPU model and the ISA flags that decide INT8/BF16 speed (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "isa": {flag: flag in flags for flag in ISA_FLAGS}}


def openvino_capabilities() -> dict[str, Any]:
    try:
        import openvino as ov

        core = ov.Core()
        return {
            "device": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
            "optimization_capabilities": [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")],
        }
    except Exception as exc:  # no OpenVINO or no CPU plugin: the header says so
        return {"device": None, "optimization_capabilities": [], "error": f"{type(exc).__name__}: {exc}"}


def system_header(threads: int) -> dict[str, Any]:
    """What a reader needs to compare two benchmark files: CPU, ISA, threads, versions, date."""
    info = cpu_info()
    ov_caps = openvino_capabilities()
    return {
        "cpu": info["cpu"],
        "isa": info["isa"],
        "openvino_device": ov_caps.get("device"),
        "openvino_capabilities": ov_caps.get("optimization_capabilities", []),
        "bf16": "BF16" in ov_caps.get("optimization_capabilities", []),
        "threads": threads,
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "os": platform.platform(),
        "versions": library_versions(BENCHMARK),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def cpu_slug(cpu: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+' -> 'intel-xeon-platinum-8480' (for file names)."""
    text = re.sub(r"\((r|tm)\)|cpu|@.*$|processor", " ", cpu.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:48] or "cpu"


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
        if backend not in backends or precision not in precisions:
            continue
        if backend == "torch":
            checkpoint = run / "best.pt"
            if checkpoint.is_file():
                specs.append(RowSpec("torch", "fp32", checkpoint, "torch FP32 eager (baseline)"))
        elif backend == "openvino" and precision == "bf16":
            if bf16 and ("openvino", "fp32") in found:
                specs.append(RowSpec("openvino", "bf16", found[("openvino", "fp32")], "OpenVINO BF16 (FP32 IR, bf16 hint)", "bf16"))
        elif (backend, precision) in found:
            name = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[backend]
            label = f"{name} {precision.upper()}"
            forced = None
            if backend == "openvino" and precision == "fp32":
                forced, label = "f32", f"{label} (f32 forced)"
            specs.append(RowSpec(backend, precision, found[(backend, precision)], label, forced))
    if not specs:
        raise EdgeSealantError(
            f"{run}: nothing to benchmark for backends {','.join(backends)} and precisions {','.join(precisions)} "
            "(train, then 'edge-sealant export' / 'quantize' first)"
        )
    return specs


# ---------------------------------------------------------------------------- backends
def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def open_backend(spec: RowSpec, run: Path, threads: int, hint: str = "LATENCY") -> Any:
    """A :class:`Backend` for one row, with the shared thread count and the given OV hint."""
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
    value = getattr(backend, "inference_precision", None)
    if value is None and getattr(backend, "name", "") == "torch":
        return "f32"
    return None if value is None else str(value).lower()


# ---------------------------------------------------------------------------- measuring
def time_calls(call: Callable[[int], Any], iterations: int, warmup: int) -> list[float]:
    """Seconds per call of ``call(i)`` for ``iterations`` calls after ``warmup`` untimed ones."""
    for i in range(warmup):
        call(i)
    seconds = []
    clock = time.perf_counter
    for i in range(iterations):
        start = clock()
        call(i)
        seconds.append(clock() - start)
    return seconds


def measure_latency(backend: Any, images: np.ndarray, iterations: int, warmup: int) -> Timing:
    """Batch-1 inference latency, cycling through real (already resized) images."""
    n = len(images)
    singles = [np.ascontiguousarray(images[i : i + 1]) for i in range(min(n, 256))]
    return Timing.of(time_calls(lambda i: backend.predict(singles[i % len(singles)]), iterations, warmup))


def measure_preprocess(paths: Sequence[Path], card: ModelCard, iterations: int) -> float:
    """Mean ms to read, decode and resize one file of the split (what the line PC also pays)."""
    from edge_sealant.preprocess import load_for_model

    paths = list(paths)
    count = max(1, min(iterations, 4 * len(paths)))
    seconds = time_calls(
        lambda i: load_for_model(paths[i % len(paths)], card.input_size, card.resize_mode, card.channel_order),
        count,
        min(3, count),
    )
    return float(np.mean(seconds) * 1e3)


def batch_of(images: np.ndarray, size: int, start: int = 0) -> np.ndarray:
    """``size`` images cycling through ``images`` from ``start`` (repeats when there are fewer)."""
    index = (np.arange(size) + start) % len(images)
    return np.ascontiguousarray(images[index])


def measure_batched_throughput(backend: Any, images: np.ndarray, total: int, batch: int = THROUGHPUT_BATCH) -> float:
    """Images/s of ``backend.predict`` on batches of ``batch`` images (torch, ONNX Runtime)."""
    batches = [batch_of(images, batch, start) for start in range(0, max(batch, min(len(images), 4 * batch)), batch)]
    backend.predict(batches[0])  # warm-up (allocations for the batch shape)
    rounds = max(2, -(-total // batch))
    start = time.perf_counter()
    for i in range(rounds):
        backend.predict(batches[i % len(batches)])
    return rounds * batch / (time.perf_counter() - start)


def measure_openvino_throughput(backend: Any, images: np.ndarray, total: int) -> tuple[float, int]:
    """Images/s of an OpenVINO backend compiled with the THROUGHPUT hint.

    Batch-1 requests go through an ``AsyncInferQueue`` holding the compiled model's
    ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``; returns (images/s, number of requests).
    """
    import openvino as ov

    jobs = max(1, int(backend.optimal_requests))
    queue = ov.AsyncInferQueue(backend.compiled, jobs)
    singles = [np.ascontiguousarray(images[i : i + 1]) for i in range(min(len(images), 256))]
    for i in range(jobs * 2):  # warm-up: every request runs at least once
        queue.start_async({0: singles[i % len(singles)]})
    queue.wait_all()
    total = max(total, 4 * jobs)
    start = time.perf_counter()
    for i in range(total):
        queue.start_async({0: singles[i % len(singles)]})  # blocks while every request is busy
    queue.wait_all()
    return total / (time.perf_counter() - start), jobs


def measure_throughput(spec: RowSpec, backend: Any, images: np.ndarray, threads: int, total: int) -> tuple[float, str]:
    """(images/s, how it was measured) for one row."""
    if spec.backend == "openvino":
        throughput_backend = open_backend(spec, Path("."), threads, hint="THROUGHPUT")
        ips, jobs = measure_openvino_throughput(throughput_backend, images, total)
        return ips, f"AsyncInferQueue of {jobs} batch-1 request{'s' * (jobs != 1)}"
    return measure_batched_throughput(backend, images, total), f"batch {THROUGHPUT_BATCH}, {threads} intra-op thread{'s' * (threads != 1)}"


def measure_end_to_end(
    path: Path, files: Sequence[Path], threads: int, count: int, precision: Optional[str] = None
) -> tuple[float, float]:
    """File -> decision through the torch-free runtime, decode and resize included.

    Images/s: ``Inspector.stream`` (THROUGHPUT hint, decoding in threads while inference runs)
    over ``count`` files cycling through ``files``. p50: one ``Inspector.inspect(path)`` per
    file with the LATENCY hint, for up to 100 files.
    """
    from edge_sealant.runtime.inspector import Inspector

    files = [Path(files[i % len(files)]) for i in range(count)]
    with Inspector.load(path, hint="THROUGHPUT", precision=precision, threads=threads) as inspector:
        for _ in inspector.stream(files[: min(8, len(files))]):  # warm-up
            pass
        start = time.perf_counter()
        results = list(inspector.stream(files))
        ips = len(results) / (time.perf_counter() - start)
    errors = [r.error for r in results if r.error]
    if errors:
        raise EdgeSealantError(f"end-to-end run of {path}: {len(errors)} image(s) failed, e.g. {errors[0]}")
    latency_files = files[: min(count, 100)]
    with Inspector.load(path, hint="LATENCY", precision=precision, threads=threads) as inspector:
        inspector.inspect(latency_files[0])  # warm-up
        seconds = time_calls(lambda i: inspector.inspect(latency_files[i]), len(latency_files), 0)
    return ips, float(np.percentile(np.asarray(seconds) * 1e3, 50))


def measure_reference(size: tuple[int, int], threads: int, iterations: int = 3, warmup: int = 1) -> Timing:
    """The approach we replace: EfficientNet-B0 at full source resolution, torch eager (timing only)."""
    import torch
    import torchvision

    set_torch_threads(threads)
    net = torchvision.models.efficientnet_b0(weights=None).eval()
    image = torch.rand(1, 3, *size)
    with torch.inference_mode():
        return Timing.of(time_calls(lambda i: net(image), iterations, warmup))


# ---------------------------------------------------------------------------- rows
def empty_row(spec: RowSpec) -> dict[str, Any]:
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
    log: Callable[[str], None],
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Accuracy (evaluate.score/report), size, latency, throughput and end-to-end of one row."""
    from edge_sealant.evaluate import report, score

    row = empty_row(spec)
    backend = open_backend(spec, run, threads, hint="LATENCY")
    loaded, scores = score(backend, samples)
    metrics = report(loaded, scores, backend.card)
    row.update({key: metrics[key] for key in ("auroc", "auroc_ci", "accuracy", "balanced_accuracy", "recall", "recall_ci", "fpr", "fpr_ci")})
    row["threshold"] = metrics["threshold"]
    row["size_mb"] = round(model_size_mb(spec.path), 3)
    row["inference_precision"] = inference_precision(backend) or spec.ov_inference_precision
    latency = measure_latency(backend, loaded.images, options.iterations, options.warmup)
    row.update(
        latency_p50_ms=latency.p50, latency_p90_ms=latency.p90, latency_p99_ms=latency.p99, latency_mean_ms=latency.mean
    )
    row["preprocess_ms"] = preprocess_ms
    total = options.throughput_images or max(options.iterations, 64)
    row["throughput_ips"], row["throughput_mode"] = measure_throughput(spec, backend, loaded.images, threads, total)
    del backend
    if options.e2e and spec.backend != "torch":  # the runtime is torch-free: no e2e for the torch row
        files = [s.path for s in loaded.samples]
        precision = "bf16" if spec.ov_inference_precision == "bf16" else None
        row["e2e_ips"], row["e2e_p50_ms"] = measure_end_to_end(spec.path, files, threads, options.e2e_images, precision)
    log(
        f"{spec.label}: AUROC {_fmt(row['auroc'])}, p50 {row['latency_p50_ms']:.2f} ms, "
        f"{row['throughput_ips']:.0f} img/s" + (f", e2e {row['e2e_ips']:.0f} img/s" if row["e2e_ips"] else "")
    )
    return row, (loaded.labels, scores)


def reference_row(size: tuple[int, int], threads: int, iterations: int) -> dict[str, Any]:
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


def source_size(paths: Sequence[Path]) -> tuple[int, int]:
    """(H, W) of the split's source images: the most common size among the first 50 files."""
    from collections import Counter

    from edge_sealant.preprocess import encoded_image_size, read_bytes

    sizes: Counter = Counter()
    for path in list(paths)[:50]:
        size = encoded_image_size(read_bytes(path)[:65536])
        if size is None:
            import cv2

            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            size = None if image is None else image.shape[:2]
        if size:
            sizes[tuple(size)] += 1
    if not sizes:
        raise EdgeSealantError("cannot read the size of any image of the split for --reference full-res")
    return sizes.most_common(1)[0][0]


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
def run_bench(options: BenchOptions, log: Callable[[str], None] = lambda message: None) -> BenchResult:
    """Measure every selected row of ``options.run`` on ``options.split`` of ``options.data``."""
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import split_role

    run = Path(options.run)
    card = ModelCard.load(run)
    threads = options.threads or physical_cores()
    header = system_header(threads)
    dataset = load_dataset_like(options.data, card.data_summary)
    samples = dataset.split(options.split)
    header.update(
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
    specs = plan_rows(run, options.backends, options.precisions, header["bf16"])
    preprocess_ms = measure_preprocess([s.path for s in samples], card, options.iterations)
    header["preprocess_ms"] = preprocess_ms
    log(f"{len(specs)} rows on {header['cpu']} with {threads} threads; preprocessing {preprocess_ms:.2f} ms/image")
    rows, curves = [], {}
    for spec in specs:
        row, curve = bench_row(spec, run, samples, options, threads, preprocess_ms, log)
        rows.append(row)
        curves[spec.label] = curve
    if options.reference:
        size = options.reference_size or source_size([s.path for s in samples])
        rows.append(reference_row(tuple(size), threads, options.reference_iterations))
        log(f"{rows[-1]['label']}: p50 {rows[-1]['latency_p50_ms']:.0f} ms")
    add_speedups(rows)
    return BenchResult(header=header, rows=rows, curves=curves)


# ---------------------------------------------------------------------------- output
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


TABLE_COLUMNS = (
    ("row", "label", None),
    ("AUROC [95% CI]", "auroc", 4),
    ("acc", "accuracy", 3),
    ("bal acc", "balanced_accuracy", 3),
    ("recall", "recall", 3),
    ("FPR", "fpr", 3),
    ("MB", "size_mb", 2),
    ("p50 ms", "latency_p50_ms", 2),
    ("p90 ms", "latency_p90_ms", 2),
    ("p99 ms", "latency_p99_ms", 2),
    ("mean ms", "latency_mean_ms", 2),
    ("img/s", "throughput_ips", 0),
    ("speed-up", "speedup_vs_torch", 2),
    ("e2e img/s", "e2e_ips", 0),
    ("e2e p50 ms", "e2e_p50_ms", 2),
)


COMPACT_KEYS = ("label", "auroc", "recall", "fpr", "size_mb", "latency_p50_ms", "latency_p99_ms", "throughput_ips", "speedup_vs_torch", "e2e_ips")


def table_cells(row: dict[str, Any], columns: Sequence[tuple[str, str, Optional[int]]] = TABLE_COLUMNS) -> list[str]:
    """Cells of one row; AUROC, recall and FPR carry their 95% interval where it was measured."""
    from edge_sealant.metrics import format_with_ci

    def cell(key: str, digits: Optional[int]) -> str:
        if digits is None:
            return str(row[key])
        if row.get(f"{key}_ci") and row[key] is not None:
            return format_with_ci(row[key], row[f"{key}_ci"], digits)
        return _fmt(row[key], digits)

    return [cell(key, digits) for _, key, digits in columns]


def header_lines(header: dict[str, Any]) -> list[str]:
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in header["isa"].items())
    versions = ", ".join(f"{k} {v}" for k, v in header["versions"].items())
    lines = [
        f"CPU: {header['cpu']} ({header['physical_cores']} physical cores, {header['logical_cpus']} logical CPUs)",
        f"ISA: {isa}",
        f"OpenVINO CPU capabilities: {', '.join(header['openvino_capabilities']) or '-'}"
        + ("" if header["bf16"] else " (no BF16: bf16 row skipped)"),
        f"threads: {header['threads']} for every backend; versions: {versions}",
    ]
    if "model" in header:
        lines.append(
            f"model: {header['model']} {header['input_size'][0]}x{header['input_size'][1]}, threshold "
            f"{header['threshold']:.4g} ({header['threshold_policy']}); {header['split']} split ({header.get('split_role', 'held-out')}): {header['images']} images; "
            f"{header['iterations']} timed runs after {header['warmup']} warm-up; preprocessing "
            f"(decode + resize) {header['preprocess_ms']:.2f} ms/image, not in the latency columns"
        )
    lines.append(f"date: {header['date']}")
    return lines


def to_markdown(result: BenchResult) -> str:
    out = ["# edge-sealant bench", ""]
    out += [f"- {line}" for line in header_lines(result.header)]
    out += ["", "| " + " | ".join(t for t, _, _ in TABLE_COLUMNS) + " |", "|" + "|".join("---" if k == "label" else "---:" for _, k, _ in TABLE_COLUMNS) + "|"]
    out += ["| " + " | ".join(table_cells(row)) + " |" for row in result.rows]
    out += [
        "",
        "Latency: batch 1, LATENCY hint, inference only (decoded and resized images in memory); "
        "img/s: THROUGHPUT hint (" + "; ".join(sorted({f"{r['backend']}: {r['throughput_mode']}" for r in result.rows if not r["timing_only"]})) + "). "
        "speed-up: torch FP32 p50 / row p50. e2e: file -> decision through the runtime "
        "(Inspector.stream for img/s, one inspect() per file for p50), decode and resize included. "
        "Rows marked 'timing only' have no accuracy.",
    ]
    if result.gate:
        out += ["", "**Drop gate failed:**", *[f"- {g}" for g in result.gate]]
    if result.plots:
        out += ["", *[f"![{name}]({Path(path).name})" for name, path in result.plots.items()]]
    return "\n".join(out) + "\n"


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return " ".join(f"{v:.6g}" for v in value) if isinstance(value, (list, tuple)) else value  # intervals: "lo hi"


def to_csv(result: BenchResult) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(ROW_KEYS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in ROW_KEYS})
    return buffer.getvalue()


def to_json(result: BenchResult) -> str:
    return json.dumps(result.to_dict(), indent=2, default=str) + "\n"


def write_plots(result: BenchResult, out_dir: Path, prefix: str = "") -> dict[str, str]:
    """ROC curves of all rows overlaid, latency bars, AUROC vs latency scatter."""
    from edge_sealant import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    curves = {k: v for k, v in result.curves.items() if len(v[0]) and v[0].min() != v[0].max()}
    if curves:
        written["roc"] = str(plots.roc_curves(curves, out_dir / f"{prefix}roc.png", title="ROC, all rows"))
    plt = plots._pyplot()
    timed = [r for r in result.rows if r["latency_p50_ms"] is not None]
    if timed:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(timed) + 1.5))
        labels = [r["label"] for r in timed]
        p50 = np.array([r["latency_p50_ms"] for r in timed])
        p99 = np.array([r["latency_p99_ms"] for r in timed])
        y = np.arange(len(timed))
        ax.barh(y, p50, color=["0.6" if r["timing_only"] else "tab:blue" for r in timed], label="p50")
        ax.errorbar(p50, y, xerr=[np.zeros_like(p50), np.maximum(p99 - p50, 0)], fmt="none", ecolor="black", capsize=3, label="to p99")
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log" if p50.max() / max(p50.min(), 1e-6) > 50 else "linear")
        ax.set(xlabel="batch-1 latency (ms)", title=f"latency, {result.header['threads']} thread(s) per backend")
        ax.legend(fontsize=8)
        written["latency"] = str(plots._save(fig, out_dir / f"{prefix}latency.png"))
    scored = [r for r in timed if r["auroc"] is not None]
    if scored:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        markers = "osD^vP*X"
        for index, row in enumerate(scored):  # a legend, not annotations: equal rows overlap
            ax.scatter(row["latency_p50_ms"], row["auroc"], s=45, marker=markers[index % len(markers)], label=row["label"], alpha=0.8)
        ax.set(xlabel="p50 latency (ms, batch 1)", ylabel="AUROC (test)", title="AUROC vs latency (up and left is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        written["auroc_vs_latency"] = str(plots._save(fig, out_dir / f"{prefix}auroc_vs_latency.png"))
    return written


def write_outputs(
    result: BenchResult,
    out_dir: Path,
    json_path: Optional[Path] = None,
    csv_path: Optional[Path] = None,
    md_path: Optional[Path] = None,
) -> dict[str, str]:
    """PNGs (+ bench.json when no --json) in ``out_dir``; JSON/CSV/Markdown where asked."""
    prefix = f"{json_path.stem}_" if json_path else ""
    result.plots = write_plots(result, out_dir, prefix)
    written = dict(result.plots)
    json_path = json_path or out_dir / "bench.json"
    atomic_write_text(json_path, to_json(result))
    written["json"] = str(json_path)
    if csv_path:
        atomic_write_text(csv_path, to_csv(result))
        written["csv"] = str(csv_path)
    if md_path:
        atomic_write_text(md_path, to_markdown(result))
        written["md"] = str(md_path)
    return written


def default_out_dir(run: Path, json_path: Optional[Path]) -> Path:
    return json_path.parent if json_path else Path(run) / "bench"


__all__ = [
    "BenchOptions",
    "BenchResult",
    "drop_gate",
    "plan_rows",
    "run_bench",
    "system_header",
    "to_csv",
    "to_markdown",
    "write_outputs",
]

