"""Everything about a model file besides running it (torch-free).

An exported model is one ``.onnx`` file (plus its external data, if any) or an OpenVINO IR
pair ``model.xml`` + ``model.bin``. Besides the graph it carries

* the model card (:class:`~edge_sealant.card.ModelCard`, from :meth:`ModelCard.to_metadata`),
  embedded as ONNX ``metadata_props`` or as OpenVINO ``rt_info`` under ``edge_sealant/<key>``,
  so a model file alone says how to feed it;
* optionally a threshold sidecar ``model.threshold.json`` beside it.

Threshold precedence (see :func:`resolve_threshold`): an explicit override, else the sidecar,
else the value embedded at export. :func:`set_threshold` changes either without re-exporting.

This module also knows which files make up a model and their size, checks a model path
before an engine sees it, and which artifact of a run folder or bundle to prefer.
``openvino``, ``onnxruntime`` and ``onnx`` are imported only by the functions that need them:
a factory PC needs only the engine of its model format.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping

from edge_sealant.card import METADATA_KEY, RUN_JSON, ModelCard, atomic_write_bytes, atomic_write_text, check_threshold
from edge_sealant.errors import EdgeSealantError

RT_INFO_ROOT = "edge_sealant"
METADATA_PREFIX = RT_INFO_ROOT + "."
SIDECAR_SUFFIX = ".threshold.json"
MODEL_SUFFIXES = (".xml", ".onnx")
THRESHOLD_MODES = ("embedded", "sidecar")
MANUAL_THRESHOLD_POLICY = "manual (edge-sealant set-threshold)"
# Best first: what `edge-sealant predict RUN` picks and the order of a bundle's models. INT8 IR
# is the deployment target; FP16 IR comes last because it is only faster on GPUs.
ARTIFACT_PREFERENCE = (
    ("openvino", "int8"),
    ("openvino", "fp32"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8"),
    ("openvino", "fp16"),
)
_ENGINE_PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime", "onnx": "onnx"}


# -------------------------------------------------------------------------------- engines
def import_engine(module: str) -> Any:
    """Import ``openvino``, ``onnxruntime`` or ``onnx``, or say in one line how to install it."""
    try:
        return __import__(module)
    except ImportError:
        raise EdgeSealantError(f"{module} is not installed (pip install {_ENGINE_PACKAGES[module]})") from None


def first_error_line(exc: BaseException) -> str:
    """The line of an engine's exception message that says what went wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # OpenVINO messages start with "Exception from src/...:" lines; the cause is further down.
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0]


# ------------------------------------------------------------------------ files and sizes
def model_files(path: str | Path) -> list[Path]:
    """The files a model consists of: ``.xml`` + ``.bin``, or the ``.onnx`` and its external data."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return [path, path.with_suffix(".bin")]
    if path.suffix.lower() == ".onnx" and path.parent.is_dir():
        return [path, *path.parent.glob(path.name + ".data"), *path.parent.glob("*.onnx_data")]
    return [path]


def model_size_mb(path: str | Path) -> float:
    """Size on disk of a model, all its files counted (the figure in bench tables and reports)."""
    return sum(p.stat().st_size for p in model_files(path) if p.is_file()) / 1e6


def check_model_path(path: str | Path) -> Path:
    """Raise a one-line error for a missing file, an unknown type or a missing/short ``.bin``."""
    path = Path(path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise EdgeSealantError(f"{path}: unknown model file type {path.suffix or '(none)'!r}; expected .xml (OpenVINO IR) or .onnx")
    if not path.is_file():
        raise EdgeSealantError(f"{path}: model file not found")
    if path.suffix.lower() == ".xml":
        check_ir_weights(path)
    return path


def check_ir_weights(xml_path: Path) -> None:
    """Raise when the ``.bin`` of an IR is missing or shorter than its ``.xml`` needs.

    OpenVINO itself reports a truncated ``.bin`` as an obscure read error (or crashes);
    a half-copied model is the usual cause on a factory PC, so say it plainly.
    """
    bin_path = xml_path.with_suffix(".bin")
    if not bin_path.is_file():
        raise EdgeSealantError(f"{xml_path}: weights file {bin_path.name} is missing (an IR is an .xml + .bin pair)")
    need = _ir_weights_end(xml_path)
    have = bin_path.stat().st_size
    if need > have:
        raise EdgeSealantError(f"{bin_path}: truncated ({have} bytes, the .xml needs {need}); copy the model again")


def _ir_weights_end(xml_path: Path) -> int:
    """Largest ``offset + size`` of the constants in an IR: what the ``.bin`` must hold."""
    end = 0
    for match in re.finditer(rb'offset="(\d+)"\s+size="(\d+)"', xml_path.read_bytes()):
        end = max(end, int(match.group(1)) + int(match.group(2)))
    return end


# ---------------------------------------------------------------------- card: OpenVINO IR
def rt_info_key(metadata_key: str) -> list[str]:
    """``"edge_sealant.card"`` -> ``["edge_sealant", "card"]`` (the rt_info path)."""
    short = metadata_key[len(METADATA_PREFIX) :] if metadata_key.startswith(METADATA_PREFIX) else metadata_key
    return [RT_INFO_ROOT, short]


def read_openvino_card(model: Any, source: str) -> ModelCard:
    """The card embedded in an ``ov.Model``'s ``rt_info``."""
    path = rt_info_key(METADATA_KEY)
    if not model.has_rt_info(path):
        return ModelCard.from_metadata({}, source=source)  # raises the standard message
    value = model.get_rt_info(path)
    text = value.astype(str) if hasattr(value, "astype") else str(value)
    return ModelCard.from_metadata({METADATA_KEY: text}, source=source)


def set_openvino_metadata(model: Any, card: ModelCard) -> None:
    """Embed ``card.to_metadata()`` in an ``ov.Model``'s ``rt_info`` (``edge_sealant/<key>``)."""
    for key, value in card.to_metadata().items():
        model.set_rt_info(str(value), rt_info_key(key))


def rewrite_ir_metadata(path: Path, card: ModelCard) -> None:
    """Edit ``<rt_info><edge_sealant>`` of a saved IR ``.xml`` in place (the ``.bin`` stays).

    Plain XML editing: no OpenVINO needed, and the weights are never rewritten.
    """
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise EdgeSealantError(f"{path}: not a valid IR .xml ({exc})") from None
    root = tree.getroot()
    rt_info = _child(root, "rt_info")
    section = _child(rt_info, RT_INFO_ROOT)
    for key, value in card.to_metadata().items():
        _child(section, rt_info_key(key)[1]).set("value", str(value))
    atomic_write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _child(parent: ET.Element, tag: str) -> ET.Element:
    """The first ``tag`` child of ``parent``, created when missing."""
    element = parent.find(tag)
    return element if element is not None else ET.SubElement(parent, tag)


# ---------------------------------------------------------------------------- card: ONNX
def read_onnx_card(session: Any, source: str) -> ModelCard:
    """The card embedded in the ``metadata_props`` of an ``onnxruntime.InferenceSession``'s model."""
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    return ModelCard.from_metadata(metadata, source=source)


def set_onnx_metadata(proto: Any, card: ModelCard) -> None:
    """Replace our ``metadata_props`` entries of an ``onnx.ModelProto`` with ``card.to_metadata()``.

    Entries of other tools are kept; stale ``edge_sealant.*`` keys of an older card are dropped.
    """
    metadata = card.to_metadata()
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata and not p.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    for key, value in keep + list(metadata.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)


def rewrite_onnx_metadata(path: Path, card: ModelCard) -> None:
    """Replace the card embedded in a saved ``.onnx`` file, atomically (needs the ``onnx`` package)."""
    onnx = import_engine("onnx")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf and onnx raise many types for a damaged file
        raise EdgeSealantError(f"{path}: cannot read ONNX model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    set_onnx_metadata(proto, card)
    atomic_write_bytes(path, proto.SerializeToString())


# ------------------------------------------------------------------------ card: any file
def read_card(path: str | Path) -> ModelCard:
    """The card embedded in a model file, without compiling it."""
    path = check_model_path(path)
    if path.suffix.lower() == ".onnx":
        return read_onnx_card(_metadata_session(path), str(path))
    ov = import_engine("openvino")
    try:
        model = ov.Core().read_model(str(path))
    except RuntimeError as exc:
        raise EdgeSealantError(f"{path}: cannot read OpenVINO IR ({first_error_line(exc)})") from None
    return read_openvino_card(model, str(path))


def _metadata_session(path: Path) -> Any:
    """An ONNX Runtime session good for reading metadata (no graph optimisation: faster)."""
    ort = import_engine("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise EdgeSealantError(f"{path}: cannot load ONNX model ({first_error_line(exc)})") from None


def rewrite_metadata(path: str | Path, card: ModelCard) -> None:
    """Replace the card embedded in a saved ``.onnx`` or IR ``.xml``, in place."""
    path = check_model_path(path)
    if path.suffix.lower() == ".onnx":
        rewrite_onnx_metadata(path, card)
    else:
        rewrite_ir_metadata(path, card)


# ------------------------------------------------------------------------------ threshold
def sidecar_path(model_path: str | Path) -> Path:
    """``.../model.xml`` -> ``.../model.threshold.json`` (wins over the embedded threshold)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + SIDECAR_SUFFIX)


def read_sidecar(model_path: str | Path) -> float | None:
    """The threshold of the sidecar file, or None when there is none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        value = data["threshold"] if isinstance(data, dict) else data
    except (OSError, ValueError, KeyError) as exc:
        raise EdgeSealantError(f"{path}: not a threshold sidecar ({type(exc).__name__}: {exc}); expected {{\"threshold\": 0.5}}") from None
    try:
        return check_threshold(value)
    except EdgeSealantError as exc:
        raise EdgeSealantError(f"{path}: {exc}") from None


def write_sidecar(model_path: str | Path, threshold: float, embedded_threshold: float) -> Path:
    """Write ``model.threshold.json`` (``{"threshold": VALUE, ...}``) beside the model, atomically."""
    from edge_sealant import __version__

    model_path = Path(model_path)
    payload = {
        "threshold": threshold,
        "model": model_path.name,
        "note": "Decision threshold for this model; wins over the value embedded in the file. "
        "Written by 'edge-sealant set-threshold'.",
        "embedded_threshold": embedded_threshold,
        "edge_sealant_version": __version__,
    }
    path = sidecar_path(model_path)
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def resolve_threshold(model_path: str | Path, card: ModelCard, override: float | None = None) -> tuple[float, str]:
    """(threshold, source) with source ``override``, ``sidecar`` or ``embedded``."""
    if override is not None:
        try:
            return check_threshold(override), "override"
        except EdgeSealantError as exc:
            raise EdgeSealantError(f"{model_path}: {exc}") from None
    sidecar = read_sidecar(model_path)
    if sidecar is not None:
        return sidecar, "sidecar"
    return check_threshold(card.threshold), "embedded"


def set_threshold(model: str | Path, value: float, mode: str = "embedded") -> dict[str, Any]:
    """Change the decision threshold of an exported model without re-exporting.

    ``embedded``: rewrite the metadata in the model file (``.onnx`` or the IR ``.xml``;
    the ``.bin`` is untouched) and the ``run.json`` beside it, atomically; an existing
    sidecar is updated too so the new value is the one in force. ``sidecar``: write only
    ``model.threshold.json`` next to the model, ``{"threshold": VALUE}``, which the runtime
    prefers over the embedded value. Returns what changed. Embedding into ``.onnx`` needs
    the ``onnx`` package; IR files and sidecars need nothing beyond this module.
    """
    path = check_model_path(model)
    value = check_threshold(value)
    if mode not in THRESHOLD_MODES:
        raise EdgeSealantError(f"threshold mode {mode!r} is not one of {', '.join(THRESHOLD_MODES)}")
    card = read_card(path)
    written = _embed_threshold(path, card, value) if mode == "embedded" else []
    sidecar = sidecar_path(path)
    # After an embedded change an old sidecar would still win: it follows the new value.
    if mode == "sidecar" or sidecar.is_file():
        embedded = value if mode == "embedded" else card.threshold
        written.append(str(write_sidecar(path, value, embedded)))
    return {
        "model": str(path),
        "previous": card.threshold,
        "threshold": value,
        "mode": mode,
        "effective_source": "sidecar" if sidecar.is_file() else "embedded",
        "written": written,
    }


def _embed_threshold(path: Path, card: ModelCard, value: float) -> list[str]:
    """Write ``value`` into the model file and its ``run.json``; returns the files written."""
    rewrite_metadata(path, card.replace(threshold=value, threshold_policy=MANUAL_THRESHOLD_POLICY))
    written = [str(path)]
    run_json = path.parent / RUN_JSON
    if run_json.is_file():
        try:
            side_card = ModelCard.load(run_json)
            side_card.replace(threshold=value, threshold_policy=MANUAL_THRESHOLD_POLICY).save(run_json)
            written.append(str(run_json))
        except EdgeSealantError:
            pass  # not our card; leave it alone
    return written


# ----------------------------------------------------------------------------- preference
def artifacts_best_first(found: Mapping[tuple[str, str], Path]) -> list[tuple[str, str]]:
    """The ``(backend, precision)`` keys of ``found``, in :data:`ARTIFACT_PREFERENCE` order, others last."""
    preferred = [key for key in ARTIFACT_PREFERENCE if key in found]
    return preferred + [key for key in found if key not in ARTIFACT_PREFERENCE]


def preferred_artifact(found: Mapping[tuple[str, str], Path]) -> Path | None:
    """The model to use among a run's artifacts (``artifacts.existing_artifacts``), or None.

    Only the kinds listed in :data:`ARTIFACT_PREFERENCE` are candidates.
    """
    for key in ARTIFACT_PREFERENCE:
        if key in found:
            return found[key]
    return None
