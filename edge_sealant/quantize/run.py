"""``quantize_run``: a run's FP32 model -> INT8 model, calibration manifest, FP32-vs-INT8 report.

Written as the steps of NNCF's post-training examples: 1 load the card and the FP32 model,
2 build the dataset and the calibration set, 3 quantize, 4 score FP32 vs INT8, 5 publish,
6 return the report. Nothing here prints: progress goes to ``log``, warnings to ``warn``.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge_sealant.artifacts import artifact_path
from edge_sealant.card import ModelCard
from edge_sealant.errors import EdgeSealantError
from edge_sealant.evaluate import card_group_by
from edge_sealant.quantize.calibration import (
    MIN_CALIBRATION_IMAGES,
    CalibrationSet,
    build_calibration_set,
    build_manifest,
    label_counts,
)
from edge_sealant.quantize.engines import quantize_model
from edge_sealant.quantize.graph import (
    check_not_quantized,
    has_fp16_weights,
    kept_in_float,
    quantized_ops,
)
from edge_sealant.quantize.recipes import (
    describe_engine,
    engine_settings,
    normalise_backend,
    recipe_for,
)
from edge_sealant.quantize.scoring import Scored, score_fp32_vs_int8, weights_sizes
from edge_sealant.versions import QUANTIZATION, library_versions

MANIFEST = "calibration.json"
REPORT = "quantize_report.json"
REPORT_SPLITS = ("val", "test")

Log = Callable[[str], None]


def _ignore(message: str) -> None:
    """Default ``log`` / ``warn``: say nothing."""


def quantize_run(
    run: str | Path, data: str | Path, backend: str = "openvino", subset_size: int = MIN_CALIBRATION_IMAGES,
    split: str = "train", max_drop: float | None = None, *, seed: int | None = None, force: bool = False,
    keep_threshold: bool = False, qat_epochs: float | None = None, overflow_fix: str | None = None,
    log: Log = _ignore, warn: Log = _ignore,
) -> dict[str, Any]:
    """Quantize ``RUN``'s FP32 model to INT8, evaluate FP32 vs INT8, write model + records.

    An existing INT8 model of the same backend is replaced only with ``force``.

    ``data``: the dataset (YOLO yaml/folder, ImageFolder), loaded with the run's normal classes
    and split seed. ``subset_size``: calibration images (stratified by label from ``split``).
    ``max_drop``: switch to accuracy-controlled quantization with val AUROC as the metric
    (absolute drop); layers NNCF must keep in float are listed in the manifest. ``seed``:
    of the calibration draw (default: the run's training seed). The INT8 model's threshold is
    re-chosen on its own val scores with the run's policy, as FP32's was (``keep_threshold``:
    FP32's, unchanged; also when val was not where FP32's was chosen). ``qat_epochs``:
    quantization-aware fine-tuning of ``best.pt`` for that many epochs of the train split
    (:mod:`edge_sealant.quantize.qat`; OpenVINO only) instead of post-training quantization of
    the IR; 0 quantizes the torch net without fine-tuning (the control that tells the fine-tune's
    share from the torch route's); the report compares either with the same FP32 IR.
    ``overflow_fix`` (OpenVINO, post-training or QAT): NNCF's overflow fix instead of the recipe's
    ``enable`` (``disable``: full-range weights, for PCs known to have VNNI; see
    :mod:`edge_sealant.runtime.cpu`); the INT8 card records it. ``log`` receives progress
    lines and ``warn`` warnings, one plain-text message per call (both default to silence).
    Returns the report (also saved as ``quantize_report.json``); nothing is printed.
    """
    from edge_sealant.data.loading import load_dataset_like

    started = time.perf_counter()
    run, backend = Path(run), normalise_backend(backend)
    _check_request(run, backend, subset_size, max_drop, force, qat_epochs)
    _check_overflow_fix(overflow_fix, backend)

    # 1. The card and the FP32 model; an already quantized model is refused before data is read.
    card = ModelCard.load(run)
    seed = _run_seed(card) if seed is None else int(seed)
    source = _ensure_fp32(run, backend, log)
    model = _load_fp32_model(source, backend, warn)

    # 2. The dataset: the calibration set and the splits the report scores.
    dataset = load_dataset_like(data, card.data_summary or {})
    calibration = _draw_calibration_set(dataset, card, subset_size, split, seed, log, warn)
    eval_sets = _load_report_splits(dataset, card, need_val=max_drop is not None)
    policy = None if keep_threshold else _rechoice_policy(card, warn)

    # 3. Quantize with the family's recipe, the 1-output head kept in float when it says so.
    recipe = recipe_for(card.model)
    if overflow_fix is not None:
        recipe["overflow_fix"] = overflow_fix
        if overflow_fix != "enable":
            warn(_overflow_fix_note(overflow_fix))
    ignored = kept_in_float(model, backend, recipe["float_head"], card.has_heatmap)
    settings = _settings(recipe, backend, calibration, subset_size, ignored, max_drop)
    target = artifact_path(run, backend, "int8")
    with _scratch_beside(target) as scratch:
        val = eval_sets["val"] if max_drop is not None else None
        if qat_epochs is not None:
            quantized, accuracy_control = _quantize_aware(run, dataset, card, calibration, recipe, qat_epochs, seed, settings, log)
        else:
            quantized, accuracy_control = _quantize(model, source, calibration, recipe, ignored, backend, scratch, max_drop, val, log)
        int8_card = card.replace(precision="int8", backend=backend, metrics={})
        draft = _save_draft(quantized, scratch / "draft" / target.name, int8_card, backend)

        # 4. Score FP32 and INT8 the same way (f32 float execution); INT8's threshold re-chosen on val.
        scored = score_fp32_vs_int8(source, draft, eval_sets, card.threshold, card_group_by(card), policy)
        settings["inference_precision_hint"] = scored.precision_hint
        int8_card.threshold = scored.int8_threshold
        log(_threshold_line(card.threshold, scored))

        # 5. Publish model, card (INT8 metrics), manifest and report together.
        weights = weights_sizes(source, draft)
        report = _build_report(run, card, backend, source, target, calibration, settings, scored, weights, accuracy_control)
        manifest = build_manifest(calibration, card, settings, source, getattr(dataset, "root", None), backend, accuracy_control)
        int8_card.metrics = {**scored.int8, "quantization": {
            "fp32_vs_int8": scored.comparison, "weights_ratio": weights["ratio"],
            # read by the runtime: full-range weights on a CPU without VNNI get a warning
            "overflow_fix": recipe["overflow_fix"] if backend == "openvino" else None,  # NNCF applies it on either route
        }}
        if scored.int8_operating_point is not None:
            int8_card.metrics["operating_point"] = scored.int8_operating_point
        report["seconds"] = round(time.perf_counter() - started, 1)
        _publish(quantized, target, int8_card, backend, {MANIFEST: _json(manifest), REPORT: _json(report)}, _reproduces(scored.checks))

    # 6. The report; rendering it is the caller's business.
    return report


# ------------------------------------------------------------------ step 1: card and model
def _check_request(run: Path, backend: str, subset_size: int, max_drop: float | None, force: bool, qat_epochs: float | None = None) -> None:
    """Refuse a bad request before any work: missing run, bad sizes, an INT8 model in the way."""
    if not run.is_dir():
        raise EdgeSealantError(f"{run}: run folder not found")
    if int(subset_size) < 1:
        raise EdgeSealantError(f"--subset-size must be at least 1, got {subset_size}")
    if qat_epochs is not None:
        if not (np.isfinite(qat_epochs) and 0.0 <= float(qat_epochs) <= 20.0):
            raise EdgeSealantError(f"--qat-epochs {qat_epochs} must be in [0, 20] (a short fine-tune: 1 is typical)")
        if backend != "openvino" or max_drop is not None:
            raise EdgeSealantError("--qat-epochs works with --backend openvino and without --max-drop (the fine-tune replaces accuracy control)")
        if not (run / "best.pt").is_file():
            raise EdgeSealantError(f"--qat-epochs fine-tunes the torch model: {run} has no best.pt")
    if max_drop is not None and not 0.0 <= float(max_drop) <= 1.0:
        raise EdgeSealantError(f"--max-drop {max_drop} is outside [0, 1] (an absolute AUROC drop, e.g. 0.005)")
    if max_drop is not None and backend != "openvino":
        raise EdgeSealantError(
            "--max-drop (NNCF accuracy control) works with --backend openvino only; the ONNX route uses "
            "ONNX Runtime's quantize_static, whose models ONNX Runtime runs as integer kernels"
        )
    existing = artifact_path(run, backend, "int8")
    if existing.exists() and not force:
        raise EdgeSealantError(f"{existing} exists (made {time.ctime(existing.stat().st_mtime)}); pass --force to replace it")


OVERFLOW_FIXES = ("enable", "first_layer_only", "disable")


def _check_overflow_fix(overflow_fix: str | None, backend: str) -> None:
    if overflow_fix is None:
        return
    if overflow_fix not in OVERFLOW_FIXES:
        raise EdgeSealantError(f"--overflow-fix {overflow_fix!r} is not one of {', '.join(OVERFLOW_FIXES)}")
    if backend != "openvino":
        raise EdgeSealantError("--overflow-fix applies to NNCF quantization (--backend openvino); ONNX Runtime's route has its own 7-bit option in the recipe")


def _overflow_fix_note(overflow_fix: str) -> str:
    return (
        f"overflow fix {overflow_fix}: full-range INT8 weights are exact only on CPUs with VNNI or AMX-INT8; "
        "on a factory PC without them its INT8 sums can saturate (the runtime warns there)"
    )


def _rechoice_policy(card: ModelCard, warn: Log) -> str | None:
    """The policy to re-choose INT8's threshold with on val: the run's, when val chose FP32's."""
    from edge_sealant.evaluate import split_role
    from edge_sealant.metrics import parse_policy

    if split_role(card, "val") != "selection":
        warn("the INT8 model keeps FP32's threshold: it was not chosen on val (e.g. --folds), and INT8 has no out-of-fold scores")
        return None
    try:
        parse_policy(card.threshold_policy)
    except EdgeSealantError:
        return None  # a threshold set by hand (no policy): kept as it is
    return card.threshold_policy


def _threshold_line(fp32_threshold: float, scored: Scored) -> str:
    if scored.int8_operating_point is None:
        return f"INT8 threshold: {fp32_threshold:.4g}, FP32's"
    point = scored.int8_operating_point
    return (f"INT8 threshold: {scored.int8_threshold:.4g} ({point['policy']} on INT8's val scores; FP32's {fp32_threshold:.4g}): "
            f"val recall {point['recall']:.3f}, false-alarm rate {point['fpr']:.3f}")


def _run_seed(card: ModelCard) -> int:
    """The seed the run was trained with (0 when the card does not say)."""
    train_options = (card.train or {}).get("options", {}) if isinstance(card.train, dict) else {}
    return int(train_options.get("seed", 0))


def _ensure_fp32(run: Path, backend: str, log: Log) -> Path:
    """Path of the run's FP32 model for ``backend``, exported from ``best.pt`` first when missing."""
    path = artifact_path(run, backend, "fp32")
    if path.is_file():
        return path
    if not (run / "best.pt").is_file():
        raise EdgeSealantError(f"{path}: not found, and {run} has no best.pt to export it from")
    from edge_sealant.export import export_run

    log(f"{path} is missing: exporting it first")
    export_run(run, formats=["openvino" if backend == "openvino" else "onnx"], precisions=["fp32"], log=log)
    if not path.is_file():
        raise EdgeSealantError(f"{path}: export did not produce it")
    return path


def _load_fp32_model(source: Path, backend: str, warn: Log) -> Any:
    """The ``ov.Model`` or ``onnx.ModelProto`` at ``source``; refused when already quantized."""
    if backend == "openvino":
        import openvino as ov

        model = ov.Core().read_model(str(source))
    else:
        import onnx

        model = onnx.load(str(source))
    check_not_quantized(quantized_ops(model, backend), source)
    if backend == "openvino" and has_fp16_weights(model):
        # PITFALL: an IR saved with the default compress_to_fp16=True is an FP16 model;
        # the "FP32" column of the report would then describe FP16 weights.
        warn(f"{source} holds FP16 weights (saved with compress_to_fp16=True): the FP32 baseline is really FP16")
    return model


# ------------------------------------------------------------- step 2: calibration and data
def _draw_calibration_set(dataset: Any, card: ModelCard, subset_size: int, split: str, seed: int, log: Log, warn: Log) -> CalibrationSet:
    """The calibration set of ``split``, with a warning for each reason to distrust it."""
    if split == "test":
        warn("calibrating on the test split: its figures below are then no longer independent")
    calibration = build_calibration_set(dataset.split(split), card, subset_size, split, seed)
    if len(calibration) == 0:
        raise EdgeSealantError(f"{dataset.root}: no readable image in the '{split}' split to calibrate with")
    for problem in calibration.loaded.skipped:
        warn(f"skipped {problem}")
    if len(calibration) < MIN_CALIBRATION_IMAGES:
        warn(
            f"only {len(calibration)} calibration images (< {MIN_CALIBRATION_IMAGES}): activation ranges may be "
            "noisy; use a larger split or --subset-size"
        )
    counts = label_counts(calibration.labels)
    log(f"calibrating on {len(calibration)} {split} images ({counts['normal']} normal, {counts['defect']} defect)")
    return calibration


def _load_report_splits(dataset: Any, card: ModelCard, need_val: bool) -> dict[str, Any]:
    """``{split: LoadedImages}`` of the :data:`REPORT_SPLITS` that have readable images.

    ``need_val``: accuracy control validates on val, so refuse a dataset without one.
    """
    from edge_sealant.imageset import load_images

    eval_sets = {}
    for name in REPORT_SPLITS:
        samples = dataset.splits.get(name) or []
        if samples:
            loaded = load_images(samples, card)
            if len(loaded.images):
                eval_sets[name] = loaded
    if need_val and "val" not in eval_sets:
        raise EdgeSealantError(f"{dataset.root}: --max-drop needs a val split")
    return eval_sets


# ---------------------------------------------------------------------- step 3: quantize
def _settings(
    recipe: dict[str, Any], backend: str, calibration: CalibrationSet, subset_size: int, ignored: list[str], max_drop: float | None
) -> dict[str, Any]:
    """The settings record shared by the manifest and the report."""
    return {
        **engine_settings(recipe, backend, accuracy_control=max_drop is not None),
        "subset_size": len(calibration),
        "requested_subset_size": int(subset_size),
        "ignored_scope": ignored,
        "max_drop": None if max_drop is None else float(max_drop),
        "inference_precision_hint": "f32",  # replaced by what the FP32 backend really ran with
    }


@contextlib.contextmanager
def _scratch_beside(target: Path) -> Iterator[Path]:
    """A temporary folder next to ``target``'s folder: on the same disk, so publishing is renames."""
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent.parent, prefix=".quantize-") as name:
        yield Path(name)


def _quantize(
    model: Any,
    source: Path,
    calibration: CalibrationSet,
    recipe: dict[str, Any],
    ignored: list[str],
    backend: str,
    scratch: Path,
    max_drop: float | None,
    val: Any,
    log: Log,
) -> tuple[Any, dict[str, Any] | None]:
    """The INT8 model and the accuracy-control record (None without ``max_drop``)."""
    log(_quantizing_line(source, recipe, backend, ignored, max_drop))
    control = None if max_drop is None else (max_drop, val)
    quantized, accuracy_control = quantize_model(model, source, calibration.images, recipe, ignored, backend, scratch, control)
    if accuracy_control is not None:
        log(f"kept in float by accuracy control: {', '.join(accuracy_control['kept_in_float']) or 'nothing'}")
    if not quantized_ops(quantized, backend):
        raise EdgeSealantError(f"{source}: NNCF inserted no quantization nodes; the model was not quantized")
    return quantized, accuracy_control


def _quantize_aware(
    run: Path, dataset: Any, card: ModelCard, calibration: CalibrationSet, recipe: dict[str, Any],
    epochs: float, seed: int, settings: dict[str, Any], log: Log,
) -> tuple[Any, None]:
    """The INT8 ``ov.Model`` of quantization-aware fine-tuning; records what it did in ``settings``."""
    from edge_sealant.imageset import load_images
    from edge_sealant.quantize.qat import quantization_aware_training

    log(f"quantization-aware fine-tune of {run / 'best.pt'} ({recipe['family']}: NNCF torch, preset {recipe['preset']}, "
        f"overflow fix {recipe['overflow_fix']}, {epochs:g} epoch(s))")
    train = load_images(dataset.split("train"), card, masks=card.has_heatmap)
    quantized, record = quantization_aware_training(run / "best.pt", calibration.images, train, recipe, epochs, seed, log)
    settings.update(engine="nncf.quantize (torch) + quantization-aware fine-tune", fast_bias_correction=True,
                    ignored_scope=record["ignored"], qat=record)
    if not quantized_ops(quantized, "openvino"):
        raise EdgeSealantError(f"{run}: the quantization-aware model has no quantization nodes")
    return quantized, None


def _quantizing_line(source: Path, recipe: dict[str, Any], backend: str, ignored: list[str], max_drop: float | None) -> str:
    head = ", head kept in float" if ignored else ""
    drop = f", max AUROC drop {max_drop}" if max_drop is not None else ""
    return f"quantizing {source} ({recipe['family']}: {describe_engine(recipe, backend)}{head}{drop})"


def _save_draft(model: Any, path: Path, card: ModelCard, backend: str) -> Path:
    """Plain save (with metadata) for evaluation before publishing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if backend == "openvino":
        import openvino as ov

        from edge_sealant.runtime.model_file import set_openvino_metadata

        set_openvino_metadata(model, card)
        ov.save_model(model, str(path), compress_to_fp16=False)
    else:
        from edge_sealant.runtime.model_file import set_onnx_metadata

        set_onnx_metadata(model, card)
        path.write_bytes(model.SerializeToString())
    return path


# ---------------------------------------------------------------------- step 5: publish
def _build_report(
    run: Path,
    card: ModelCard,
    backend: str,
    source: Path,
    target: Path,
    calibration: CalibrationSet,
    settings: dict[str, Any],
    scored: Scored,
    weights: dict[str, Any],
    accuracy_control: dict[str, Any] | None,
) -> dict[str, Any]:
    """The quantize report (JSON-able); ``seconds`` is filled in last."""
    from edge_sealant.evaluate import split_role

    return {
        "run": str(run),
        "model": card.model,
        "backend": backend,
        "fp32_model": str(source),
        "int8_model": str(target),
        "threshold": card.threshold,
        "int8_threshold": {"value": scored.int8_threshold, "operating_point": scored.int8_operating_point,
                           "chosen": "on INT8's val scores" if scored.int8_operating_point else "FP32's, kept"},
        "calibration": {"split": calibration.split, "images": len(calibration), **label_counts(calibration.labels)},
        "settings": settings,
        "metrics": scored.comparison,
        "weights": weights,
        "accuracy_control": accuracy_control,
        "missing_splits": [s for s in REPORT_SPLITS if s not in scored.comparison],
        "split_roles": {name: split_role(card, name) for name in scored.comparison},
        "versions": library_versions(QUANTIZATION),
        "seconds": None,
    }


def _json(payload: Any) -> str:
    return json.dumps(payload, indent=2) + "\n"


def _reproduces(checks: dict[str, tuple[np.ndarray, np.ndarray]]) -> Callable[[Path], None]:
    """``verify`` for publishing: the staged copy must give the draft's INT8 scores."""

    def verify(staged: Path) -> None:
        from edge_sealant.runtime.backends import open_backend

        check = open_backend(staged)
        for images, expected in checks.values():
            got = check.predict(images).astype(np.float64)
            if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
                raise EdgeSealantError(f"{staged}: saved INT8 model does not reproduce its evaluation")

    return verify


def _publish(model: Any, target: Path, card: ModelCard, backend: str, extra: dict[str, str], verify: Callable[[Path], None]) -> None:
    """Stage model + ``extra`` files, ``verify`` the staged copy, swap it in by renames."""
    from edge_sealant.export import save_onnx_model, save_openvino_ir

    if backend == "openvino":
        # FP32 float parts (compress_to_fp16=False): layers kept in float stay exact.
        save_openvino_ir(model, target, card, "int8", extra_files=extra, verify=verify)
    else:
        save_onnx_model(model, target, card, "int8", extra_files=extra, verify=verify)
