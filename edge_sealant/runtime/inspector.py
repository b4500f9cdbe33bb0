"""Inspect images with an exported model: the object a factory-PC program uses.

>>> inspector = Inspector.load("model.xml")            # or model.onnx
>>> result = inspector.inspect("frame_0001.jpg")       # path, bytes, BGR/grey array
>>> result.probability, result.is_defect, result.threshold_source
>>> for r in inspector.stream(paths, queue_size=8): ...  # decode || inference, input order

Preprocessing comes from the card embedded in the model file and runs through
:func:`edge_sealant.preprocess.load_for_model`, the function training used: same resize
mode, channel order, grey-to-3-channel and EXIF orientation, and the reduced-scale JPEG
decode that makes 2532x824 frames cheap. Image problems never raise here: the result carries
``error`` (and ``probability`` None) so a production line keeps running.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, Union

import numpy as np

from edge_sealant.card import ModelCard, check_threshold
from edge_sealant.errors import EdgeSealantError
from edge_sealant.preprocess import ImageSource, load_with_box
from edge_sealant.runtime.backends import open_backend
from edge_sealant.runtime.model_file import resolve_threshold
from edge_sealant.runtime.protocol import Backend, Outputs
from edge_sealant.runtime.regions import DEFAULT_LEVEL, DefectRegion, find_regions, grid_extent

NamedImage = tuple  # (name, ImageSource): lets callers name arrays, e.g. "video.mp4#frame=12"
Source = Union[ImageSource, NamedImage]


@dataclass
class InspectionResult:
    """One image's verdict. ``probability``/``is_defect`` are None when ``error`` is set.

    Heatmap models also fill ``heatmap`` (rows x columns cell probabilities, one cell per
    ``card.heatmap_stride`` input pixels) and ``regions`` (connected cells at or above the
    inspector's ``region_level``, as boxes in source-image pixels, strongest first).
    """

    name: str
    probability: float | None
    is_defect: bool | None
    decision: str  # card.labels[1] / card.labels[0], or "error"
    threshold: float
    threshold_source: str  # "embedded", "sidecar" or "override"
    latency_ms: float  # preprocess_ms + infer_ms
    preprocess_ms: float
    infer_ms: float
    error: str | None = None
    heatmap: np.ndarray | None = field(default=None, repr=False)
    regions: list[DefectRegion] = field(default_factory=list)
    heatmap_extent: tuple[float, float, float, float] | None = field(default=None, repr=False)  # grid in source pixels

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields: the regions as dicts; the heatmap array is left out (it is large)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("heatmap", "regions", "heatmap_extent")}
        data["regions"] = [region.to_dict() for region in self.regions]
        return data


class Inspector:
    """A loaded model plus its preprocessing and decision threshold.

    ``backend`` is any :class:`~edge_sealant.runtime.protocol.Backend`, all of it used:
    :meth:`stream` keeps ``optimal_requests`` ``submit`` calls in flight, :meth:`close` calls
    ``wait_all``, :meth:`describe` reports ``path``, ``size_mb`` and ``inference_precision``.
    """

    def __init__(
        self,
        backend: Backend,
        threshold: float | None = None,
        threshold_source: str | None = None,
        path: str | Path | None = None,
        decode_workers: int | None = None,
        region_level: float = DEFAULT_LEVEL,
    ):
        self.backend = backend
        self.region_level = check_threshold(region_level)
        self.card: ModelCard = backend.card
        self.path = Path(path) if path is not None else backend.path
        if threshold is None:
            threshold, threshold_source = check_threshold(self.card.threshold), "embedded"
        self.threshold = check_threshold(threshold)
        self.threshold_source = threshold_source or "override"
        self.decode_workers = decode_workers or max(2, min(4, os.cpu_count() or 2))
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "CPU",
        hint: str = "LATENCY",
        precision: str | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        threshold: float | None = None,
    ) -> Inspector:
        """Open a ``.xml`` (OpenVINO) or ``.onnx`` (ONNX Runtime) exported by edge-sealant.

        ``threshold`` overrides the sidecar ``model.threshold.json``, which overrides the
        value embedded at export; ``threshold_source`` says which one is in use.
        ``precision`` (OpenVINO): None/"f32" (default, true f32), "bf16" or "f16".
        ``hint``: "LATENCY" for one image at a time, "THROUGHPUT" for :meth:`stream`.
        """
        if not isinstance(path, (str, Path)) or not str(path):
            raise EdgeSealantError(f"Inspector.load needs the path of a .xml or .onnx model, got {type(path).__name__}")
        backend = open_backend(path, device=device, hint=hint, precision=precision, cache_dir=cache_dir, threads=threads)
        value, source = resolve_threshold(path, backend.card, threshold)
        return cls(backend, threshold=value, threshold_source=source, path=path)

    # ------------------------------------------------------------------------ properties
    @property
    def inference_precision(self) -> str:
        """What the engine really computes in (``f32``, ``bf16``...), read back from OpenVINO."""
        return self.backend.inference_precision

    def set_threshold(self, value: float) -> None:
        """Override the threshold for this process (the files are not changed)."""
        self.threshold = check_threshold(value)
        self.threshold_source = "override"

    def describe(self) -> dict[str, Any]:
        return {
            "model": str(self.path),
            "backend": self.backend.name,
            "precision": self.backend.precision,
            "inference_precision": self.inference_precision,
            "size_mb": round(float(self.backend.size_mb), 3),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "input_size": list(self.card.input_size),
            "resize_mode": self.card.resize_mode,
            "channel_order": self.card.channel_order,
        }

    # ---------------------------------------------------------------------- preprocessing
    def preprocess(self, source: ImageSource) -> np.ndarray:
        """The model's H x W x 3 uint8 input for one image (raises EdgeSealantError)."""
        return self._load(source)[0]

    def _load(self, source: ImageSource) -> tuple[np.ndarray, tuple[int, int, int, int], tuple[int, int]]:
        card = self.card
        return load_with_box(source, card.input_size, card.resize_mode, card.channel_order)

    def prepare(self, item: Source, default_name: str = "<image>") -> PreparedImage:
        """Decode and resize one image for the engine; a bad image gives ``error``, never raises.

        With :meth:`verdict` this is the inspector in two steps, for callers that schedule the
        engine themselves (the model server).
        """
        name, source = _split_name(item, default_name)
        start = time.perf_counter()
        try:
            image, box, source_hw = self._load(source)
            return PreparedImage(name, image, (time.perf_counter() - start) * 1e3, None, box, source_hw)
        except EdgeSealantError as exc:
            error = str(exc)
        except Exception as exc:  # OpenCV errors on odd arrays: still one row, not a crash
            error = f"{name}: {type(exc).__name__}: {exc}"
        return PreparedImage(name, None, (time.perf_counter() - start) * 1e3, error)

    def verdict(self, item: PreparedImage, outputs: Outputs | None = None, index: int = 0, infer_ms: float = 0.0) -> InspectionResult:
        """The verdict on ``item`` from row ``index`` of the engine's ``outputs`` (None: an error row)."""
        pre_ms = item.pre_ms
        if item.error is not None or outputs is None:
            return InspectionResult(item.name, None, None, "error", self.threshold, self.threshold_source,
                                    round(pre_ms + infer_ms, 3), round(pre_ms, 3), round(infer_ms, 3), item.error or "no output")
        probability = float(outputs.probability[index])
        is_defect = bool(probability >= self.threshold)
        heatmap, regions, extent = None, [], None
        if outputs.heatmap is not None:
            heatmap, stride = outputs.heatmap[index], self.card.heatmap_stride
            regions = find_regions(heatmap, stride, item.box, item.source_hw, self.region_level)
            extent = grid_extent(heatmap.shape, stride, item.box, item.source_hw)
        return InspectionResult(
            item.name, probability, is_defect, self.card.labels[int(is_defect)], self.threshold, self.threshold_source,
            round(pre_ms + infer_ms, 3), round(pre_ms, 3), round(infer_ms, 3), heatmap=heatmap, regions=regions,
            heatmap_extent=extent,
        )

    # --------------------------------------------------------------------------- inspect
    def inspect(self, source: Source | Sequence[Source] | np.ndarray) -> InspectionResult | list[InspectionResult]:
        """One result for one image; a list for a list/tuple of images or an N x H x W x C array.

        An image is a path, encoded bytes, a decoded BGR or grey uint8 array, or a
        ``(name, image)`` pair.
        """
        if _is_batch(source):
            items = list(source)
            return self._inspect_many(items)
        return self._inspect_many([source])[0]

    def _inspect_many(self, items: list[Source]) -> list[InspectionResult]:
        if not items:
            return []
        defaults = [_default_name(item, i, len(items)) for i, item in enumerate(items)]
        if len(items) == 1:
            prepared = [self.prepare(items[0], defaults[0])]
        else:
            prepared = list(self._decode_pool().map(self.prepare, items, defaults))
        ok = [i for i, p in enumerate(prepared) if p.image is not None]
        outputs, infer_ms = None, 0.0
        if ok:
            start = time.perf_counter()
            outputs = self.backend.infer(np.stack([prepared[i].image for i in ok]))
            infer_ms = (time.perf_counter() - start) * 1e3 / len(ok)
        row = {i: k for k, i in enumerate(ok)}
        return [self.verdict(p, outputs if i in row else None, row.get(i, 0), infer_ms if i in row else 0.0)
                for i, p in enumerate(prepared)]

    # ---------------------------------------------------------------------------- stream
    def stream(self, sources: Iterable[Source], queue_size: int | None = None) -> Iterator[InspectionResult]:
        """Inspect many images, decoding in threads while inference runs asynchronously.

        Results come in input order. ``queue_size`` bounds the images in flight (decoded or
        being decoded plus submitted to the engine); the default keeps every decode worker
        and every OpenVINO infer request busy. An unreadable image yields an error result.
        With OpenVINO, load with ``hint="THROUGHPUT"`` to let the engine run several requests
        at once.
        """
        requests = int(self.backend.optimal_requests)
        queue_size = max(2, int(queue_size or 2 * (self.decode_workers + max(2, requests))))
        pool = self._decode_pool()
        iterator = iter(sources)
        decoding: deque[Future] = deque()
        inferring: deque[tuple[PreparedImage, Future | None, float]] = deque()
        counter = 0
        exhausted = False

        def refill() -> None:
            nonlocal counter, exhausted
            while not exhausted and len(decoding) + len(inferring) < queue_size:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    return
                decoding.append(pool.submit(self.prepare, item, _default_name(item, counter, 2)))
                counter += 1

        def start_inference(prepared: PreparedImage) -> None:
            if prepared.error is not None:
                inferring.append((prepared, None, 0.0))
                return
            inferring.append((prepared, self.backend.submit(prepared.image[None]), time.perf_counter()))

        refill()
        while decoding or inferring:
            # Hand decoded images to the engine in order; block on decoding only when idle.
            while decoding and (decoding[0].done() or not inferring):
                start_inference(decoding.popleft().result())
                refill()
            prepared, future, started = inferring.popleft()
            yield self._finished(prepared, future, started)
            refill()

    def _finished(self, prepared: PreparedImage, future: Future | None, started: float) -> InspectionResult:
        if future is None:
            return self.verdict(prepared)
        try:
            outputs = future.result()
        except EdgeSealantError as exc:
            prepared.error = str(exc)
            return self.verdict(prepared)
        return self.verdict(prepared, outputs, 0, (time.perf_counter() - started) * 1e3)

    # ------------------------------------------------------------------------- lifecycle
    def _decode_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.backend.wait_all()

    def __enter__(self) -> Inspector:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Inspector({self.path}, backend={self.backend.name}, precision={self.backend.precision}, "
            f"threshold={self.threshold} ({self.threshold_source}))"
        )


@dataclass
class PreparedImage:
    """One decoded image on its way to the engine (:meth:`Inspector.prepare`), or the error that stopped it."""

    name: str
    image: np.ndarray | None
    pre_ms: float
    error: str | None
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # content box inside the model input
    source_hw: tuple[int, int] = (0, 0)


def _is_batch(source: Any) -> bool:
    if isinstance(source, np.ndarray):
        return source.ndim == 4
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], str) and not isinstance(source[1], str):
        return False  # a (name, image) pair
    return isinstance(source, (list, tuple))


def _split_name(item: Source, default: str) -> tuple[str, ImageSource]:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0], item[1]
    return default, item


def _default_name(item: Any, index: int, count: int) -> str:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0]
    if isinstance(item, (str, Path)):
        return str(item)
    kind = "bytes" if isinstance(item, (bytes, bytearray, memoryview)) else "array"
    return f"<{kind}>" if count == 1 else f"<{kind} #{index}>"
