#!/usr/bin/env python
"""How closely OpenVINO's INT8 execution follows NNCF's PyTorch simulation of the same model.

Quantization-aware fine-tuning optimises the torch model with fake quantizers; the factory PC
runs the converted IR on OpenVINO's integer kernels. This quantizes a run's ``best.pt`` in
torch (no fine-tune), converts it as ``quantize --qat-epochs`` does, and compares both on val
images: probabilities and logits (median and max absolute difference), heatmaps.

    python calibration/qat_parity.py RUN DATA [--images 64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    import openvino as ov
    import torch

    from edge_sealant.checkpoint import load_trained
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.imageset import load_images
    from edge_sealant.models.net import DeployNet
    from edge_sealant.quantize.qat import ignored_scope, quantize_torch, to_openvino
    from edge_sealant.quantize.recipes import recipe_for
    from edge_sealant.train.parts import training_input

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args(argv)
    net, card = load_trained(args.run)
    images = load_images(load_dataset_like(args.data, card.data_summary).split("val")[: args.images], card).images
    recipe = recipe_for(card.model)
    scope, _ = ignored_scope(net, training_input(torch.from_numpy(images[:1])), recipe, card.has_heatmap)
    qnet = quantize_torch(net, images, recipe, scope)
    compiled = ov.Core().compile_model(to_openvino(qnet, card), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ov_outputs = compiled(images)
    with torch.no_grad():
        torch_outputs = DeployNet(qnet).eval()(torch.from_numpy(images))
    torch_probability = (torch_outputs[0] if card.has_heatmap else torch_outputs).numpy()[:, 0].astype(np.float64)
    ov_probability = ov_outputs[0][:, 0].astype(np.float64)

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    for name, difference in (("probability", np.abs(ov_probability - torch_probability)),
                             ("logit", np.abs(logit(ov_probability) - logit(torch_probability)))):
        print(f"{name}: |OpenVINO - torch| mean {difference.mean():.4f}, median {np.median(difference):.4f}, "
              f"max {difference.max():.4f} ({len(images)} val images)")
    if card.has_heatmap:
        print(f"heatmap: max |OpenVINO - torch| {np.abs(ov_outputs[1] - torch_outputs[1].numpy()).max():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
