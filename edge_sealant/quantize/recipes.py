"""Quantization settings per model family, the backend names, and the settings record.

``DEFAULT_RECIPE`` / ``RECIPES`` mirror ``calibration/recipes.yaml`` (which carries the reasons
and the measurements); a test asserts they are equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_sealant.choices import parse_choice
from edge_sealant.errors import EdgeSealantError


# Keys: preset (performance = symmetric weights and activations, the fast CPU kernels),
# model_type (None for CNNs; "transformer" only for attention nets), fast_bias_correction
# (False = full BiasCorrection: half the remaining AUROC drop on Lite0, ~4x the time; pinned
# for MobileNetV3, which is known to lose much with the fast one), float_head (keep the
# 1-output classifier in float), target_device, overflow_fix ("enable": half-range weights in
# every conv/matmul, because AVX2/AVX-512 CPUs without VNNI saturate u8*s8 sums; NNCF's
# default fixes the first layer only, which lost 0.08 AUROC on such a CPU), onnx_* (the ONNX
# Runtime route).
DEFAULT_RECIPE: dict[str, Any] = {
    "preset": "performance",
    "model_type": None,
    "fast_bias_correction": False,
    "float_head": True,
    "target_device": "CPU",
    "overflow_fix": "enable",
    "onnx_calibrate_method": "minmax",
    "onnx_reduce_range": False,
}
RECIPES: dict[str, dict[str, Any]] = {
    "efficientnet_lite": {},
    "efficientnet": {},
    "mobilenet_v3": {"fast_bias_correction": False},
}

# Recipe keys recorded in the manifest, per backend (the other backend's keys do not apply).
_OPENVINO_KEYS = ("family", "preset", "model_type", "fast_bias_correction", "float_head", "target_device", "overflow_fix")
_ONNX_KEYS = ("family", "float_head", "onnx_calibrate_method", "onnx_reduce_range")


def normalise_backend(backend: str) -> str:
    """``openvino`` or ``onnxruntime`` for any accepted spelling (``ov``, ``onnx``...)."""
    return parse_choice(backend, ("openvino", "onnxruntime"), "backend", option="--backend")


def model_family(model: str) -> str:
    """Registry family of ``model`` (``mobilenet_v3_large`` -> ``mobilenet_v3``)."""
    try:
        from edge_sealant.models.registry import get_spec

        return get_spec(model).family
    except EdgeSealantError:
        raise
    except Exception:  # registry unavailable (torch-free install): name prefix
        for family in sorted(RECIPES, key=len, reverse=True):
            if model.startswith(family):
                return family
        return model


def recipe_for(model: str) -> dict[str, Any]:
    """The calibration settings of ``model``'s family (defaults for unknown families)."""
    family = model_family(model)
    recipe = dict(DEFAULT_RECIPE)
    recipe.update(RECIPES.get(family, {}))
    recipe["family"] = family
    return recipe


def load_recipe_file(path: str | Path) -> dict[str, Any]:
    """Parse ``calibration/recipes.yaml`` into ``{"default": {...}, "families": {name: {...}}}``.

    ``reason``/``measured`` fields are documentation and are dropped here.
    """
    import yaml

    data = yaml.safe_load(Path(path).read_text())

    def settings(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in (entry or {}).items() if k not in ("reason", "measured", "notes")}

    return {
        "default": settings(data.get("default", {})),
        "families": {name: settings(entry) for name, entry in (data.get("families") or {}).items()},
    }


def engine_settings(recipe: dict[str, Any], backend: str, accuracy_control: bool) -> dict[str, Any]:
    """The recipe values and engine that apply to ``backend``, as the manifest records them."""
    if backend == "openvino":
        settings = {k: recipe[k] for k in _OPENVINO_KEYS}
        settings["engine"] = "nncf.quantize_with_accuracy_control" if accuracy_control else "nncf.quantize"
        return settings
    settings = {k: recipe[k] for k in _ONNX_KEYS}
    settings.update(engine="onnxruntime.quantization.quantize_static", quant_format="QDQ", per_channel=True,
                    activation_type="uint8", weight_type="int8")
    return settings


def describe_engine(recipe: dict[str, Any], backend: str) -> str:
    """One line on how ``backend`` quantizes with ``recipe`` (for the progress log)."""
    if backend == "openvino":
        bias = "fast" if recipe["fast_bias_correction"] else "full"
        return f"NNCF, preset {recipe['preset']}, {bias} bias correction, overflow fix {recipe['overflow_fix']}"
    return f"ONNX Runtime quantize_static, QDQ U8S8 per-channel, {recipe['onnx_calibrate_method']} calibration"
