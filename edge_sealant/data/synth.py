"""Procedural sealant-bead images: the embedded default dataset for the demo and the tests.

Each image is a tall frame with one bead of sealant running top to bottom over a textured
substrate. Defect images carry one (sometimes two) small, local defects and a tight YOLO box
per defect; normal images have an empty label file. Everything global (substrate, lighting,
bead colour, distractors such as dust and scratches) is drawn from the same distributions for
both classes, so a classifier has to find the local defect instead of a global statistic.

Only vectorised numpy/cv2 is used, and smooth fields are drawn at low resolution and upscaled,
so a full 2532x824 frame costs tens of milliseconds. Each image has its own generator seeded by
``(seed, index)``: the same seed always gives byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_sealant.card import check_new_folder
from edge_sealant.errors import EdgeSealantError

__all__ = ["CLASSES", "render", "synthesize"]

CLASSES = ("gap", "thinning", "bubble", "smear", "offset")
SPLIT_NAMES = ("train", "val", "test")
SECOND_DEFECT_P = 0.2
Box = tuple[int, float, float, float, float]  # class index, x0, y0, x1, y1 in pixels


# --------------------------------------------------------------------------- public API


def synthesize(
    out: str | Path,
    n: int = 400,
    defect_ratio: float = 0.3,
    size: tuple[int, int] = (320, 112),
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    jpeg_quality: int = 92,
    defect_scale: float = 1.0,
) -> dict:
    """Write a YOLO dataset of synthetic sealant-bead images to ``out`` and summarise it.

    Args:
        out: Folder to create; it must not exist yet or be empty.
        n: Number of images (>= 10).
        defect_ratio: Fraction of defect images; exactly ``round(n * defect_ratio)`` are
            defects, spread over the splits in proportion to their sizes.
        size: (height, width) of each frame; both >= 32. Defects scale with the size.
        seed: Same seed, same bytes.
        split_fractions: Fractions of images in train, val and test.
        jpeg_quality: JPEG quality of the written images (1-100).
        defect_scale: Multiplies every defect's size (0.05-4; 1 is the default look). Small
            values make the small defects a model must find on a large frame.

    Returns:
        ``{"images", "counts": {split: {"normal", "defect"}}, "classes", "path",
        "defect_area"}`` where ``path`` is the written ``data.yaml`` and ``defect_area`` the
        median, smallest and largest box area as a share of the frame.

    Raises:
        EdgeSealantError: on invalid arguments or when ``out`` already holds files.
    """
    height, width, fractions = _validate(out, n, defect_ratio, size, split_fractions, jpeg_quality)
    defect_scale = _number(defect_scale, float, "defect_scale must be a number")
    if not 0.05 <= defect_scale <= 4.0:
        raise EdgeSealantError(f"synthesize: defect_scale must be in [0.05, 4], got {defect_scale!r}")
    out = Path(out)
    layout = _layout(n, round(n * defect_ratio), fractions, seed)
    for split in SPLIT_NAMES:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    counts = {s: {"normal": 0, "defect": 0} for s in SPLIT_NAMES}
    areas: list[float] = []
    for index, split, primary in layout:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
        image, boxes = render(rng, height, width, _defect_classes(rng, primary), defect_scale)
        _write_sample(out, split, f"synth_{index:05d}", image, boxes, jpeg_quality)
        counts[split]["defect" if boxes else "normal"] += 1
        areas += [max(0.0, x1 - x0) * max(0.0, y1 - y0) / (height * width) for _, x0, y0, x1, y1 in boxes]
    yaml_path = _write_yaml(out)  # last: a half-written dataset has no data.yaml
    area = {"median": float(np.median(areas)), "min": float(min(areas)), "max": float(max(areas))} if areas else None
    return {"images": n, "counts": counts, "classes": list(CLASSES), "path": str(yaml_path), "defect_area": area}


def render(
    rng: np.random.Generator, height: int, width: int, defects: list[int], defect_scale: float = 1.0
) -> tuple[np.ndarray, list[Box]]:
    """One BGR uint8 frame and its defect boxes ``(cls, x0, y0, x1, y1)`` in pixels.

    ``defects`` lists class indices into :data:`CLASSES` (empty for a normal image). The
    global look is drawn from ``rng`` before any defect, so a given generator state renders
    the same frame with or without defects, and nothing global depends on the class.
    """
    scene = _draw_scene(rng, height, width)
    scene.defect_scale = float(defect_scale)
    finish_rng = np.random.default_rng(rng.integers(2**63))  # same frame with or without defects
    windows = _place_defects(rng, height, len(defects))
    spans, patches = [], []
    for cls, (y0, y1) in zip(defects, windows):
        if CLASSES[cls] in _PATH_DEFECTS:  # edit the bead path now, box it once rendered
            spans.append((cls, *_PATH_DEFECTS[CLASSES[cls]](rng, scene, y0, y1)))
        else:
            patches.append((cls, y0, y1))
    luma, alpha = _composite(scene)
    tint_mix = alpha.copy()  # where the frame takes the bead's colour (smears add to it)
    boxes: list[Box] = [(cls, *_path_box(scene, alpha, top, bottom)) for cls, top, bottom in spans]
    for cls, y0, y1 in patches:
        boxes.append((cls, *_PATCH_DEFECTS[CLASSES[cls]](rng, scene, luma, tint_mix, alpha, y0, y1)))
    return _finish(finish_rng, scene, luma, tint_mix), boxes


# --------------------------------------------------------------------------- arguments and layout


def _number(value, kind, what: str):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise EdgeSealantError(f"synthesize: {what}, got {value!r}") from None


def _validate(out, n, defect_ratio, size, split_fractions, jpeg_quality):
    """Checked (height, width, normalised split fractions); refuses a non-empty ``out``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 10:
        raise EdgeSealantError(f"synthesize: n must be an integer >= 10, got {n!r}")
    if not 0.0 <= _number(defect_ratio, float, "defect_ratio must be a number") <= 1.0:
        raise EdgeSealantError(f"synthesize: defect_ratio must be in [0, 1], got {defect_ratio!r}")
    if isinstance(size, (str, bytes)) or len(_number(size, tuple, "size must be (height, width)")) != 2:
        raise EdgeSealantError(f"synthesize: size must be (height, width), got {size!r}")
    height, width = (_number(v, int, "size must be (height, width)") for v in size)
    if height < 32 or width < 32:
        raise EdgeSealantError(f"synthesize: size sides must be >= 32, got {size!r}")
    fractions = _number(split_fractions, lambda v: np.asarray(v, dtype=float), "bad split_fractions")
    valid = fractions.shape == (3,) and np.isfinite(fractions).all() and (fractions >= 0).all()
    if not valid or fractions[0] <= 0:
        raise EdgeSealantError(
            "synthesize: split_fractions must be 3 non-negative numbers (train, val, test) with train > 0, "
            f"got {split_fractions!r}"
        )
    if not 1 <= _number(jpeg_quality, int, "jpeg_quality must be an integer") <= 100:
        raise EdgeSealantError(f"synthesize: jpeg_quality must be in [1, 100], got {jpeg_quality!r}")
    out = Path(out)
    check_new_folder(out, "refusing to overwrite a dataset")
    return height, width, fractions / fractions.sum()


def _largest_remainder(total: int, weights) -> list[int]:
    """Integers proportional to ``weights`` that sum to ``total`` (each floor or ceil of its share)."""
    weights = np.asarray(weights, dtype=float)
    quotas = total * weights / weights.sum()
    counts = np.floor(quotas).astype(int)
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts.tolist()


def _layout(n: int, n_defect: int, fractions, seed: int) -> list[tuple[int, str, int]]:
    """``(index, split, primary class or -1)`` per image; defects stratified, classes balanced."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    sizes = _largest_remainder(n, fractions)
    defects = _largest_remainder(n_defect, sizes) if n_defect else [0, 0, 0]
    layout, start = [], 0
    for split, size, n_def in zip(SPLIT_NAMES, sizes, defects):
        primary = np.full(size, -1)
        chosen = rng.choice(size, n_def, replace=False)
        primary[chosen] = rng.permutation(np.arange(n_def) % len(CLASSES))  # balanced per split
        layout += [(start + i, split, int(primary[i])) for i in range(size)]
        start += size
    return layout


def _defect_classes(rng: np.random.Generator, primary: int) -> list[int]:
    """The image's defect classes: the balanced primary one, sometimes a second, different one."""
    if primary < 0:
        return []
    if rng.random() < SECOND_DEFECT_P:
        return [primary, int(rng.choice([c for c in range(len(CLASSES)) if c != primary]))]
    return [primary]


# --------------------------------------------------------------------------- writing


def _write_sample(out: Path, split: str, stem: str, image: np.ndarray, boxes: list[Box], quality: int):
    """The JPEG and its YOLO label file (empty for a normal image)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise EdgeSealantError(f"{out}: could not encode {stem}.jpg")
    (out / "images" / split / f"{stem}.jpg").write_bytes(data.tobytes())
    h, w = image.shape[:2]
    lines = []
    for cls, x0, y0, x1, y1 in boxes:
        x0, x1 = np.clip([x0 / w, x1 / w], 0.0, 1.0)
        y0, y1 = np.clip([y0 / h, y1 / h], 0.0, 1.0)
        lines.append(f"{cls} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}\n")
    (out / "labels" / split / f"{stem}.txt").write_text("".join(lines))


def _write_yaml(out: Path) -> Path:
    path = out / "data.yaml"
    path.write_text(
        "# synthetic sealant-bead dataset (edge_sealant.data.synth)\n"
        "path: .\ntrain: images/train\nval: images/val\ntest: images/test\n"
        f"nc: {len(CLASSES)}\nnames: [{', '.join(CLASSES)}]\n"
    )
    return path


# --------------------------------------------------------------------------- scene


@dataclass
class Scene:
    """Everything drawn before defects: substrate luma, bead path and look, lighting."""

    h: int
    w: int
    substrate: np.ndarray  # (h, w) float32 luma
    centre: np.ndarray  # (h,) bead centre x per row (defects edit it)
    half: np.ndarray  # (h,) bead half width per row (defects edit it)
    clean_centre: np.ndarray
    clean_half: np.ndarray
    bead_w: float  # nominal bead width in pixels: the unit of all defect sizes
    bead_luma: float
    bead_tint: np.ndarray  # (3,) BGR multipliers
    sub_tint: np.ndarray
    light: float  # light direction across the bead, -1..1
    spec: float
    flat: float
    shadow: float
    bead_tex: np.ndarray  # (h,) small luma variation along the bead
    defect_scale: float = 1.0  # multiplies every defect's size

    @property
    def defect_unit(self) -> float:
        """The unit of defect sizes: the bead width, times the requested defect scale."""
        return self.bead_w * self.defect_scale


def _noise(rng: np.random.Generator, cells: tuple[int, int], h: int, w: int) -> np.ndarray:
    """Smooth noise: a coarse random grid upscaled (cheap at any frame size)."""
    grid = rng.standard_normal((max(2, cells[0]), max(2, cells[1]))).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _along(rng: np.random.Generator, h: int, knots: int) -> np.ndarray:
    """Smooth 1-D noise over the rows (piecewise linear through random knots)."""
    knots = max(2, knots)
    rows = np.arange(h, dtype=np.float32)
    return np.interp(rows, np.linspace(0, h - 1, knots), rng.standard_normal(knots)).astype(np.float32)


def _tint(rng: np.random.Generator, saturation: float) -> np.ndarray:
    tint = 1.0 + saturation * rng.uniform(-1, 1, 3)
    return (tint / tint.mean()).astype(np.float32)


def _substrate(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Metal-like (brushed streaks) or plastic-like (blotchy, grainy) luma, tint, base level.

    Drawn at about 200 px width and upscaled once: the substrate has no detail finer than
    that which matters, and sensor noise adds the pixel-level grain later.
    """
    factor = max(1, w // 200)
    hs, ws = -(-h // factor), -(-w // factor)
    aspect = h / w
    base = rng.uniform(0.2, 0.75)
    luma = base + rng.uniform(0.02, 0.07) * _noise(rng, (round(3 * aspect), 3), hs, ws)
    luma += rng.uniform(0.005, 0.03) * _noise(rng, (round(24 * aspect), 24), hs, ws)
    if rng.random() < 0.55:  # brushed metal: streaks along a random axis
        cells = (round(6 * aspect), min(ws // 2, 100)) if rng.random() < 0.5 else (min(hs // 2, 300), 4)
        luma += rng.uniform(0.01, 0.04) * _noise(rng, cells, hs, ws)
        tint = _tint(rng, 0.03)
    else:
        luma += rng.uniform(0.005, 0.02) * _noise(rng, (hs // 3, ws // 3), hs, ws)
        tint = _tint(rng, 0.07)
    _seam(rng, luma, ws)
    if factor > 1:
        luma = cv2.resize(luma, (w, h), interpolation=cv2.INTER_LINEAR)
    return luma.astype(np.float32), tint, base


def _seam(rng: np.random.Generator, luma: np.ndarray, w: int) -> None:
    """A part edge: one side of a straight-ish line brighter or darker (the bead seals it)."""
    if rng.random() < 0.4:
        return
    h = luma.shape[0]
    x_top, x_bottom = rng.uniform(0.3, 0.7, 2) * w
    xs = np.linspace(x_top, x_bottom, h, dtype=np.float32)[:, None]
    step = np.clip(np.arange(w, dtype=np.float32)[None, :] - xs, -1.0, 1.0)
    luma += rng.uniform(-0.1, 0.1) * step


def _bead_path(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre x and half width per row: a gently curving, slowly width-varying line."""
    y = np.linspace(0.0, 1.0, h)
    bead_w = rng.uniform(0.1, 0.2) * w
    period = rng.uniform(0.8, 2.5)
    centre = (
        rng.uniform(0.38, 0.62) * w
        + rng.uniform(-0.08, 0.08) * w * (y - 0.5)
        + rng.uniform(0.0, 0.06) * w * np.sin(2 * np.pi * y / period + rng.uniform(0, 2 * np.pi))
    )
    ripple = rng.uniform(0.0, 0.03) * np.sin(2 * np.pi * y * h / (bead_w * rng.uniform(0.8, 2.0)))
    drift = rng.uniform(0.0, 0.08) * np.interp(y, np.linspace(0, 1, 5), rng.uniform(-1, 1, 5))
    half = 0.5 * bead_w * (1.0 + drift + ripple)
    return centre.astype(np.float32), half.astype(np.float32), float(bead_w)


def _draw_scene(rng: np.random.Generator, h: int, w: int) -> Scene:
    substrate, sub_tint, base = _substrate(rng, h, w)
    _distractors(rng, substrate, h, w)
    centre, half, bead_w = _bead_path(rng, h, w)
    contrast = rng.choice([-1, 1]) * rng.uniform(0.07, 0.4)  # some beads barely stand out
    bead_luma = float(np.clip(base + contrast, 0.06, 0.9))
    return Scene(
        h=h, w=w, substrate=substrate, centre=centre, half=half,
        clean_centre=centre.copy(), clean_half=half.copy(), bead_w=bead_w,
        bead_luma=bead_luma, bead_tint=_tint(rng, rng.choice([0.02, 0.08])), sub_tint=sub_tint,
        light=float(rng.uniform(-0.7, 0.7)), spec=float(rng.uniform(0.0, 0.35)),
        flat=float(rng.uniform(0.4, 1.2)), shadow=float(rng.uniform(0.0, 0.25)),
        bead_tex=_along(rng, h, round(1.5 * h / bead_w)) * rng.uniform(0.003, 0.015),
    )


def _distractors(rng: np.random.Generator, luma: np.ndarray, h: int, w: int) -> None:
    """Dust specks and scratches on the substrate, equally common in both classes."""
    unit = max(1.0, w / 112)
    for _ in range(rng.poisson(4)):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        radius = max(1, int(rng.uniform(0.3, 1.5) * unit))
        cv2.circle(luma, centre, radius, float(rng.uniform(0.05, 0.9)), -1)
    for _ in range(rng.poisson(1.5)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.05, 0.4) * h
        end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
        shade = float(np.clip(luma[int(y), int(x)] + rng.uniform(-0.08, 0.08), 0, 1))
        cv2.line(luma, (int(x), int(y)), end, shade, max(1, int(0.6 * unit)))


# --------------------------------------------------------------------------- defects


def _place_defects(rng: np.random.Generator, h: int, count: int) -> list[tuple[int, int]]:
    """Disjoint row windows, one per defect, away from the frame ends."""
    if count == 0:
        return []
    edges = np.linspace(0.08 * h, 0.92 * h, count + 1)
    return [(int(edges[i]), int(edges[i + 1])) for i in rng.permutation(count)]


def _smooth_box(y: np.ndarray, y0: float, y1: float, ramp: float) -> np.ndarray:
    return 0.5 * (np.tanh((y - y0) / ramp) - np.tanh((y - y1) / ramp))


def _pick_rows(rng, y0: int, y1: int, extent: float) -> float:
    """A defect centre in [y0, y1] leaving room for its extent where possible."""
    lo, hi = y0 + extent / 2, y1 - extent / 2
    return float(rng.uniform(lo, hi)) if hi > lo else (y0 + y1) / 2


def _gap(rng, scene: Scene, y0: int, y1: int) -> tuple[float, float]:
    """A break: the bead's half width drops to zero over a short stretch with rounded ends."""
    bw = scene.defect_unit
    length = rng.uniform(0.1, 0.7) * bw
    radius = rng.uniform(0.5, 1.1) * bw / 2
    mid = _pick_rows(rng, y0, y1, length + 2 * radius)
    y = np.arange(scene.h, dtype=np.float32)
    dist = np.clip(np.abs(y - mid) - length / 2, 0, None)  # rows from the break
    end = np.sqrt(np.clip(1 - (np.clip(radius - dist, 0, None) / radius) ** 2, 0, 1))
    scene.half *= np.where(dist > 0, end, 0.0).astype(np.float32)
    if rng.random() < 0.45:  # a thread of sealant left in the gap: lower contrast
        scene.half[:] = np.maximum(scene.half, scene.clean_half * rng.uniform(0.1, 0.35))
    return mid - length / 2 - radius, mid + length / 2 + radius


def _thinning(rng, scene: Scene, y0: int, y1: int) -> tuple[float, float]:
    """A locally narrower bead, sometimes eaten from one side only."""
    bw = scene.defect_unit
    sigma = rng.uniform(0.5, 1.6) * bw
    mid = _pick_rows(rng, y0, y1, 4 * sigma)
    y = np.arange(scene.h, dtype=np.float32)
    dip = rng.uniform(0.3, 0.6) * np.exp(-(((y - mid) / sigma) ** 4)).astype(np.float32)
    lost = scene.half * dip
    scene.half -= lost
    scene.centre += rng.choice([-1, 1]) * rng.uniform(0, 1) * lost  # one-sided when shifted
    return mid - 1.6 * sigma, mid + 1.6 * sigma


def _offset(rng, scene: Scene, y0: int, y1: int) -> tuple[float, float]:
    """A segment of the bead displaced sideways with short, smooth ramps."""
    bw = scene.defect_unit
    length = rng.uniform(1.5, 4.0) * bw
    ramp = rng.uniform(0.15, 0.5) * bw
    mid = _pick_rows(rng, y0, y1, length + 4 * ramp)
    y = np.arange(scene.h, dtype=np.float32)
    shift = rng.choice([-1, 1]) * rng.uniform(0.15, 0.5) * bw
    scene.centre += (shift * _smooth_box(y, mid - length / 2, mid + length / 2, ramp)).astype(np.float32)
    return mid - length / 2 - 2.5 * ramp, mid + length / 2 + 2.5 * ramp


def _path_box(scene: Scene, alpha: np.ndarray, y0: float, y1: float) -> tuple[float, float, float, float]:
    """Tight box of a path defect acting on rows y0..y1: the rows whose bead coverage changed,
    across the whole bead there (as drawn and as it should have been)."""
    r0, r1 = max(0, int(np.floor(y0))), min(scene.h, int(np.ceil(y1)) + 1)
    xs = np.arange(scene.w, dtype=np.float32)
    clean = _coverage(scene.clean_centre[r0:r1, None] - xs[None, :], scene.clean_half[r0:r1])
    rows, cols = np.nonzero(np.abs(alpha[r0:r1] - clean) > 0.35)
    if rows.size == 0:  # too small to change a whole pixel: keep the window's rows
        rows, cols = np.array([0, r1 - r0 - 1]), np.array([scene.w // 2])
    top, bottom = r0 + rows.min(), r0 + rows.max() + 1
    edges = [scene.clean_centre[top:bottom] + k * scene.clean_half[top:bottom] for k in (-1, 1)]
    edges += [scene.centre[top:bottom] + k * scene.half[top:bottom] for k in (-1, 1)]
    left = min(cols.min(), *(e.min() for e in edges))
    right = max(cols.max() + 1, *(e.max() for e in edges))
    pad = 0.05 * scene.bead_w + 0.5
    return float(left) - pad, top - pad, float(right) + pad, bottom + pad


def _patch(scene: Scene, cx: float, cy: float, rx: float, ry: float):
    """Integer window around an ellipse and its local coordinate grids."""
    x0, x1 = max(0, int(cx - rx - 2)), min(scene.w, int(cx + rx + 3))
    y0, y1 = max(0, int(cy - ry - 2)), min(scene.h, int(cy + ry + 3))
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), gx, gy


def _bubble(rng, scene: Scene, luma, tint_mix, alpha, y0: int, y1: int):
    """A void in the bead: a dark crater with a glint on its rim, so it shows on any bead colour."""
    half = float(scene.defect_unit / 2)
    rx = rng.uniform(0.4, 0.75) * half
    ry = rx * rng.uniform(0.75, 1.35)
    cy = _pick_rows(rng, y0, y1, 2 * ry)
    row = int(np.clip(cy, 0, scene.h - 1))
    cx = scene.centre[row] + rng.uniform(-0.4, 0.4) * scene.half[row]
    sl, gx, gy = _patch(scene, cx, cy, rx, ry)
    dx, dy = (gx - cx) / rx, (gy - cy) / ry
    q = np.sqrt(dx**2 + dy**2)
    crater = -(rng.uniform(0.2, 0.6) * scene.bead_luma + 0.03) * np.clip(1 - q**2, 0, 1) ** 0.5
    facing = np.clip(-dx * np.sign(scene.light + 1e-3) - 0.2 * dy, 0, None)  # wall facing the light
    glint = rng.uniform(0.1, 0.35) * np.exp(-(((q - 0.8) / 0.3) ** 2)) * facing
    luma[sl] += (crater + glint) * alpha[sl]
    return (cx - rx - 1, cy - ry - 1, cx + rx + 1, cy + ry + 1)


def _smear(rng, scene: Scene, luma, tint_mix, alpha, y0: int, y1: int):
    """Sealant spread beside the bead: an irregular, semi-transparent film touching its edge."""
    bw = scene.defect_unit
    ry = rng.uniform(0.6, 1.5) * bw
    rx = rng.uniform(0.25, 0.6) * bw
    cy = _pick_rows(rng, y0, y1, 2 * ry)
    row = int(np.clip(cy, 0, scene.h - 1))
    side = rng.choice([-1, 1])
    cx = scene.centre[row] + side * (scene.half[row] + 0.3 * rx)
    sl, gx, gy = _patch(scene, cx, cy, rx, ry)
    q = np.sqrt(((gx - cx) / rx) ** 2 + ((gy - cy) / ry) ** 2)
    wobble = 0.35 * _noise(rng, (5, 3), *q.shape) if min(q.shape) > 1 else 0.0
    film = np.clip((1.0 - q + wobble) * rx / max(1.5, 0.1 * bw), 0, 1) * (1 - alpha[sl])
    opacity = rng.uniform(0.5, 0.95)
    flat = scene.bead_luma * (0.55 + 0.45 * np.sqrt(1 - scene.light**2))  # a flat film of sealant
    under = float(luma[sl].mean())
    if abs(flat - under) < 0.08:  # a glossy film never quite matches the substrate it covers
        flat = under + (0.08 if flat >= under else -0.08)
    sheen = rng.uniform(0.02, 0.08) * _noise(rng, (4, 3), *q.shape) if min(q.shape) > 1 else 0.0
    edge = rng.choice([-1, 1]) * rng.uniform(0.08, 0.18)
    meniscus = 4 * film * (1 - film) * edge  # the film's rim catches the light (or shades)
    luma[sl] += film * opacity * (flat + sheen - luma[sl]) + meniscus
    tint_mix[sl] = np.maximum(tint_mix[sl], film * opacity)
    rows, cols = np.nonzero(film > 0.3)  # its soft rim counts: it is visible
    if rows.size == 0:
        return (cx - rx, cy - ry, cx + rx, cy + ry)
    x0, y0 = gx[0, cols.min()], gy[rows.min(), 0]
    return (x0 - 0.5, y0 - 0.5, gx[0, cols.max()] + 1.5, gy[rows.max(), 0] + 1.5)


_PATH_DEFECTS = {"gap": _gap, "thinning": _thinning, "offset": _offset}
_PATCH_DEFECTS = {"bubble": _bubble, "smear": _smear}


# --------------------------------------------------------------------------- rendering


def _clip(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """In-place clip (np.clip's overhead dominates on big frames)."""
    return np.minimum(np.maximum(a, lo, out=a), hi, out=a)


def _coverage(rel: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Anti-aliased bead coverage from x offsets to the centre (1 inside, 1 px ramp)."""
    dist = np.abs(rel)
    return _clip(np.subtract((half + 0.5)[:, None], dist, out=dist), 0.0, 1.0)


def _lookup(table: np.ndarray, index: np.ndarray, offset: float) -> np.ndarray:
    """``table[round(index + offset)]`` (clamped to 0..255) through cv2.LUT, the fastest gather."""
    return cv2.LUT(cv2.add(index, offset, dtype=cv2.CV_8U), table)


def _shading_table(scene: Scene) -> np.ndarray:
    """Bead luma at 256 points across its width (-1..1): a flattened half-round lit from one
    side, diffuse term plus a narrow specular stripe."""
    d = np.linspace(-1, 1, 256)
    slope = scene.flat * d / np.sqrt(np.clip(1 - d * d, 0.02, 1.0))
    lit = np.clip((slope * scene.light + np.sqrt(1 - scene.light**2)) / np.sqrt(1 + slope**2), 0, 1)
    return (scene.bead_luma * (0.55 + 0.45 * lit) + scene.spec * lit**32).astype(np.float32)


def _shadow_table(scene: Scene) -> np.ndarray:
    """Shadow strength against distance beyond the bead edge, 32 steps per decay length."""
    q = (np.arange(256) - 32) / 32
    return np.where(q < 0, 0.0, scene.shadow * np.exp(-q)).astype(np.float32)


def _composite(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Bead over substrate inside a column band around the bead (the rest is untouched).

    Shading and shadow are 1-D profiles looked up per pixel, far cheaper than evaluating
    them on every pixel of a big frame. Returns the frame's luma and the bead coverage.
    """
    margin = 0.6 * scene.bead_w + 2  # room for the cast shadow
    lo = int(max(0, scene.centre.min() - scene.half.max() - margin))
    hi = int(min(scene.w, scene.centre.max() + scene.half.max() + margin + 1))
    rel = np.arange(lo, hi, dtype=np.float32)[None, :] - scene.centre[:, None]
    luma = scene.substrate.copy()
    alpha = np.zeros_like(luma)
    a = alpha[:, lo:hi] = _coverage(rel, scene.half)
    across = rel * (127.5 / np.maximum(scene.half, 0.5))[:, None]  # -127.5..127.5 edge to edge
    bead = _lookup(_shading_table(scene), across, 127.5)
    bead += scene.bead_tex[:, None]
    side = -1.0 if scene.light > 0 else 1.0  # the shadow falls away from the light
    steps = 32 / (0.15 * scene.bead_w)
    beyond = rel * np.float32(side * steps) - (scene.half * steps)[:, None]
    shadow = _lookup(_shadow_table(scene), beyond, 32)
    shadow *= np.clip(scene.half / scene.clean_half, 0, 1)[:, None]  # no bead, no shadow
    band = luma[:, lo:hi]
    band -= band * shadow
    band += a * (bead - band)
    return luma, alpha


def _sensor_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """Zero-mean noise with std ``sigma``: the sum of two uniform bytes (triangular, near
    Gaussian) costs a fraction of ``standard_normal`` on a 2-megapixel frame."""
    raw = rng.integers(0, 256, (2, h, w), dtype=np.uint8)
    scale = sigma / 104.5  # std of the sum of two uniform bytes
    return cv2.addWeighted(raw[0], scale, raw[1], scale, -255.0 * scale, dtype=cv2.CV_32F)


def _finish(rng: np.random.Generator, scene: Scene, luma: np.ndarray, tint_mix: np.ndarray):
    """Lighting (gain, gradient, vignetting), optics blur, sensor noise, colour; to uint8 BGR."""
    h, w = scene.h, scene.w
    y = np.linspace(-0.5, 0.5, h, dtype=np.float32)
    x = np.linspace(-0.5, 0.5, w, dtype=np.float32) * np.float32(w / h)
    cy, cx, vig, gain, gx, gy, sigma = (float(v) for v in rng.uniform(0, 1, 7))
    vig *= 1.2
    rows = 1 + (0.6 * gy - 0.3) * y - vig * (y - (0.4 * cy - 0.2)) ** 2  # separable light field
    cols = (0.7 * gx - 0.35) * x - vig * (x - (0.4 * cx - 0.2)) ** 2
    gain = 0.7 + 0.6 * gain
    luma *= (gain * rows)[:, None] + (gain * cols)[None, :]
    luma = cv2.GaussianBlur(luma, (0, 0), (0.3 + 0.8 * sigma) * max(1.0, (w / 112) ** 0.25))
    luma += _sensor_noise(rng, h, w, rng.uniform(0.006, 0.03))
    mixed = luma * tint_mix
    channels = [
        cv2.addWeighted(luma, 255 * float(s), mixed, 255 * float(b - s), 0, dtype=cv2.CV_8U)
        for s, b in zip(scene.sub_tint, scene.bead_tint)
    ]
    return cv2.merge(channels)
