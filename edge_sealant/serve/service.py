"""One loaded model behind the inference protocol: images in, verdicts and tensors out.

Both protocol front ends (REST and gRPC) call :meth:`InspectionService.infer`. Decoding runs
in a thread pool (the reduced-scale JPEG decode of :mod:`edge_sealant.preprocess`, the one
training used) and inference through the backend's asynchronous ``submit``, so concurrent
requests keep the decoders and every OpenVINO infer request busy, as ``Inspector.stream``
does in process. No kserve import here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_sealant.errors import EdgeSealantError
from edge_sealant.runtime.inspector import InspectionResult, Inspector, PreparedImage
from edge_sealant.runtime.model_file import ARTIFACT_PREFERENCE, model_files
from edge_sealant.serve.metrics import ServeMetrics
from edge_sealant.serve.options import ServeOptions
from edge_sealant.serve.tensors import INPUT_NAME, OutputTensor, RequestError, output_tensors

PLATFORMS = {"openvino": "openvino_ir", "onnxruntime": "onnxruntime_onnx"}


class InspectionService:
    """An :class:`Inspector` shared by concurrent requests, with its metrics and metadata."""

    def __init__(self, inspector: Inspector, name: str, max_batch: int = 32):
        self.inspector = inspector
        self.name = name
        self.max_batch = int(max_batch)
        self.card = inspector.card
        self.version = model_version(inspector.path)
        self.metrics = ServeMetrics(name)
        self._decoders = ThreadPoolExecutor(inspector.decode_workers, thread_name_prefix="serve-decode")
        # One thread hands batches to the engine: OpenVINO's AsyncInferQueue is fed from one
        # thread and blocks it while every infer request is busy, which is our back-pressure.
        self._submitter = ThreadPoolExecutor(1, thread_name_prefix="serve-submit")

    @classmethod
    def load(cls, options: ServeOptions, threads: int | None = None) -> InspectionService:
        """Open the model of ``options`` (a model file, a run folder or a bundle zip).

        ``threads``: inference threads (default: every core).
        """
        path = resolve_served_model(options.model)
        # THROUGHPUT: several infer requests run at once, one per concurrent client batch.
        inspector = Inspector.load(path, device=options.device, hint="THROUGHPUT", precision=options.precision,
                                   threshold=options.threshold, threads=threads)
        return cls(inspector, options.name, options.max_batch)

    # ----------------------------------------------------------------------------- infer
    async def infer(self, images: Sequence[bytes | np.ndarray]) -> list[InspectionResult]:
        """Verdicts for ``images`` (encoded bytes or BGR arrays), in order.

        An image that cannot be decoded fails the whole request with :class:`RequestError`:
        the protocol's output tensors have no room for a missing row.
        """
        loop = asyncio.get_running_loop()
        prepared: list[PreparedImage] = await asyncio.gather(*(
            loop.run_in_executor(self._decoders, self.inspector.prepare, image, f"image {index}")
            for index, image in enumerate(images)
        ))
        for item in prepared:
            if item.error is not None:
                raise RequestError(f"{item.name} is not a readable image ({_short(item.error, item.name)})")
        started = time.perf_counter()
        future = await loop.run_in_executor(self._submitter, self.inspector.backend.submit,
                                            np.stack([item.image for item in prepared]))
        outputs = await asyncio.wrap_future(future)
        infer_ms = (time.perf_counter() - started) * 1e3 / len(prepared)
        results = [self.inspector.verdict(item, outputs, index, infer_ms) for index, item in enumerate(prepared)]
        self.metrics.decisions(r.is_defect for r in results)
        return results

    def output_tensors(self, results: Sequence[InspectionResult]) -> list[OutputTensor]:
        heatmaps = np.stack([r.heatmap for r in results]) if self.card.has_heatmap else None
        return output_tensors([r.probability for r in results], [r.is_defect for r in results], heatmaps)

    # -------------------------------------------------------------------------- metadata
    @property
    def platform(self) -> str:
        return PLATFORMS.get(self.inspector.backend.name, self.inspector.backend.name)

    def metadata(self) -> dict[str, Any]:
        """The v2 model metadata: the input and outputs, with shapes (-1: any)."""
        outputs = [
            {"name": "probability", "datatype": "FP32", "shape": [-1]},
            {"name": "is_defect", "datatype": "BOOL", "shape": [-1]},
        ]
        if self.card.has_heatmap:
            outputs.append({"name": "heatmap", "datatype": "FP32", "shape": [-1, *self.card.heatmap_size]})
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": outputs,
        }

    def response_parameters(self) -> dict[str, Any]:
        """What every response says about the decision: threshold, labels, model version."""
        return {
            "threshold": float(self.inspector.threshold),
            "threshold_source": self.inspector.threshold_source,
            "labels": ",".join(self.card.labels),
            "model_version": self.version,
        }

    def config(self) -> dict[str, Any]:
        """The model card in the shape of Triton's model configuration (``/v2/models/NAME/config``).

        ``parameters.card`` holds the whole card as JSON (input size, resize mode, labels,
        threshold, metrics...); the other parameters are its most used fields.
        """
        card = asdict(self.card)
        parameters = {
            "card": json.dumps(card, default=str),
            "input_size": "x".join(str(v) for v in self.card.input_size),
            "inputs_accepted": "BYTES [N] encoded images; UINT8 [N, H, W, 3] pixels (BGR, or RGB with parameter color_order)",
            **{k: str(v) for k, v in self.response_parameters().items()},
        }
        return {
            "name": self.name,
            "platform": self.platform,
            "version": self.version,
            "max_batch_size": self.max_batch,
            "input": [{"name": INPUT_NAME, "data_type": "TYPE_STRING", "dims": [1]}],
            "output": [{"name": o["name"], "data_type": "TYPE_" + ("FP32" if o["datatype"] == "FP32" else "BOOL"),
                        "dims": o["shape"][1:] or [1]} for o in self.metadata()["outputs"]],
            "parameters": {key: {"string_value": value} for key, value in parameters.items()},
        }

    def describe(self) -> dict[str, Any]:
        """One line of facts for the start-up log."""
        return {**self.inspector.describe(), "name": self.name, "version": self.version,
                "heatmap": self.card.has_heatmap}

    def close(self) -> None:
        self._decoders.shutdown(wait=True)
        self._submitter.shutdown(wait=True)
        self.inspector.close()


def _short(error: str, name: str) -> str:
    """The inspector's error without the image name it starts with (we already said it)."""
    for prefix in (f"{name}: ", "image bytes: "):
        if error.startswith(prefix):
            return error[len(prefix):]
    return error


# --------------------------------------------------------------------------------- models
def model_version(path: str | Path) -> str:
    """The first 12 hex digits of SHA-256 over the model's files: which model decided."""
    digest = hashlib.sha256()
    for file in model_files(path):
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def resolve_served_model(model: str | Path) -> Path:
    """A model file, a run folder (its best artifact) or a bundle zip (its best model, unpacked)."""
    from edge_sealant.predict import resolve_model

    model = Path(model)
    if model.suffix.lower() == ".zip":
        return unpack_bundle_model(model)
    if not model.exists():
        raise EdgeSealantError(f"{model}: no such model file, run folder or bundle")
    return resolve_model(model)


def unpack_bundle_model(bundle: Path) -> Path:
    """Unpack the best model of an ``export --bundle`` zip into a temporary folder.

    The folder is removed when the process exits (``atexit``).
    """
    import atexit

    try:
        with zipfile.ZipFile(bundle) as zf:
            folder, files = _best_bundle_model(zf, bundle)
            target = Path(tempfile.mkdtemp(prefix="edge-sealant-serve-"))
            atexit.register(shutil.rmtree, target, True)
            for name in files:
                destination = target / Path(name).name
                with zf.open(name) as src, open(destination, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, OSError) as exc:
        raise EdgeSealantError(f"{bundle}: not a readable bundle zip ({exc})") from None
    model = next((target / Path(n).name for n in files if Path(n).suffix in (".xml", ".onnx")), None)
    if model is None:
        raise EdgeSealantError(f"{bundle}: {folder} has no model file")
    return model


def _best_bundle_model(zf: zipfile.ZipFile, bundle: Path) -> tuple[str, list[str]]:
    """The ``models/<backend>-<precision>`` folder to serve, best first, and its files."""
    from edge_sealant.bundle import model_folder

    folders: dict[str, list[str]] = {}
    for name in zf.namelist():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "models" and parts[2]:
            folders.setdefault(f"models/{parts[1]}", []).append(name)
    for backend, precision in ARTIFACT_PREFERENCE:
        folder = model_folder(backend, precision)
        if folder in folders:
            return folder, folders[folder]
    raise EdgeSealantError(f"{bundle}: no models/ folder of a known kind (is it an 'export --bundle' zip?)")
