"""Measure INT8 calibration settings on a trained run: the evidence behind recipes.yaml.

    python calibration/compare.py RUN DATA [--subset-size 300] [--split train] [--out results.json]
        [--variants ov-fast,ov-fast-ofix,onnx-ort,...] [--latency-runs 200] [--threads 2]

For each variant it quantizes RUN's FP32 model in memory (nothing is written into RUN), then
reports val/test AUROC and accuracy (card threshold) next to FP32, the weights size and the
batch-1 latency (median, same thread count for every model, interleaved so background load
hits all alike). Variants:

* ``ov-fast`` / ``ov-full``: OpenVINO + NNCF, fast / full bias correction, head in float
  (and, for a heatmap model, the heatmap head and score fusion, as ``quantize`` does),
  NNCF's default overflow fix (first layer only);
* ``ov-*-qhead``: the same with the 1-output head quantized too;
* ``ov-*-ofix``: overflow_fix "enable" (half-range weights in every layer, against u8*s8
  saturation on CPUs without VNNI), the recipe's value; ``ov-fast-ofix`` / ``ov-full-ofix``
  is what ``edge-sealant quantize`` does for a fast / full bias-correction family;
* ``ov-full-mixed-ofix``: the recipe with preset MIXED (asymmetric activations);
* ``onnx-nncf``: NNCF's ONNX backend with the model family's recipe;
* ``onnx-nncf-mixed``: the same with preset MIXED (asymmetric, i.e. uint8, activations);
* ``onnx-ort``: ONNX Runtime ``quantize_static`` (QDQ, per-channel s8 weights, u8
  activations, MinMax, after ``quant_pre_process``): what ``quantize --backend onnx`` does;
* ``onnx-ort-rr``: the same with ``reduce_range=True`` (7-bit weights, ORT's advice for
  CPUs without VNNI).

For a heatmap model every row also says how often the model puts the heatmap's peak where
OpenVINO FP32 puts it, on the defect images of each split (``quantize``'s ``peak_agreement``).
Calibration images are drawn exactly as ``edge-sealant quantize`` draws them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_sealant.artifacts import artifact_path  # noqa: E402
from edge_sealant.card import ModelCard  # noqa: E402
from edge_sealant.data.loading import load_dataset_like  # noqa: E402
from edge_sealant.imageset import load_images  # noqa: E402
from edge_sealant.evaluate import infer_images  # noqa: E402
from edge_sealant.metrics import binary_metrics  # noqa: E402
from edge_sealant.quantize import (  # noqa: E402
    build_calibration_set,
    calibration_dataset,
    kept_in_float,
    nncf_arguments,
    quantize_onnx_model,
    quantize_openvino_model,
    recipe_for,
)
from edge_sealant.quantize.scoring import peak_agreement  # noqa: E402

VARIANTS = (
    "ov-fast", "ov-full", "ov-fast-qhead", "ov-full-qhead", "ov-fast-ofix", "ov-full-ofix",
    "ov-full-mixed-ofix",
    "onnx-nncf", "onnx-nncf-mixed", "onnx-ort", "onnx-ort-rr",
)


def nncf_onnx(proto, images: np.ndarray, recipe: dict, ignored: list[str]):
    """NNCF's ONNX backend (QDQ laid out OpenVINO-style), for comparison only."""
    import nncf

    args = nncf_arguments(recipe, len(images), ignored)
    advanced = args.pop("advanced")
    return nncf.quantize(proto, calibration_dataset(images, proto), advanced_parameters=advanced, **args)


def latency_ms(backends: dict[str, object], image: np.ndarray, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in backends}
    for backend in backends.values():
        for _ in range(10):
            backend.predict(image)
    for _ in range(runs):  # interleaved: background load hits every model alike
        for name, backend in backends.items():
            start = time.perf_counter()
            backend.predict(image)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    import onnx
    import openvino as ov

    from edge_sealant.runtime.backends import open_backend
    from edge_sealant.runtime.model_file import set_onnx_metadata, set_openvino_metadata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--subset-size", type=int, default=300)
    parser.add_argument("--split", default="train")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    card = ModelCard.load(args.run)
    seed = int(((card.train or {}).get("options") or {}).get("seed", 0))
    dataset = load_dataset_like(args.data, card.data_summary or {})
    calibration = build_calibration_set(dataset.split(args.split), card, args.subset_size, args.split, seed)
    evals = {s: load_images(dataset.split(s), card) for s in ("val", "test") if dataset.splits.get(s)}
    recipe = recipe_for(card.model)
    ov_fp32 = artifact_path(args.run, "openvino", "fp32")
    onnx_fp32 = artifact_path(args.run, "onnxruntime", "fp32")
    results: dict[str, dict] = {"_setup": {"model": card.model, "input_size": list(card.input_size),
                                           "calibration_images": len(calibration), "recipe": recipe}}
    backends = {"ov-fp32": open_backend(ov_fp32, threads=args.threads)}
    sizes = {"ov-fp32": ov_fp32.with_suffix(".bin").stat().st_size}
    if any(v.startswith("onnx") for v in args.variants.split(",")):  # the ONNX rows' reference
        backends["onnx-fp32"] = open_backend(onnx_fp32, threads=args.threads)
        sizes["onnx-fp32"] = onnx_fp32.stat().st_size
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        int8_card = card.replace(precision="int8")
        for variant in args.variants.split(","):
            started = time.perf_counter()
            if variant.startswith("ov-"):
                model = ov.Core().read_model(str(ov_fp32))
                settings = dict(recipe, fast_bias_correction="fast" in variant)
                settings["overflow_fix"] = "enable" if variant.endswith("ofix") else "first_layer_only"  # NNCF's default
                if "-mixed" in variant:
                    settings["preset"] = "mixed"
                ignored = kept_in_float(model, "openvino", not variant.endswith("qhead"), card.has_heatmap)
                quantized = quantize_openvino_model(model, calibration.images, settings, ignored)
                set_openvino_metadata(quantized, int8_card.replace(backend="openvino"))
                path = scratch / variant / "model.xml"
                path.parent.mkdir()
                ov.save_model(quantized, str(path), compress_to_fp16=False)
                sizes[variant] = path.with_suffix(".bin").stat().st_size
            elif variant in ("onnx-nncf", "onnx-nncf-mixed"):
                proto = onnx.load(str(onnx_fp32))
                ignored = kept_in_float(proto, "onnx", recipe["float_head"], card.has_heatmap)
                settings = dict(recipe, preset="mixed") if variant.endswith("mixed") else recipe
                quantized = nncf_onnx(proto, calibration.images, settings, ignored)
                set_onnx_metadata(quantized, int8_card.replace(backend="onnxruntime"))
                path = scratch / f"{variant}.onnx"
                path.write_bytes(quantized.SerializeToString())
                sizes[variant] = path.stat().st_size
            elif variant in ("onnx-ort", "onnx-ort-rr"):
                proto = onnx.load(str(onnx_fp32))
                ignored = kept_in_float(proto, "onnx", recipe["float_head"], card.has_heatmap)
                settings = dict(recipe, onnx_reduce_range=variant.endswith("rr"))
                work = scratch / variant
                work.mkdir()
                quantized = quantize_onnx_model(onnx_fp32, calibration.images, settings, ignored, work)
                set_onnx_metadata(quantized, int8_card.replace(backend="onnxruntime"))
                path = scratch / f"{variant}.onnx"
                path.write_bytes(quantized.SerializeToString())
                sizes[variant] = path.stat().st_size
            else:
                raise SystemExit(f"unknown variant {variant}")
            results[variant] = {"quantize_seconds": round(time.perf_counter() - started, 1)}
            backends[variant] = open_backend(path, threads=args.threads)
            print(f"{variant}: quantized in {results[variant]['quantize_seconds']} s", flush=True)
        heatmaps: dict[str, dict[str, np.ndarray | None]] = {}
        for name, backend in backends.items():
            row = results.setdefault(name, {})
            for split, loaded in evals.items():
                outputs = infer_images(backend, loaded.images)
                heatmaps.setdefault(name, {})[split] = outputs.heatmap
                m = binary_metrics(loaded.labels, outputs.probability, card.threshold)
                row[split] = {"auroc": m["auroc"], "accuracy": m["accuracy"]}
                reference = heatmaps["ov-fp32"][split]
                if outputs.heatmap is not None and reference is not None:
                    defects = np.asarray(loaded.labels) == 1
                    row[split]["heatmap_peaks"] = peak_agreement(reference[defects], outputs.heatmap[defects])
            row["weights_bytes"] = sizes[name]
        if args.latency_runs:
            image = calibration.images[:1]
            for name, value in latency_ms(backends, image, args.latency_runs).items():
                results[name]["latency_ms"] = round(value, 3)
    print(f"{'variant':19} {'val AUROC':>9} {'test AUROC':>10} {'val acc':>8} {'test acc':>8} {'MB':>7} {'ms':>7} {'peak val/test':>14}")
    for name, row in results.items():
        if name.startswith("_"):
            continue
        val, test = row.get("val", {}), row.get("test", {})
        peaks = "/".join(f"{r['heatmap_peaks']['same_cell']:.3f}" for r in (val, test) if r.get("heatmap_peaks"))
        print(f"{name:19} {val.get('auroc', float('nan')):9.4f} {test.get('auroc', float('nan')):10.4f} "
              f"{val.get('accuracy', float('nan')):8.4f} {test.get('accuracy', float('nan')):8.4f} "
              f"{row['weights_bytes'] / 1e6:7.2f} {row.get('latency_ms', float('nan')):7.2f} {peaks:>14}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
