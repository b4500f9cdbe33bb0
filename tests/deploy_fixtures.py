"""Fixtures for export / runtime / predict tests: a tiny trained-looking run, exported once.

Imported by ``tests/test_export.py``, ``test_runtime.py`` and ``test_predict.py`` (the shared
``conftest.py`` belongs to the lead). MobileNetV3-Small at 64x32 keeps export to seconds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

SIZE = (64, 32)  # (height, width)
MODEL = "mobilenet_v3_small"


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (96, 48), gray: bool = False) -> Path:
    """A smooth random image with a bright or dark blob (different content per seed)."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
    cv2.circle(image, center, int(rng.integers(3, max(4, width // 3))), tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    if gray:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def make_dataset(root: Path, per_class: int = 4) -> Path:
    """ImageFolder layout ``root/{train,val}/{normal,defect}/*.jpg``."""
    seed = 0
    for split in ("train", "val"):
        for label in ("normal", "defect"):
            for i in range(per_class):
                write_jpeg(root / split / label / f"{label}_{i}.jpg", seed)
                seed += 1
    return root


def make_run(run: Path, data_root: Path | None = None, threshold: float = 0.5, seed: int = 0, heatmap: bool = False) -> Path:
    """``run/best.pt`` + ``run/run.json`` of a MobileNetV3-Small whose outputs vary per image.

    ``heatmap``: with the (untrained) stride-16 heatmap head and score fusion, as box supervision builds it.

    The registry's fresh head answers 0.5 for everything (tiny weights), which would make
    every parity check trivially exact; calibrating BatchNorm on random pixels and a
    larger random head spread the probabilities over (0, 1).
    """
    import torch

    from edge_sealant.card import ModelCard
    from edge_sealant.checkpoint import save_checkpoint
    from edge_sealant.models.registry import build_inspection_net

    torch.manual_seed(seed)
    net = build_inspection_net(MODEL, pretrained="none", heatmap=heatmap)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: calibrated after two batches
            module.reset_running_stats()
    net.train()
    with torch.no_grad():
        for _ in range(2):
            low = torch.rand(16, 3, SIZE[0] // 8, SIZE[1] // 8) * 255
            net(torch.nn.functional.interpolate(low, size=SIZE, mode="bilinear"))
        head = net.backbone.classifier[3]
        torch.nn.init.normal_(head.weight, std=0.05)
        torch.nn.init.zeros_(head.bias)
    net.eval()
    summary = {"root": str(data_root)} if data_root else {"root": str(run / "no-such-dataset")}
    card = ModelCard(model=MODEL, input_size=SIZE, threshold=threshold, data_summary=summary,
                     heatmap_stride=16 if heatmap else 0, supervision="boxes" if heatmap else "image")
    run.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run / "best.pt", net, card)
    card.save(run)
    return run


def copy_artifact(src_model: Path, dest_dir: Path) -> Path:
    """Copy a model's folder (model files + run.json) so a test may modify it."""
    shutil.copytree(src_model.parent, dest_dir)
    return dest_dir / src_model.name


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("deploy-data"))


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory, dataset_root) -> Path:
    """A run exported once to ONNX fp32 + OpenVINO fp32/fp16 (tests must not modify it)."""
    from edge_sealant.export import export_run

    run = make_run(tmp_path_factory.mktemp("deploy-run") / "run", data_root=dataset_root)
    report = export_run(run, formats=["onnx", "openvino"], precisions=["fp32", "fp16"])
    run_report = report.to_dict()
    (run / "export_report.json").write_text(__import__("json").dumps(run_report))
    return run


@pytest.fixture(scope="session")
def images_dir(tmp_path_factory) -> Path:
    """A few JPEGs of different sizes plus one corrupt file."""
    folder = tmp_path_factory.mktemp("deploy-images")
    write_jpeg(folder / "a.jpg", 101, (120, 40))
    write_jpeg(folder / "b.jpg", 102, (64, 32))
    write_jpeg(folder / "sub" / "c.jpeg", 103, (200, 80))
    write_jpeg(folder / "sub" / "d_gray.jpg", 104, (90, 30), gray=True)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def no_torch_env(tmp_path: Path) -> dict[str, str]:
    """Environment whose ``import torch`` fails (a shadowing torch.py first on PYTHONPATH)."""
    blocker = tmp_path / "no_torch"
    blocker.mkdir(exist_ok=True)
    (blocker / "torch.py").write_text("raise ImportError('torch is blocked in this test')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env
