"""``TrainOptions``: every knob of ``edge-sealant train``, validated before any work starts.

The CLI's option defaults and help text are read from this dataclass (``cli/train.py``), and
``--config run.yaml`` takes the same keys, so the three cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edge_sealant.card import check_heatmap_stride
from edge_sealant.errors import EdgeSealantError
from edge_sealant.metrics import DEFAULT_POLICY, POLICY_HELP, parse_policy

OPTION_NAMES = {"time_limit_min": "time-limit", "max_group_size": "max-group"}  # field -> CLI option, for messages
BALANCE_MODES = ("none", "undersample", "oversample", "weighted-loss", "weighted-sampler")
SUPERVISION_MODES = ("auto", "image", "boxes")
# Which epoch becomes the model. last: the end of the cosine schedule (learning rate down to
# 1%), the epoch the schedule is built to finish on; best-val: the epoch with the best val
# AUROC, with early stopping. With tens of defect images in val, epoch-to-epoch val differences
# are inside val's own interval, so the best-val pick is mostly noise, and val figures of a
# model chosen on val are optimistic. Measured on magnetic-tile, 8 epochs, 3 seeds (test AUROC):
# box supervision, last 0.9769 +- 0.0001 vs best-val 0.9675 +- 0.015 (it chose epochs 4, 5, 8);
# image labels, last 0.9423 vs best-val 0.9475 (within seed noise); the 5-fold out-of-fold
# AUROC rose to the last epochs; on small defects at 960x320 best-val chose epoch 2 of 6
# and lost the whole gain of box supervision. --folds chooses the epoch count on out-of-fold
# scores instead.
SELECT_MODES = ("last", "best-val")
# What a heatmap cell is taught to read (train.parts.cell_targets): any = 1 when any of its
# pixels is marked; coverage = the share of it marked, relative to its neighbours. Measured on
# magnetic-tile 256x256, 3 seeds: coverage moved the pointing game 0.874 -> 0.889 (mean, inside
# its interval) and lost test AUROC (0.9423 / 0.9734 / 0.9799 vs 0.9767-0.9770): any stays default.
HEATMAP_TARGETS = ("any", "coverage")
# Options that runs recorded before they existed, read as what those runs really did (not
# today's default): resuming them or repeating their recipe (QAT) must not change them.
LEGACY_VALUES = {"select": "best-val", "heatmap_target": "any"}


@dataclass
class TrainOptions:
    """Every knob of ``edge-sealant train``; ``--config run.yaml`` takes the same keys."""

    data: str
    out: str
    model: str = "efficientnet_lite0"
    imgsz: Optional[tuple[int, int]] = None  # (H, W); None = the model's default size
    resize_mode: str = "stretch"
    epochs: int = 15
    probe_epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    ema_epochs: float = 0.0  # half-life, in epochs, of an average of the weights used for validation and export; 0: off
    pretrained: str = "imagenet"
    balance: str = "weighted-sampler"
    augment: bool = True
    quarter_turns: bool = False  # also transpose at random (square inputs): defects with no direction of their own
    select: str = "last"  # which epoch is the model (SELECT_MODES)
    patience: int = 5  # --select best-val only: early stop after this many epochs without val gain
    threshold_policy: str = DEFAULT_POLICY
    normal_classes: Optional[list[str]] = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # CUDA only: auto (bf16 where supported, else fp16), bf16, fp16, off
    workers: int = 0
    time_limit_min: Optional[float] = None
    time_limit_action: str = "stop"  # stop: keep the model selected so far (said loudly); fail: raise
    folds: Optional[int] = None  # K: grouped K-fold on train+val, then one model on all of it
    group_by: Optional[str] = None  # regex on file names: images sharing its first group stay together
    max_group_size: Optional[int] = None  # bound on near-duplicate chains (default 2% of images, >= 16)
    stop_after: Optional[int] = None  # train on the schedule of `epochs` but stop after this many
    # auto: learn from the labels' boxes/polygons (heatmap head) when the train split has any;
    # image: image labels only (one output); boxes: require geometry
    supervision: str = "auto"
    image_level_classes: Optional[list[str]] = None  # defect classes whose boxes do not outline the defect
    seg_weight: float = 1.0  # weight of the heatmap's per-cell loss next to the image loss
    heatmap_stride: int = 16  # input pixels per heatmap cell: 16, or 8 for defects a few input pixels across
    heatmap_target: str = "any"  # what a cell is taught to read (HEATMAP_TARGETS)
    # share of normal training images that get a labelled defect pasted (train.paste); off by
    # default: on magnetic-tile it raised val AUROC but worsened test false alarms at 95% recall
    paste_defects: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._coerce_numbers()
        if not isinstance(self.data, (str, Path)) or not str(self.data):
            raise EdgeSealantError(f"DATA must be a path, got {self.data!r}")
        if not isinstance(self.out, (str, Path)) or not str(self.out):
            raise EdgeSealantError(f"--out must be a path, got {self.out!r}")
        if not (math.isfinite(self.lr) and 0.0 < self.lr <= 1.0):
            raise EdgeSealantError(f"--lr {self.lr} must be a number in (0, 1]")
        if not (math.isfinite(self.weight_decay) and 0.0 <= self.weight_decay < 1.0):
            raise EdgeSealantError(f"weight_decay {self.weight_decay} must be in [0, 1)")
        if self.patience < 1 or self.workers < 0:
            raise EdgeSealantError("--patience must be >= 1 and --workers >= 0")
        if self.time_limit_min is not None and not (math.isfinite(self.time_limit_min) and self.time_limit_min > 0):
            raise EdgeSealantError(f"--time-limit {self.time_limit_min} must be a positive number of minutes")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise EdgeSealantError(f"--amp {self.amp!r} is not one of auto, bf16, fp16, off")
        if self.balance not in BALANCE_MODES:
            raise EdgeSealantError(f"--balance {self.balance!r} is not one of {', '.join(BALANCE_MODES)}")
        if self.epochs < 1 or self.probe_epochs < 0 or self.batch_size < 1:
            raise EdgeSealantError("--epochs and --batch-size must be >= 1, --probe-epochs >= 0")
        if not (isinstance(self.ema_epochs, (int, float)) and 0.0 <= self.ema_epochs <= 100.0):
            raise EdgeSealantError(f"--ema-epochs {self.ema_epochs} must be in [0, 100]")
        if self.select not in SELECT_MODES:
            raise EdgeSealantError(f"--select {self.select!r} is not one of {', '.join(SELECT_MODES)}")
        if self.supervision not in SUPERVISION_MODES:
            raise EdgeSealantError(f"--supervision {self.supervision!r} is not one of {', '.join(SUPERVISION_MODES)}")
        if not (math.isfinite(self.seg_weight) and 0.0 <= self.seg_weight <= 100.0):
            raise EdgeSealantError(f"--seg-weight {self.seg_weight} must be in [0, 100]")
        check_heatmap_stride(self.heatmap_stride)
        if self.heatmap_target not in HEATMAP_TARGETS:
            raise EdgeSealantError(f"--heatmap-target {self.heatmap_target!r} is not one of {', '.join(HEATMAP_TARGETS)}")
        if not (math.isfinite(self.paste_defects) and 0.0 <= self.paste_defects <= 1.0):
            raise EdgeSealantError(f"--paste-defects {self.paste_defects} must be a share in [0, 1]")
        if self.paste_defects and self.supervision == "image":
            raise EdgeSealantError("--paste-defects needs the defects' boxes or polygons: it cannot be used with --supervision image")
        if self.time_limit_action not in ("stop", "fail"):
            raise EdgeSealantError(f"time limit action {self.time_limit_action!r} is not stop or fail")
        if self.folds is not None:
            if self.folds < 2:
                raise EdgeSealantError(f"--folds {self.folds} must be >= 2")
            if self.time_limit_min is not None:
                raise EdgeSealantError("--time-limit cannot be combined with --folds: every fold must train the same epochs")
            if self.select != "last":
                raise EdgeSealantError(f"--select {self.select} cannot be combined with --folds: the folds choose the epoch count on out-of-fold scores")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.epochs:
            raise EdgeSealantError(f"stop_after {self.stop_after} must be in [1, epochs]")
        if self.imgsz is not None:
            from edge_sealant.card import parse_size

            if not (isinstance(self.imgsz, (list, tuple)) and len(self.imgsz) == 2):
                raise EdgeSealantError(f"--imgsz {self.imgsz!r} is not HxW (e.g. 512x192)")
            self.imgsz = parse_size("x".join(str(v) for v in self.imgsz))
            if self.quarter_turns and self.imgsz[0] != self.imgsz[1]:
                raise EdgeSealantError(f"--quarter-turns needs a square --imgsz, got {self.imgsz[0]}x{self.imgsz[1]}")
        if not isinstance(self.threshold_policy, str):
            raise EdgeSealantError(f"--threshold-policy {self.threshold_policy!r} is not a policy ({POLICY_HELP})")
        parse_policy(self.threshold_policy)  # fail before hours of training, not after

    def _coerce_numbers(self) -> None:
        """Numbers from a YAML config may arrive as text (``lr: 1e-3`` is a string in YAML 1.1)."""
        for spec in dataclasses.fields(self):
            kind = str(spec.type)
            if ("int" not in kind and "float" not in kind) or any(t in kind for t in ("str", "tuple", "list", "dict")):
                continue
            value = getattr(self, spec.name)
            if value is None and "Optional" in kind:
                continue
            number = _number(value, integer="int" in kind and "float" not in kind)
            if number is None:
                want = "a whole number" if "int" in kind and "float" not in kind else "a number"
                raise EdgeSealantError(f"--{OPTION_NAMES.get(spec.name, spec.name.replace('_', '-'))} {value!r} is not {want}")
            setattr(self, spec.name, number)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        clean = {key.replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(clean) - known)
        if unknown:
            raise EdgeSealantError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**clean)


def recorded_options(values: dict[str, Any] | None) -> TrainOptions:
    """The recipe a run recorded (``run.json``'s ``train.options``), read by today's code to
    repeat it (quantization-aware fine-tuning): keys this version does not know are dropped,
    missing ones take today's defaults (or :data:`LEGACY_VALUES`, what runs from before an
    option did), ``imgsz`` is a tuple again; ``data``/``out`` are placeholders when absent
    (the recipe does not need them)."""
    known = {spec.name for spec in dataclasses.fields(TrainOptions)}
    kept = {**LEGACY_VALUES, **{key: value for key, value in (values or {}).items() if key in known}}
    if kept.get("imgsz"):
        kept["imgsz"] = tuple(kept["imgsz"])
    return TrainOptions(**{"data": "-", "out": "-", **kept})


def _number(value: Any, integer: bool) -> int | float | None:
    """``value`` as an int/float (numeric text accepted), or None when it is not one.

    NaN and infinities pass as floats: the option's own range check names them.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if integer:
        return int(value) if math.isfinite(value) and float(value).is_integer() else None
    return float(value)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config whose keys are the long option names (``imgsz: 512x192`` works)."""
    import yaml

    from edge_sealant.card import parse_size

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise EdgeSealantError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise EdgeSealantError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise EdgeSealantError(f"{path}: config must be a mapping of option names to values")
    if isinstance(values.get("imgsz"), (str, int)):
        values["imgsz"] = parse_size(str(values["imgsz"]))
    for key in ("normal_classes", "image_level_classes"):
        if isinstance(values.get(key), str):
            values[key] = [v.strip() for v in values[key].split(",") if v.strip()]
    return values


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
