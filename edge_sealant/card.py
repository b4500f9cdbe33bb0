"""The model card: everything needed to feed a model and read its answer, in one dataclass.

Like timm's pretrained cfg, it travels with every artifact: saved as ``run.json`` next to a
checkpoint and embedded in ONNX ``metadata_props`` / OpenVINO ``rt_info``. Loading an
artifact therefore needs no extra flags, and training, evaluation and the runtime all build
their preprocessing from the same fields. Torch-free on purpose (the runtime imports it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from edge_sealant import __version__
from edge_sealant.errors import EdgeSealantError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("stretch", "letterbox")
HEATMAP_STRIDES = (0, 8, 16)  # 0: no heatmap output
SUPERVISIONS = ("image", "boxes")
METADATA_KEY = "edge_sealant.card"
RUN_JSON = "run.json"


def check_heatmap_stride(stride: int) -> None:
    """Refuse a ``--heatmap-stride`` that is not a heatmap stride (0 in HEATMAP_STRIDES means "none")."""
    if not stride or stride not in HEATMAP_STRIDES:
        raise EdgeSealantError(f"--heatmap-stride {stride} must be one of {', '.join(str(s) for s in HEATMAP_STRIDES if s)}")


@dataclass
class ModelCard:
    """Preprocessing, labels and decision rule of one model.

    Exported graphs take ``uint8`` NHWC images already resized to ``input_size`` in
    ``channel_order``; mean/std normalisation and the sigmoid live inside the graph, so the
    output is the defect probability. ``mean``/``std`` are recorded for documentation and for
    integrators who feed the bare network.
    """

    model: str
    input_size: tuple[int, int]  # (height, width)
    resize_mode: str = "stretch"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    input_format: str = "uint8 NHWC, normalisation inside the graph"
    output: str = "defect probability (sigmoid inside the graph)"
    labels: tuple[str, str] = ("normal", "defect")
    # 0: image-only model (one output). 16: a second output, the defect heatmap, one cell per
    # 16x16 input pixels, values in [0, 1].
    heatmap_stride: int = 0
    supervision: str = "image"  # what trained it: "image" labels only, or "boxes" (boxes/polygons too)
    defect_classes: list[str] = field(default_factory=list)
    threshold: float = 0.5
    threshold_policy: str = "default"
    precision: str = "fp32"
    backend: str = "torch"
    data_summary: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    edge_sealant_version: str = __version__

    def __post_init__(self) -> None:
        """Validate every field: a hand-edited card fails here, in one line naming the field."""
        if not isinstance(self.model, str) or not self.model:
            raise EdgeSealantError(f"model card: model must be a model name, got {self.model!r}")
        self.input_size = _size_field(self.input_size)
        self.mean = _number_triple("mean", self.mean, positive=False)
        self.std = _number_triple("std", self.std, positive=True)
        if not (isinstance(self.labels, (list, tuple)) and len(self.labels) == 2 and all(isinstance(v, str) for v in self.labels)):
            raise EdgeSealantError(f"model card: labels must be two names (normal, defect), got {self.labels!r}")
        self.labels = tuple(self.labels)
        if self.resize_mode not in RESIZE_MODES:
            raise EdgeSealantError(f"model card: resize_mode {self.resize_mode!r} is not one of {', '.join(RESIZE_MODES)}")
        if self.channel_order not in ("RGB", "BGR"):
            raise EdgeSealantError(f"model card: channel_order {self.channel_order!r} must be RGB or BGR")
        if not (isinstance(self.defect_classes, list) and all(isinstance(v, str) for v in self.defect_classes)):
            raise EdgeSealantError(f"model card: defect_classes must be a list of names, got {self.defect_classes!r}")
        for name in ("threshold_policy", "precision", "backend", "input_format", "output", "edge_sealant_version"):
            if not isinstance(getattr(self, name), str):
                raise EdgeSealantError(f"model card: {name} must be text, got {getattr(self, name)!r}")
        for name in ("data_summary", "train", "metrics", "library_versions"):
            if not isinstance(getattr(self, name), dict):
                raise EdgeSealantError(f"model card: {name} must be a mapping, got {type(getattr(self, name)).__name__}")
        if self.heatmap_stride not in HEATMAP_STRIDES or isinstance(self.heatmap_stride, bool):
            raise EdgeSealantError(f"model card: heatmap_stride must be one of {HEATMAP_STRIDES}, got {self.heatmap_stride!r}")
        if self.supervision not in SUPERVISIONS:
            raise EdgeSealantError(f"model card: supervision must be one of {', '.join(SUPERVISIONS)}, got {self.supervision!r}")
        if isinstance(self.threshold, bool):
            raise EdgeSealantError(f"model card: threshold must be a number in [0, 1], got {self.threshold!r}")
        self.threshold = check_threshold(self.threshold)

    @property
    def height(self) -> int:
        return self.input_size[0]

    @property
    def width(self) -> int:
        return self.input_size[1]

    @property
    def has_heatmap(self) -> bool:
        return self.heatmap_stride > 0

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(rows, columns) of the heatmap output: the input size over the stride, rounded up."""
        stride = self.heatmap_stride or 1
        return -(-self.height // stride), -(-self.width // stride)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if not isinstance(data, dict):
            raise EdgeSealantError(f"model card must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"model", "input_size"} - data.keys()
        if missing:
            raise EdgeSealantError(f"model card lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    # --- metadata inside model files -------------------------------------------------------
    def to_metadata(self) -> dict[str, str]:
        """Flat string pairs for ONNX ``metadata_props`` and OpenVINO ``rt_info``.

        The full card is one JSON value; the most looked-at fields are repeated as their own
        keys so that Netron or ``benchmark_app`` users see them without parsing JSON.
        """
        return {
            METADATA_KEY: json.dumps(self.to_dict(), sort_keys=True),
            "edge_sealant.model": self.model,
            "edge_sealant.labels": ",".join(self.labels),
            "edge_sealant.threshold": repr(float(self.threshold)),
            "edge_sealant.input_size": f"{self.height}x{self.width}",
            "edge_sealant.resize_mode": self.resize_mode,
            "edge_sealant.mean": ",".join(repr(v) for v in self.mean),
            "edge_sealant.std": ",".join(repr(v) for v in self.std),
            "edge_sealant.channel_order": self.channel_order,
            "edge_sealant.precision": self.precision,
            "edge_sealant.version": self.edge_sealant_version,
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> ModelCard:
        if METADATA_KEY not in metadata:
            raise EdgeSealantError(
                f"{source} has no edge-sealant metadata (was it exported with 'edge-sealant export'?)"
            )
        try:
            return cls.from_dict(json.loads(metadata[METADATA_KEY]))
        except json.JSONDecodeError as exc:
            raise EdgeSealantError(f"{source}: edge-sealant metadata is not valid JSON ({exc})") from None

    # --- run.json ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the card as JSON atomically (temporary file, then rename)."""
        path = Path(path)
        if path.is_dir():
            path = path / RUN_JSON
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        if path.is_dir():
            path = path / RUN_JSON
        if not path.is_file():
            raise EdgeSealantError(f"{path}: no such file (is this a run folder made by 'edge-sealant train'?)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise EdgeSealantError(f"{path}: not valid JSON ({exc})") from None


MAX_SIDE = 8192  # a larger input is a typo (or an allocation that fails minutes later)


def _size_field(value: Any) -> tuple[int, int]:
    def whole(v: Any) -> bool:
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())

    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(whole(v) and 8 <= v <= MAX_SIDE for v in value)):
        raise EdgeSealantError(f"model card: input_size must be [height, width], integers in [8, {MAX_SIDE}], got {value!r}")
    return int(value[0]), int(value[1])


def _number_triple(name: str, value: Any, positive: bool) -> tuple[float, float, float]:
    numbers = isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not numbers or not all(math.isfinite(v) and (v > 0 or not positive) for v in value):
        kind = "positive numbers" if positive else "finite numbers"
        raise EdgeSealantError(f"model card: {name} must be three {kind} (one per channel), got {value!r}")
    return tuple(float(v) for v in value)


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W) (e.g. '512x192'); a single number means a square."""
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise EdgeSealantError(f"size {text!r} is not HxW (e.g. 512x192)") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 8 or max(values) > MAX_SIDE:
        raise EdgeSealantError(f"size {text!r} is not HxW with both sides in [8, {MAX_SIDE}] (e.g. 512x192)")
    return values[0], values[1]


def check_threshold(value: float) -> float:
    """Return ``value`` as float if it is a usable probability threshold."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise EdgeSealantError(f"threshold {value!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise EdgeSealantError(f"threshold {value} is outside [0, 1]")
    return value


def check_new_folder(folder: Path, hint: str) -> None:
    """Refuse a folder that exists and is not empty (nothing of the user's is ever overwritten)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise EdgeSealantError(f"{folder}: already exists and is not empty; {hint}")


@contextmanager
def removed_on_failure(folder: Path, keep: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Remove ``folder`` if the block fails and this call saw it created, unless ``keep()`` says not to."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        yield
    except BaseException:
        if created and folder.is_dir() and not keep():
            shutil.rmtree(folder, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _mode_for(path: Path) -> int:
    """The mode a plain write would give: the existing file's, else 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def normal_permissions(path: Path) -> Path:
    """Give a ``mkdtemp``/``mkstemp`` result (owner-only) the mode ``mkdir``/``open`` would give.

    A model server or line application running as another user must be able to read what we
    publish; the umask still decides.
    """
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())
    return Path(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600: a model server running as another user could not read it
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
