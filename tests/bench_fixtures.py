"""A tiny exported run for the bench and demo tests (seconds, no training), and the loader of
the scripts under ``benchmarks/``.

``build_tiny_run`` writes a generated 64x32 YOLO dataset, an untrained MobileNetV3-Small
checkpoint with its card, and exports it to ONNX and OpenVINO (FP32 + FP16). INT8 artifacts
are copies of the FP32 ones unless ``quantize`` is asked for: the tests check the bench's
plumbing and its drop gate, not NNCF.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edge_sealant.card import ModelCard

SIZE = (64, 32)


def benchmark_script(repo_root: Path, name: str):
    """``benchmarks/<name>.py``, imported as a module (a script, not a package file)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, repo_root / "benchmarks" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def build_tiny_dataset(folder: Path, n: int = 40, seed: int = 5) -> Path:
    from edge_sealant.data.synth import synthesize

    summary = synthesize(folder, n=n, defect_ratio=0.4, size=SIZE, seed=seed)
    return Path(summary["path"])


def build_tiny_run(folder: Path, data: Path, fake_int8: bool = True) -> Path:
    """RUN with best.pt, run.json, onnx/fp32, openvino/fp32+fp16 and (copied) int8 models."""
    import torch

    from edge_sealant.checkpoint import save_checkpoint
    from edge_sealant.data.loading import load_dataset
    from edge_sealant.export import export_run
    from edge_sealant.models.registry import build_inspection_net, get_spec

    torch.manual_seed(0)
    run = Path(folder)
    run.mkdir(parents=True, exist_ok=True)
    spec = get_spec("mobilenet_v3_small")
    net = build_inspection_net("mobilenet_v3_small", pretrained="none").eval()
    dataset = load_dataset(data)
    card = ModelCard(
        model="mobilenet_v3_small",
        input_size=SIZE,
        mean=spec.mean,
        std=spec.std,
        threshold=0.5,
        threshold_policy="default",
        data_summary=dataset.summary(),
    )
    save_checkpoint(run / "best.pt", net, card)
    card.save(run)
    export_run(run, formats=["onnx", "openvino"], precisions=["fp32", "fp16"], parity_limit=8)
    if fake_int8:
        for backend in ("onnx", "openvino"):
            src, dst = run / backend / "fp32", run / backend / "int8"
            if src.is_dir() and not dst.exists():
                shutil.copytree(src, dst)
    return run
