"""Timing primitives: latency, preprocessing, throughput, end to end, and the full-res reference.

Timing rules (the same for every row):

* one thread count for all backends (``torch.set_num_threads``, ORT ``intra_op_num_threads``,
  OpenVINO ``INFERENCE_NUM_THREADS``), by default the physical cores;
* latency: batch 1, real images of the split already decoded and resized (inference only),
  cycling through them after a warm-up; preprocessing (decode + resize of the same files)
  is timed apart;
* throughput: OpenVINO runs batch-1 requests through an ``AsyncInferQueue`` holding the
  compiled model's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``; ONNX Runtime and torch run batches
  of ``THROUGHPUT_BATCH`` images on the same threads;
* end to end: the torch-free runtime (``Inspector``) from files to decisions, decode and
  resize included.

Each function takes an open backend (or a path) and returns numbers; choosing and opening
the backend of a table row is :mod:`edge_sealant.bench.table`'s job.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edge_sealant.card import ModelCard
from edge_sealant.errors import EdgeSealantError

THROUGHPUT_BATCH = 16
# Distinct batch-1 inputs kept in memory: enough to defeat caches, few enough to stay small.
MAX_SINGLES = 256


@dataclass
class Timing:
    """Percentiles and mean of a series of timed calls, in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Timing:
        """Summarise durations given in seconds."""
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(ms.mean()))


def set_torch_threads(threads: int) -> None:
    """The shared thread count, applied to torch (imported only here)."""
    import torch

    torch.set_num_threads(threads)


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


def single_images(images: np.ndarray) -> list[np.ndarray]:
    """Contiguous 1 x H x W x 3 inputs, one per image (at most ``MAX_SINGLES``)."""
    return [np.ascontiguousarray(images[i : i + 1]) for i in range(min(len(images), MAX_SINGLES))]


def batch_of(images: np.ndarray, size: int, start: int = 0) -> np.ndarray:
    """``size`` images cycling through ``images`` from ``start`` (repeats when there are fewer)."""
    index = (np.arange(size) + start) % len(images)
    return np.ascontiguousarray(images[index])


def measure_latency(backend: Any, images: np.ndarray, iterations: int, warmup: int) -> Timing:
    """Batch-1 inference latency, cycling through real (already resized) images."""
    singles = single_images(images)
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
    ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``; returns (images/s, number of requests). Uses the
    OpenVINO backend's ``compiled`` model and ``optimal_requests``, which the ``Backend``
    protocol does not declare.
    """
    import openvino as ov

    jobs = max(1, int(backend.optimal_requests))
    queue = ov.AsyncInferQueue(backend.compiled, jobs)
    singles = single_images(images)
    for i in range(jobs * 2):  # warm-up: every request runs at least once
        queue.start_async({0: singles[i % len(singles)]})
    queue.wait_all()
    total = max(total, 4 * jobs)
    start = time.perf_counter()
    for i in range(total):
        queue.start_async({0: singles[i % len(singles)]})  # blocks while every request is busy
    queue.wait_all()
    return total / (time.perf_counter() - start), jobs


def measure_end_to_end(
    path: Path, files: Sequence[Path], threads: int, count: int, precision: Optional[str] = None
) -> tuple[float, float]:
    """File -> decision through the torch-free runtime, decode and resize included.

    Images/s: ``Inspector.stream`` (THROUGHPUT hint, decoding in threads while inference runs)
    over ``count`` files cycling through ``files``. p50: one ``Inspector.inspect(path)`` per
    file with the LATENCY hint, for up to 100 files.
    """
    files = [Path(files[i % len(files)]) for i in range(count)]
    ips = _streamed_images_per_second(path, files, threads, precision)
    return ips, _inspect_p50_ms(path, files[: min(count, 100)], threads, precision)


def _streamed_images_per_second(path: Path, files: list[Path], threads: int, precision: Optional[str]) -> float:
    """Images/s of ``Inspector.stream`` over ``files``; any failed image is an error."""
    from edge_sealant.runtime.inspector import Inspector

    with Inspector.load(path, hint="THROUGHPUT", precision=precision, threads=threads) as inspector:
        for _ in inspector.stream(files[: min(8, len(files))]):  # warm-up
            pass
        start = time.perf_counter()
        results = list(inspector.stream(files))
        ips = len(results) / (time.perf_counter() - start)
    errors = [r.error for r in results if r.error]
    if errors:
        raise EdgeSealantError(f"end-to-end run of {path}: {len(errors)} image(s) failed, e.g. {errors[0]}")
    return ips


def _inspect_p50_ms(path: Path, files: list[Path], threads: int, precision: Optional[str]) -> float:
    """Median ms of one ``Inspector.inspect`` call per file (LATENCY hint)."""
    from edge_sealant.runtime.inspector import Inspector

    with Inspector.load(path, hint="LATENCY", precision=precision, threads=threads) as inspector:
        inspector.inspect(files[0])  # warm-up
        seconds = time_calls(lambda i: inspector.inspect(files[i]), len(files), 0)
    return float(np.percentile(np.asarray(seconds) * 1e3, 50))


def measure_reference(size: tuple[int, int], threads: int, iterations: int = 3, warmup: int = 1) -> Timing:
    """The approach we replace: EfficientNet-B0 at full source resolution, torch eager (timing only)."""
    import torch
    import torchvision

    set_torch_threads(threads)
    net = torchvision.models.efficientnet_b0(weights=None).eval()
    image = torch.rand(1, 3, *size)
    with torch.inference_mode():
        return Timing.of(time_calls(lambda i: net(image), iterations, warmup))


def source_size(paths: Sequence[Path]) -> tuple[int, int]:
    """(H, W) of the split's source images: the most common size among the first 50 files."""
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
