#!/usr/bin/env python
"""Where INT8's error comes from: the recipe's post-training INT8 against variants, per run.

For each run's FP32 IR this quantizes, with the run's calibration draw (``subset_size`` train
images, the run's seed), the recipe (``recipe``) and variants of it:

* ``overflow-disable`` / ``overflow-first-layer``: NNCF's overflow fix off / on the first layer
  only, i.e. full-range 8-bit weights (exact only on CPUs with VNNI or AMX-INT8);
* ``float-blocks-A-B``: the recipe with backbone blocks A..B also kept in float;
* ``float-conv-head``: the recipe with the last 1x1 conv before pooling kept in float.

Every model is executed here (f32 for the float parts) on val and test; per split the table
holds the mean absolute difference of the INT8 image logit from FP32's (label-free, so it
resolves what 60 defect images cannot), its mean shift on normal and defect images, and the
AUROC drop with its paired 95% interval. The variants do not change the default; they say
whether the error sits in one place or is spread over the network, and what full-range
weights would buy on a PC known to have VNNI.

    python benchmarks/int8_error.py DATA RUN [RUN ...] --variants recipe,overflow-disable,float-blocks-0-5
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant.bench import cpu_info, cpu_label, publish_results  # noqa: E402

SPLITS = ("val", "test")
DEFAULT_VARIANTS = "recipe,overflow-disable,float-conv-head,float-blocks-0-5"


def variant_settings(variant: str, recipe: dict[str, Any], ignored: list[str], conv_names: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(recipe, ignored op names) of ``variant`` (see the module doc)."""
    recipe, ignored = dict(recipe), list(ignored)
    if variant == "recipe":
        return recipe, ignored
    if variant == "overflow-disable":
        return {**recipe, "overflow_fix": "disable"}, ignored
    if variant == "overflow-first-layer":
        return {**recipe, "overflow_fix": "first_layer_only"}, ignored
    if variant == "float-conv-head":
        return recipe, ignored + [name for name in conv_names if "conv_head" in name]
    blocks = re.fullmatch(r"float-blocks-(\d+)-(\d+)", variant)
    if blocks:
        low, high = int(blocks.group(1)), int(blocks.group(2))
        inside = [name for name in conv_names if (m := re.search(r"blocks\.(\d+)[./]", name)) and low <= int(m.group(1)) <= high]
        return recipe, ignored + inside
    raise SystemExit(f"unknown variant {variant!r}: recipe, overflow-disable, overflow-first-layer, float-conv-head, float-blocks-A-B")


def logits(model: Any, images: np.ndarray) -> np.ndarray:
    """Image logits of an ``ov.Model`` (f32 execution), batches of 16."""
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    probabilities = np.concatenate([compiled(images[i : i + 16])[compiled.outputs[0]].reshape(-1) for i in range(0, len(images), 16)])
    probabilities = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(probabilities / (1 - probabilities))


def error_row(labels: np.ndarray, fp32: np.ndarray, int8: np.ndarray, groups: list[int] | None) -> dict[str, Any]:
    """INT8's logit error against FP32 and its AUROC drop (paired interval) on one split."""
    from sklearn.metrics import roc_auc_score

    from edge_sealant.metrics import paired_auroc_difference_interval

    labels = np.asarray(labels)
    difference = int8 - fp32
    return {
        "logit_mad": float(np.mean(np.abs(difference))),
        "shift_normal": float(difference[labels == 0].mean()),
        "shift_defect": float(difference[labels == 1].mean()),
        "fp32_logit_sd": float(fp32.std()),
        "auroc_drop": float(roc_auc_score(labels, fp32) - roc_auc_score(labels, int8)),
        "auroc_drop_ci": paired_auroc_difference_interval(labels, fp32, int8, groups=groups),
    }


def measure(run: Path, data: Path, variants: list[str], subset_size: int) -> dict[str, Any]:
    import openvino as ov

    from edge_sealant.card import ModelCard
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import card_group_by, part_groups
    from edge_sealant.imageset import load_images
    from edge_sealant.quantize.calibration import build_calibration_set
    from edge_sealant.quantize.engines import quantize_openvino_model
    from edge_sealant.quantize.graph import kept_in_float
    from edge_sealant.quantize.recipes import recipe_for

    card = ModelCard.load(run)
    dataset = load_dataset_like(data, card.data_summary or {})
    seed = int(((card.train or {}).get("options") or {}).get("seed", 0))
    calibration = build_calibration_set(dataset.split("train"), card, subset_size, "train", seed)
    sets = {split: load_images(dataset.split(split), card) for split in SPLITS}
    groups = {split: part_groups(loaded.samples, card_group_by(card)) for split, loaded in sets.items()}
    fp32 = ov.Core().read_model(str(run / "openvino" / "fp32" / "model.xml"))
    reference = {split: logits(fp32, loaded.images) for split, loaded in sets.items()}
    conv_names = [op.get_friendly_name() for op in fp32.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    base_ignored = kept_in_float(fp32, "openvino", recipe_for(card.model)["float_head"], card.has_heatmap)
    rows = []
    for variant in variants:
        recipe, ignored = variant_settings(variant, recipe_for(card.model), base_ignored, conv_names)
        started = time.perf_counter()
        quantized = quantize_openvino_model(fp32.clone(), calibration.images, recipe, ignored)
        seconds = time.perf_counter() - started
        splits = {split: error_row(sets[split].labels, reference[split], logits(quantized, sets[split].images), groups[split]) for split in SPLITS}
        rows.append({"variant": variant, "overflow_fix": recipe["overflow_fix"], "float_ops": len(ignored), "seconds": round(seconds, 1), "splits": splits})
        print(f"{run.name} {variant}: " + "; ".join(f"{s} mad {r['logit_mad']:.3f} drop {r['auroc_drop']:+.4f}" for s, r in splits.items()), file=sys.stderr)
    return {"run": str(run), "model": card.model, "input_size": list(card.input_size), "calibration_images": len(calibration), "variants": rows}


def markdown(payload: dict[str, Any]) -> str:
    from edge_sealant.metrics import format_difference

    cpu = payload["cpu"]
    lines = [
        f"# Where INT8's error comes from ({payload['date']})",
        "",
        f"{payload['data']}; NNCF post-training INT8 of each run's FP32 IR, executed (f32 float parts) on {cpu_label(cpu)}. "
        f"Logit error: mean |INT8 logit - FP32 logit| over the split's images "
        "(FP32 logits' sd in the header of each run). Drop: FP32 - INT8 AUROC, paired 95% interval (resampling parts).",
        "",
    ]
    for entry in payload["runs"]:
        sd = " / ".join(f"{entry['variants'][0]['splits'][s]['fp32_logit_sd']:.1f}" for s in SPLITS)
        lines += [f"## {entry['run']} ({entry['model']} {entry['input_size'][0]}x{entry['input_size'][1]}; FP32 logit sd val / test {sd})", "",
                  "| variant | overflow fix | ops in float | val logit error | val shift normal / defect | val AUROC drop | test logit error | test shift normal / defect | test AUROC drop | s |",
                  "|---|---|---:|---:|---|---|---:|---|---|---:|"]
        for row in entry["variants"]:
            cells = []
            for split in SPLITS:
                r = row["splits"][split]
                cells += [f"{r['logit_mad']:.3f}", f"{r['shift_normal']:+.2f} / {r['shift_defect']:+.2f}", format_difference(r["auroc_drop"], r["auroc_drop_ci"])]
            lines.append(f"| {row['variant']} | {row['overflow_fix']} | {row['float_ops']} | " + " | ".join(cells) + f" | {row['seconds']:.0f} |")
        lines.append("")
    lines += ["| variant | val logit error (runs) | test logit error (runs) | val drop (runs) | test drop (runs) |", "|---|---|---|---|---|"]
    for index, row in enumerate(payload["runs"][0]["variants"]):
        per = [entry["variants"][index]["splits"] for entry in payload["runs"]]
        lines.append(f"| {row['variant']} | " + " | ".join(
            " / ".join(f"{p[s][key]:{fmt}}" for p in per) for key, fmt in (("logit_mad", ".3f"), ("auroc_drop", "+.4f")) for s in SPLITS
        ) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", nargs="+", type=Path, help="runs with an FP32 OpenVINO export (edge-sealant export)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated (default {DEFAULT_VARIANTS})")
    parser.add_argument("--subset-size", type=int, default=300)
    parser.add_argument("--name", default=None, help="dataset name in the result file (default: the data folder's)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    payload: dict[str, Any] = {"date": date.today().isoformat(), "data": str(args.data), "cpu": cpu_info(),
                               "runs": [measure(run, args.data, variants, args.subset_size) for run in args.runs]}
    name = args.name or args.data.resolve().parent.name
    publish_results(args.results, f"{name}_int8-error", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
