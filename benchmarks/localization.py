#!/usr/bin/env python
"""Where is the defect? The supervised heatmap against ReciproCAM on the image-only model.

For the defect images of a split (default: test) this measures, side by side:

* **pointing game**: the peak of the heatmap, upsampled bilinearly to the input size, lies
  inside a ground-truth box/polygon dilated by 2% of the image side;
* **recall by defect size**: a ground-truth region is found when some heatmap cell inside it
  (dilated the same way) reaches half the image's peak; regions grouped by area as a share of
  the image: < 0.1%, 0.1-1%, > 1%;
* **image-level AUROC** of each model, with its 95% interval.

The anchor is ReciproCAM (Byun and Lee, 2022), implemented here from the paper in torch:
openvino-xai pins OpenVINO 2024.4 and NumPy 1.x, which cannot live beside this project's
OpenVINO. For every cell of the last feature map, the features masked by a 3x3 Gaussian
kernel centred on it go through the model's own pooling and classifier; the defect
probability is that cell's saliency (min-max normalised per image).

    python benchmarks/localization.py DATA --boxes-run RUN_A [--boxes-run RUN_C ...] [--image-run RUN_B ...] [--split test]

All runs must be trained on DATA; compare runs of the same input size. Results: Markdown + JSON in
``--results`` (default benchmarks/results), named by date, CPU and dataset.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant.bench import cpu_info, cpu_label, publish_results  # noqa: E402
from edge_sealant.checkpoint import load_trained  # noqa: E402
from edge_sealant.data.loading import load_dataset_like  # noqa: E402
from edge_sealant.imageset import load_images  # noqa: E402
from edge_sealant.evaluate import card_group_by, part_groups  # noqa: E402
from edge_sealant.localize import DILATION, SIZE_BINS, localization  # noqa: E402
from edge_sealant.metrics import bootstrap_intervals  # noqa: E402

KERNEL = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


# ------------------------------------------------------------------------------ heatmaps
def supervised_maps(net: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image probabilities, heatmaps N x h x w) of a heatmap model."""
    probabilities, maps = [], []
    with torch.inference_mode():
        for start in range(0, len(images), 32):
            pixels = torch.from_numpy(images[start : start + 32]).permute(0, 3, 1, 2).float()
            logits, heatmap = net.forward_with_heatmap(pixels)
            probabilities.append(torch.sigmoid(logits).numpy())
            maps.append(torch.sigmoid(heatmap[:, 0]).numpy())
    return np.concatenate(probabilities), np.concatenate(maps)


def classifier_head(net: Any, features: torch.Tensor) -> torch.Tensor:
    """The image-only model's pooling + classifier on final features: N logits."""
    backbone = net.backbone
    if net.family == "efficientnet_lite":
        return backbone.classifier(backbone.dropout(backbone.flatten(backbone.pool(features)))).reshape(-1)
    return backbone.classifier(torch.flatten(backbone.avgpool(features), 1)).reshape(-1)


def final_features(net: Any, pixels: torch.Tensor) -> torch.Tensor:
    x = (pixels - net.pixel_mean) / net.pixel_std
    backbone = net.backbone
    if net.family == "efficientnet_lite":
        return backbone.forward_features(x)
    return backbone.features(x)


def reciprocam_maps(net: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image probabilities, ReciproCAM saliency N x h x w in [0, 1]) of an image-only model."""
    probabilities, maps = [], []
    with torch.inference_mode():
        for image in images:
            pixels = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float()
            features = final_features(net, pixels)  # 1 x C x h x w
            probabilities.append(float(torch.sigmoid(classifier_head(net, features))[0]))
            _, _, h, w = features.shape
            masks = torch.zeros(h * w, 1, h + 2, w + 2)
            for k in range(h * w):
                i, j = divmod(k, w)
                masks[k, 0, i : i + 3, j : j + 3] = KERNEL
            masked = features * masks[:, :, 1:-1, 1:-1]  # h*w x C x h x w
            saliency = torch.sigmoid(classifier_head(net, masked)).reshape(h, w)
            low, high = saliency.min(), saliency.max()
            maps.append(((saliency - low) / (high - low + 1e-12)).numpy())
    return np.array(probabilities), np.stack(maps)


# ----------------------------------------------------------------------------- scoring
# pointing game and recall by size: edge_sealant.localize (evaluate reports the same figures)


def image_auroc(labels: np.ndarray, probabilities: np.ndarray, groups: list[int] | None = None) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    intervals = bootstrap_intervals(labels, probabilities, groups=groups)
    return {"auroc": float(roc_auc_score(labels, probabilities)), "auroc_ci": intervals.get("auroc")}


# ------------------------------------------------------------------------------- report
def evaluate(run: Path, data: Path, split: str, method: str) -> dict[str, Any]:
    net, card = load_trained(run)
    dataset = load_dataset_like(data, card.data_summary)
    loaded = load_images(dataset.split(split), card)
    probabilities, maps = (supervised_maps if method == "supervised heatmap" else reciprocam_maps)(net, loaded.images)
    groups = part_groups(loaded.samples, card_group_by(card))
    return {
        "method": method,
        "run": str(run),
        "model": card.model,
        "input_size": list(card.input_size),
        "supervision": card.supervision,
        "map_size": list(maps.shape[1:]),
        **image_auroc(loaded.labels, probabilities, groups),
        **localization(maps, loaded.samples, loaded.boxes, card.input_size, groups),
    }


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        f"# Localization: supervised heatmap vs ReciproCAM ({payload['date']})",
        "",
        f"{payload['data']} ({payload['split']} split), {cpu_label(payload['cpu'])}.",
        f"Pointing game: heatmap peak inside a ground-truth region dilated by {DILATION:.0%} of the image side. "
        "Random peak: the pointing game's chance level, the mean share of the input the dilated labels cover. "
        "Recall by size: a region counts as found when a cell inside it (dilated) reaches half the image's peak. "
        "Intervals: 95%, bootstrap of groups of images of one part (AUROC), Clopper-Pearson widened to that bootstrap (pointing game), Clopper-Pearson (recall by size). ReciproCAM implemented from the paper (see the script).",
        "",
        "| method | run: model | map | image AUROC [95% CI] | pointing game [95% CI] | random peak | " + " | ".join(f"recall {label}" for _, _, label in SIZE_BINS) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(SIZE_BINS),
    ]
    for entry in payload["methods"]:
        ci = entry["auroc_ci"] or [None, None]
        pg = entry["pointing_game_ci"] or [None, None]
        sizes = [entry["recall_by_size"][label] for _, _, label in SIZE_BINS]
        lines.append(
            f"| {entry['method']} | {Path(entry['run']).name}: {entry['model']} {entry['input_size'][0]}x{entry['input_size'][1]} ({entry['supervision']}) | "
            f"{entry['map_size'][0]}x{entry['map_size'][1]} | {_f(entry['auroc'], 4)} [{_f(ci[0])}, {_f(ci[1])}] | "
            f"{_f(entry['pointing_game'])} [{_f(pg[0])}, {_f(pg[1])}] ({entry['defect_images']} images) | {_f(entry.get('pointing_game_chance'))} | "
            + " | ".join(f"{_f(s['recall'])} ({s['found']}/{s['regions']})" for s in sizes) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--boxes-run", type=Path, required=True, action="append", help="run trained with --supervision boxes (repeat to compare several)")
    parser.add_argument("--image-run", type=Path, action="append", default=[], help="run trained with --supervision image: the ReciproCAM anchor (repeat for several seeds)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--name", default=None, help="dataset name in the result file (default: the data folder's)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cpu = cpu_info()
    payload = {
        "date": date.today().isoformat(),
        "data": str(args.data),
        "split": args.split,
        "cpu": cpu,
        "methods": [
            *(evaluate(run, args.data, args.split, "supervised heatmap") for run in args.boxes_run),
            *(evaluate(run, args.data, args.split, "ReciproCAM (image-only model)") for run in args.image_run),
        ],
    }
    name = args.name or Path(args.data).resolve().parent.name
    publish_results(args.results, f"{name}_localization", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
