"""Quantization-aware fine-tuning (NNCF's QAT idiom): PTQ in torch, a short fine-tune, to OpenVINO.

Why: post-training INT8 of the heatmap models lost 0.007-0.009 test AUROC on magnetic-tile
(three seeds) while val did not drop, and neither the overflow fix, nor the heatmap's max
pooling, nor reverting 53 layers with accuracy control removed it: the rounding noise is spread
across the network (``calibration/README.md``). QAT lets the weights absorb it.

Steps, as in NNCF's documentation for PyTorch:

1. ``nncf.quantize`` on the trained ``InspectionNet`` (calibration images through the same
   input as training; labels never reach NNCF) with the family's recipe: the heatmap head,
   the score fusion and, when the recipe says so, the 1-output classifier stay in float,
   as in the OpenVINO route.
2. Fine-tune the fake-quantized model on the train split with the run's own objective (its
   recorded options: :func:`edge_sealant.train.parts.inspection_loss` with its ``seg_weight``,
   its class balance, augmentation, batch size and weight decay), at 1% of the run's learning
   rate (where its cosine schedule ended), with batch-norm statistics frozen (a few hundred
   steps cannot re-estimate them, and the quantizer ranges were calibrated on them). On the
   CPU: a 2-core PC does one epoch of magnetic-tile at 256x256 in about 3 minutes.
3. ``ov.convert_model`` of ``DeployNet`` (uint8 NHWC in, probability and heatmap out, the
   names and layout of the exported FP32 IR): the FakeQuantize ops become INT8 kernels.

Limit: the fine-tune optimises NNCF's float simulation of the quantizers, and OpenVINO's integer
kernels round differently. On magnetic-tile (Lite0 256x256, 64 val images,
``calibration/qat_parity.py``) the two differ by 0.19 in logit on average (max 0.90), nearly
half of what INT8 moves a logit against FP32 (0.42 on average): QAT can only remove the part
of the rounding noise that the simulation sees.

PITFALL: NNCF's torch backend refuses ``fast_bias_correction=False``; the recipe's full bias
correction applies to the OpenVINO route only (fine-tuning corrects biases here anyway).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edge_sealant.card import ModelCard
from edge_sealant.errors import EdgeSealantError

QAT_LR_FACTOR = 0.01  # of the run's --lr: the end of its cosine schedule
HEATMAP_PATTERNS = ("^heatmap_head/.*", "^fusion/.*")  # NNCF torch node names of the heatmap head and fusion


@dataclass
class QatRecord:
    """What the fine-tune did, for the manifest and report."""

    epochs: float
    steps: int
    batch_size: int
    lr: float
    train_images: int
    loss_first: float = float("nan")
    loss_last: float = float("nan")
    seconds: float = 0.0
    ignored: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in self.__dict__.items()}


def head_linear_names(net: Any, example: Any) -> list[str]:
    """NNCF node name of the network's last ``linear`` op (the 1-output classifier of every family)."""
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from nncf.torch.function_hook.wrapper import wrap_model

    graph = build_nncf_graph(wrap_model(copy.deepcopy(net)), example)
    linears = [node.node_name for node in graph.topological_sort() if node.node_name.rsplit("/", 2)[-2:-1] == ["linear"]]
    return linears[-1:]


def ignored_scope(net: Any, example: Any, recipe: dict[str, Any], has_heatmap: bool) -> tuple[Any, list[str]]:
    """``nncf.IgnoredScope`` keeping the same parts in float as the OpenVINO route, and a readable list."""
    import nncf

    names = head_linear_names(net, example) if recipe["float_head"] else []
    patterns = list(HEATMAP_PATTERNS) if has_heatmap else []
    # validate=True: a renamed module must fail here, not silently quantize the head.
    return nncf.IgnoredScope(names=names, patterns=patterns, validate=True), names + patterns


def quantize_torch(net: Any, images: np.ndarray, recipe: dict[str, Any], scope: Any) -> Any:
    """Step 1: ``nncf.quantize`` of the torch net on ``images`` (uint8 N x H x W x 3)."""
    import nncf
    import torch

    from edge_sealant.quantize.engines import nncf_arguments
    from edge_sealant.train.parts import training_input

    arguments = nncf_arguments(recipe, len(images), [])
    advanced = arguments.pop("advanced")
    arguments.pop("fast_bias_correction")  # PITFALL (module doc): the torch backend takes the fast one only
    arguments["ignored_scope"] = scope
    # Items are single images; labels never reach NNCF.
    dataset = nncf.Dataset(list(images), lambda image: training_input(torch.from_numpy(image[None])))
    return nncf.quantize(net, dataset, advanced_parameters=advanced, **arguments)


def fine_tune(qnet: Any, train: Any, card: ModelCard, options: Any, epochs: float, lr: float, seed: int,
              log: Callable[[str], None]) -> QatRecord:
    """Step 2: ``epochs`` (may be fractional; 0: none) of the run's own objective on ``train``
    (LoadedImages, with masks for heatmap nets): ``options`` (the run's
    :class:`~edge_sealant.train.options.TrainOptions`) give the loss weights, class balance,
    augmentation and batch size. Copy-paste (``--paste-defects``) is not repeated: the fine-tune
    teaches the weights the rounding, not new data."""
    import torch

    from edge_sealant.train.parts import ArrayDataset, epoch_indices, image_loss_fn, inspection_loss, training_transform

    batch_size = options.batch_size
    steps = max(1, int(round(epochs * len(train.labels) / batch_size))) if epochs > 0 else 0
    record = QatRecord(epochs=float(epochs), steps=steps, batch_size=batch_size, lr=lr, train_images=len(train.labels))
    if steps == 0:
        qnet.eval()
        return record
    optimizer = torch.optim.AdamW([p for p in qnet.parameters() if p.requires_grad], lr=lr, weight_decay=options.weight_decay)
    loss_fn = image_loss_fn(options, train.labels)
    dataset = ArrayDataset(train, training_transform(options))
    started, done, epoch, losses = time.perf_counter(), 0, 0, []
    qnet.train()
    for module in qnet.modules():  # frozen batch-norm statistics (see the module doc)
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    while done < steps:
        torch.manual_seed(seed * 100_003 + epoch)
        order = epoch_indices(train.labels, options.balance, np.random.default_rng([seed, epoch]))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), drop_last=len(order) > batch_size)
        for images, labels, *geometry in loader:
            images = images.float().contiguous(memory_format=torch.channels_last)
            loss = inspection_loss(
                qnet, images, labels, geometry if card.has_heatmap else [], loss_fn, options.seg_weight, options.heatmap_target
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
            done += 1
            if done % 20 == 0 or done == steps:
                log(f"quantization-aware fine-tune: step {done}/{steps}, loss {np.mean(losses[-20:]):.4f}")
            if done >= steps:
                break
        epoch += 1
    qnet.eval()
    window = max(1, min(20, len(losses) // 2))
    record.loss_first, record.loss_last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    record.seconds = round(time.perf_counter() - started, 1)
    return record


def to_openvino(qnet: Any, card: ModelCard) -> Any:
    """Step 3: the fake-quantized net as an ``ov.Model`` with the exported IR's input, outputs and layout."""
    import openvino as ov
    import torch

    from edge_sealant.export import INPUT_NAME, output_names
    from edge_sealant.models.net import DeployNet

    deploy = DeployNet(qnet).eval()
    example = torch.zeros((1, card.height, card.width, 3), dtype=torch.uint8)
    with torch.no_grad():
        model = ov.convert_model(deploy, example_input=example, input=[(ov.PartialShape([-1, card.height, card.width, 3]), ov.Type.u8)])
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.inputs[0].get_node().set_layout(ov.Layout("NHWC"))
    names = output_names(card)
    if len(model.outputs) != len(names):
        raise EdgeSealantError(f"the quantized model has {len(model.outputs)} outputs, the card expects {len(names)} ({', '.join(names)})")
    for output, name in zip(model.outputs, names):
        output.get_tensor().set_names({name})
    return model


def quantization_aware_training(
    run_checkpoint: Any, calibration_images: np.ndarray, train: Any, recipe: dict[str, Any], epochs: float,
    seed: int, log: Callable[[str], None],
) -> tuple[Any, dict[str, Any]]:
    """Steps 1-3 for the checkpoint at ``run_checkpoint``: (INT8 ``ov.Model``, record for the report)."""
    import torch

    from edge_sealant.checkpoint import load_trained
    from edge_sealant.train.options import recorded_options
    from edge_sealant.train.parts import training_input

    torch.manual_seed(seed)
    net, card = load_trained(run_checkpoint)
    options = recorded_options((card.train or {}).get("options"))
    lr = options.lr * QAT_LR_FACTOR
    example = training_input(torch.from_numpy(calibration_images[:1]))
    scope, ignored = ignored_scope(net, example, recipe, card.has_heatmap)
    started = time.perf_counter()
    qnet = quantize_torch(net, calibration_images, recipe, scope)
    plan = (f"fine-tuning {epochs:g} epoch(s) of {len(train.labels)} train images at lr {lr:g}" if epochs > 0
            else "no fine-tune (--qat-epochs 0: the torch route alone)")
    log(f"NNCF (torch) calibrated on {len(calibration_images)} images in {time.perf_counter() - started:.0f} s; {plan}")
    record = fine_tune(qnet, train, card, options, epochs, lr, seed, log)
    record.ignored = ignored
    return to_openvino(qnet, card), record.to_dict()
