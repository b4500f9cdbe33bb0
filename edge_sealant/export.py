"""Export a trained run to ONNX and OpenVINO IR and check parity against torch.

Every artifact is ``DeployNet`` (uint8 N x H x W x 3 input named ``images`` in the card's
channel order, dynamic batch; output ``defect_probability`` N x 1, and ``defect_heatmap``
N x 1 x H/16 x W/16, or H/8 x W/8, for models trained from boxes) with the model card
embedded (ONNX ``metadata_props``, OpenVINO ``rt_info`` under ``edge_sealant/<key>``, both
from :meth:`ModelCard.to_metadata`, written by :mod:`edge_sealant.runtime.model_file`) and
written next to a ``run.json`` copy of that card. Changing the threshold of an exported model
afterwards is :func:`edge_sealant.runtime.model_file.set_threshold`.

Nothing half-written is ever visible: each artifact folder (``RUN/onnx/fp32/``...) is built
in a temporary sibling folder, checked for parity against torch there, and only then swapped
in by renames. OpenVINO IR is converted from the exported ONNX file (exact match, and
seconds instead of the ~20 s of tracing the torch module again).

``edge_sealant.quantize`` reuses :func:`save_onnx_model`, :func:`save_openvino_ir`, :func:`parity_images`
and :func:`torch_reference` for the INT8 artifacts.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from edge_sealant import __version__
from edge_sealant.artifacts import artifact_path
from edge_sealant.card import RUN_JSON, ModelCard, normal_permissions
from edge_sealant.choices import parse_choices
from edge_sealant.errors import EdgeSealantError
from edge_sealant.runtime.backends import open_backend
from edge_sealant.runtime.model_file import SIDECAR_SUFFIX, model_size_mb, set_onnx_metadata, set_openvino_metadata, sidecar_path

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "defect_probability"
HEATMAP_OUTPUT_NAME = "defect_heatmap"  # N x 1 x ceil(H/s) x ceil(W/s), s = card.heatmap_stride; heatmap models only
FORMATS = ("onnx", "openvino")
EXPORT_PRECISIONS = ("fp32", "fp16")
# max |probability - torch probability|. FP32 must match (a mismatch is a preprocessing or
# conversion bug). FP16 weight rounding legitimately moves probabilities by ~1e-3..1e-2 on
# sharp models, so its gate only catches broken conversions; bench reports its real AUROC.
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-2}
PARITY_LIMIT = 64
RANDOM_PARITY_IMAGES = 16
# Files an artifact folder keeps when it is exported again (user decisions, quantize records).
KEEP_ON_REEXPORT = ("model" + SIDECAR_SUFFIX, "calibration.json")

Log = Callable[[str], None]


@dataclass
class ExportedArtifact:
    """One published model and how closely it agreed with torch."""

    backend: str  # "onnxruntime" or "openvino"
    precision: str
    path: Path
    size_mb: float
    max_abs_diff: float
    mean_abs_diff: float
    tolerance: float
    inference_precision: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "size_mb": round(self.size_mb, 3)}


@dataclass
class ExportReport:
    """What :func:`export_run` wrote, on which parity images, and what the user should know."""

    run: Path
    artifacts: list[ExportedArtifact] = field(default_factory=list)
    parity_source: str = ""
    notes: list[str] = field(default_factory=list)
    bundle: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.run),
            "artifacts": [a.to_dict() for a in self.artifacts],
            "parity_source": self.parity_source,
            "notes": list(self.notes),
            "bundle": str(self.bundle) if self.bundle else None,
        }


# ------------------------------------------------------------------------------- cards
def artifact_card(card: ModelCard, backend: str, precision: str) -> ModelCard:
    """The run's card with ``backend``/``precision`` set and the export toolchain recorded."""
    versions = dict(card.library_versions)
    for module in ("torch", "onnx", "onnxruntime", "openvino", "nncf"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # not installed / no version: nothing to record
            pass
    return card.replace(backend=backend, precision=precision, library_versions=versions, edge_sealant_version=__version__)


# ------------------------------------------------------------------- atomic artifact folders
def _staging_dir(dest_dir: Path) -> Path:
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    return normal_permissions(Path(tempfile.mkdtemp(dir=dest_dir.parent, prefix=f".{dest_dir.name}.tmp-")))


def _publish_dir(staging: Path, dest_dir: Path) -> None:
    """Swap ``staging`` in as ``dest_dir`` (renames only; files worth keeping carried over)."""
    old = None
    if dest_dir.exists():
        for name in KEEP_ON_REEXPORT:
            if (dest_dir / name).is_file() and not (staging / name).exists():
                shutil.copy2(dest_dir / name, staging / name)
        old = Path(tempfile.mkdtemp(dir=dest_dir.parent, prefix=f".{dest_dir.name}.old-"))
        old.rmdir()
        dest_dir.rename(old)
    try:
        staging.rename(dest_dir)
    except BaseException:
        if old is not None:
            old.rename(dest_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_artifact(
    path: Path,
    card: ModelCard,
    write_model: Callable[[Path], None],
    extra_files: dict[str, str | bytes] | None,
    verify: Callable[[Path], Any] | None,
) -> Any:
    """Write model + run.json (+ extras) into a staging folder, verify, then publish."""
    path = Path(path)
    staging = _staging_dir(path.parent)
    try:
        staged = staging / path.name
        write_model(staged)
        card.save(staging / RUN_JSON)
        for name, content in (extra_files or {}).items():
            data = content.encode() if isinstance(content, str) else content
            (staging / name).write_bytes(data)
        outcome = verify(staged) if verify is not None else None
        _publish_dir(staging, path.parent)
        return outcome
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------- ONNX
def onnx_model_proto(net: Any, card: ModelCard, opset: int = ONNX_OPSET) -> Any:
    """Trace ``DeployNet(net)`` to an ``onnx.ModelProto`` (dynamic batch, no metadata yet).

    The TorchScript exporter: for these plain CNNs it gives the same graph as the dynamo
    exporter in ~2 s instead of ~30-60 s on a 2-core PC.
    """
    import onnx
    import torch

    from edge_sealant.models.net import DeployNet

    model = DeployNet(net).eval().cpu()
    example = torch.zeros((1, card.height, card.width, 3), dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=output_names(card),
            opset_version=opset,
            dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *output_names(card)]},
            do_constant_folding=True,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def output_names(card: ModelCard) -> list[str]:
    """The graph's outputs: the probability, then the heatmap for a heatmap model."""
    return [OUTPUT_NAME, HEATMAP_OUTPUT_NAME] if card.has_heatmap else [OUTPUT_NAME]


def save_onnx_model(
    proto: Any,
    path: str | Path,
    card: ModelCard,
    precision: str,
    extra_files: dict[str, str | bytes] | None = None,
    verify: Callable[[Path], Any] | None = None,
) -> Any:
    """Embed the card, run ``onnx.checker`` and publish ``path`` + ``run.json`` atomically.

    ``verify(staged_model_path)`` runs before publishing; raising aborts the export and
    leaves any previous artifact untouched. Returns what ``verify`` returned.
    """
    import onnx

    card = artifact_card(card, "onnxruntime", precision)
    set_onnx_metadata(proto, card)
    proto.producer_name = "edge-sealant"
    proto.producer_version = __version__
    proto.doc_string = f"edge-sealant {card.model}: uint8 NHWC {card.channel_order} images -> defect probability"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx raises ValidationError / InferenceError
        raise EdgeSealantError(f"{path}: exported ONNX fails onnx.checker ({str(exc).splitlines()[0]})") from None
    data = proto.SerializeToString()
    return _write_artifact(Path(path), card, lambda staged: staged.write_bytes(data), extra_files, verify)


# ------------------------------------------------------------------------------ OpenVINO
def onnx_to_openvino(onnx_path: str | Path) -> Any:
    """``ov.convert_model`` of our ONNX file, input tagged NHWC (names come from the ONNX)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    model.inputs[0].get_node().set_layout(ov.Layout("NHWC"))
    # The converter records the source path; a temporary folder means nothing to users.
    if model.has_rt_info(["conversion_parameters", "input_model"]):
        model.set_rt_info("model.onnx", ["conversion_parameters", "input_model"])
    return model


def save_openvino_ir(
    model: Any,
    path: str | Path,
    card: ModelCard,
    precision: str,
    extra_files: dict[str, str | bytes] | None = None,
    verify: Callable[[Path], Any] | None = None,
) -> Any:
    """Embed the card in ``rt_info`` and publish ``model.xml``/``.bin`` + ``run.json`` atomically.

    Weights stay FP32 (``compress_to_fp16=False``) unless ``precision == "fp16"``; INT8
    models keep their float parts in FP32 too. See :func:`save_onnx_model` for ``verify``.
    """
    import openvino as ov

    card = artifact_card(card, "openvino", precision)
    set_openvino_metadata(model, card)

    def write(staged: Path) -> None:
        ov.save_model(model, str(staged), compress_to_fp16=(precision == "fp16"))

    return _write_artifact(Path(path), card, write, extra_files, verify)


# -------------------------------------------------------------------------------- parity
def parity_images(card: ModelCard, limit: int = PARITY_LIMIT, seed: int = 0) -> tuple[np.ndarray, str]:
    """Up to ``limit`` val images of the run's dataset, preprocessed; else random images.

    Returns (uint8 N x H x W x 3, a description such as ``"64 val images of /data/x"``).
    """
    root = card.data_summary.get("root") if card.data_summary else None
    reason = "the run records no dataset"
    if root:
        try:
            from edge_sealant.data.loading import load_dataset_like
            from edge_sealant.imageset import load_images

            dataset = load_dataset_like(root, card.data_summary)
            for split in ("val", "test", "train"):
                samples = dataset.splits.get(split) or []
                if samples:
                    step = max(1, len(samples) // limit)
                    loaded = load_images(samples[::step][:limit], card)
                    if len(loaded.images):
                        return loaded.images, f"{len(loaded.images)} {split} images of {root}"
            reason = f"dataset {root} has no readable images"
        except EdgeSealantError as exc:
            reason = f"dataset {root} is not available ({exc})"
        except Exception as exc:  # a half-present dataset must not block export
            reason = f"dataset {root} could not be loaded ({type(exc).__name__}: {exc})"
    rng = np.random.default_rng(seed)
    count = min(limit, RANDOM_PARITY_IMAGES)
    images = rng.integers(0, 256, size=(count, card.height, card.width, 3), dtype=np.uint8)
    # Smooth half of them so the network also sees image-like, low-frequency content.
    for i in range(0, count, 2):
        import cv2

        images[i] = cv2.GaussianBlur(images[i], (0, 0), 3)
    return images, f"{count} random images ({reason})"


def torch_reference(net: Any, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Probabilities of ``DeployNet(net)`` in eager torch for uint8 NHWC ``images``."""
    from edge_sealant.models.net import DeployNet
    from edge_sealant.torch_backend import predict_in_batches

    return predict_in_batches(DeployNet(net).eval().cpu(), images, batch_size)


def parity_check(
    model_path: Path,
    images: np.ndarray,
    reference: np.ndarray,
    tolerance: float,
    label: str,
    source: str,
    precision: str | None = None,
) -> tuple[float, float, str]:
    """Run the artifact on ``images``; raise if max |p - p_torch| > ``tolerance``.

    OpenVINO runs with ``INFERENCE_PRECISION_HINT`` f32 unless ``precision`` says otherwise.
    Returns (max diff, mean diff, inference precision used).
    """
    if not len(images):
        raise EdgeSealantError(f"{label}: no image to check parity on; the export is not trusted")
    backend = open_backend(model_path, precision=precision)
    probabilities = backend.predict(images)
    diff = np.abs(probabilities.astype(np.float64) - reference.astype(np.float64))
    max_diff, mean_diff = float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0
    if not np.isfinite(max_diff) or max_diff > tolerance:
        raise EdgeSealantError(
            f"{label}: probabilities differ from torch by up to {max_diff:.3g} on {source} "
            f"(tolerance {tolerance:g}); artifact not written"
        )
    return max_diff, mean_diff, backend.inference_precision


# ------------------------------------------------------------------------------ export_run
def export_run(
    run: str | Path,
    formats: Iterable[str] | None = None,
    precisions: Iterable[str] | None = None,
    bundle: str | Path | None = None,
    parity_limit: int = PARITY_LIMIT,
    log: Log | None = None,
) -> ExportReport:
    """Export ``RUN/best.pt`` to ``RUN/onnx/fp32/model.onnx`` and ``RUN/openvino/<p>/model.xml``.

    ``formats``: ``onnx``, ``openvino`` (default both). ``precisions``: ``fp32`` (default),
    ``fp16`` (OpenVINO only; ONNX stays FP32). Each artifact is checked against torch on up
    to ``parity_limit`` val images of the run's dataset (random images when it is gone):
    FP32 must agree within 1e-4, FP16 within 5e-2, else EdgeSealantError and nothing is
    written. ``bundle``: also write a deployment zip (never overwrites).
    """
    from edge_sealant.checkpoint import load_trained

    run = Path(run)
    formats, precisions, bundle_path = _check_request(run, formats, precisions, bundle, parity_limit)
    report = ExportReport(run=run)
    if "fp16" in precisions and "onnx" in formats:
        report.notes.append("fp16 applies to OpenVINO only; ONNX was exported in fp32")
    net, card = load_trained(run)
    job = _ExportJob(run, card, _parity_reference(net, card, parity_limit), report, log or (lambda message: None))
    job.start()
    proto = onnx_model_proto(net, card)
    # The OpenVINO IRs are converted from an ONNX file: the published one, else a scratch copy.
    with tempfile.TemporaryDirectory(dir=run, prefix=".export-") as scratch:
        onnx_file = Path(scratch) / "model.onnx"
        if "onnx" in formats:
            shutil.copy2(job.export_onnx(proto), onnx_file)
        else:
            set_onnx_metadata(proto, artifact_card(card, "onnxruntime", "fp32"))
            onnx_file.write_bytes(proto.SerializeToString())
        if "openvino" in formats:
            for precision in precisions:
                job.export_openvino(onnx_file, precision)
    if bundle_path is not None:
        from edge_sealant.bundle import build_bundle

        report.bundle = build_bundle(run, bundle_path)
        job.log(f"wrote {report.bundle}")
    return report


def _check_request(
    run: Path, formats: Iterable[str] | None, precisions: Iterable[str] | None, bundle: str | Path | None, parity_limit: int
) -> tuple[list[str], list[str], Path | None]:
    """Validate an export request before any work: (formats, precisions, bundle path)."""
    if isinstance(parity_limit, bool) or not isinstance(parity_limit, int) or parity_limit < 1:
        raise EdgeSealantError(f"--parity-images {parity_limit!r} must be >= 1: an export is only trusted once it agrees with torch")
    chosen_formats = parse_choices(formats, FORMATS, "format", FORMATS, option="--format")
    chosen_precisions = parse_choices(precisions, EXPORT_PRECISIONS, "precision", ("fp32",), option="--precision")
    bundle_path = Path(bundle) if bundle is not None else None
    if bundle_path is not None:
        from edge_sealant.bundle import check_bundle_target

        check_bundle_target(bundle_path)  # fail now, not after minutes of exporting
    if not run.is_dir():
        raise EdgeSealantError(f"{run}: run folder not found")
    if chosen_formats == ["onnx"] and "fp32" not in chosen_precisions:
        raise EdgeSealantError("ONNX is exported in fp32 only; add --format openvino for fp16")
    return chosen_formats, chosen_precisions, bundle_path


@dataclass
class ParityReference:
    """Images every artifact is checked on, and torch's probabilities for them."""

    images: np.ndarray
    reference: np.ndarray
    source: str  # e.g. "64 val images of /data/x"

    def verifier(self, precision: str, target: Path) -> Callable[[Path], tuple[float, float, str]]:
        """``verify`` for :func:`save_onnx_model` / :func:`save_openvino_ir` at ``precision``'s tolerance."""
        return lambda staged: parity_check(staged, self.images, self.reference, TOLERANCE[precision], f"{target}", self.source)


def _parity_reference(net: Any, card: ModelCard, parity_limit: int) -> ParityReference:
    images, source = parity_images(card, parity_limit)
    return ParityReference(images, torch_reference(net, images), source)


@dataclass
class _ExportJob:
    """One export_run: writes each artifact, checks it and records it in the report."""

    run: Path
    card: ModelCard
    parity: ParityReference
    report: ExportReport
    log: Log

    def start(self) -> None:
        """Record (and log) which images parity is checked on; random ones are worth a note."""
        source = self.parity.source
        self.report.parity_source = source
        if " random images (" in source:
            self.report.notes.append(f"parity checked on {source}")
        self.log(f"parity images: {source}")

    def export_onnx(self, proto: Any) -> Path:
        """Publish ``RUN/onnx/fp32/model.onnx`` once it passes parity; returns its path."""
        target = artifact_path(self.run, "onnxruntime", "fp32")
        result = save_onnx_model(proto, target, self.card, "fp32", verify=self.parity.verifier("fp32", target))
        self._record("onnxruntime", "fp32", target, result)
        return target

    def export_openvino(self, onnx_file: Path, precision: str) -> None:
        """Convert ``onnx_file`` and publish ``RUN/openvino/<precision>/model.xml`` once it passes parity."""
        target = artifact_path(self.run, "openvino", precision)
        model = onnx_to_openvino(onnx_file)
        result = save_openvino_ir(model, target, self.card, precision, verify=self.parity.verifier(precision, target))
        self._record("openvino", precision, target, result)

    def _record(self, backend: str, precision: str, target: Path, result: tuple[float, float, str]) -> None:
        max_diff, mean_diff, inference_precision = result
        self.report.artifacts.append(ExportedArtifact(
            backend, precision, target, model_size_mb(target), max_diff, mean_diff, TOLERANCE[precision], inference_precision,
        ))
        self.log(f"wrote {target} (max diff {max_diff:.2g})")
        sidecar = sidecar_path(target)
        if sidecar.is_file():
            self.report.notes.append(f"kept {sidecar} from before: its threshold still wins over the exported one")
