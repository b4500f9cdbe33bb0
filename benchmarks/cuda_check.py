"""Check the CUDA training path (AMP, channels_last, device placement, resume) on a GPU machine.

Run from the repository root on a machine with a GPU (e.g. a Colab runtime):

    PYTHONPATH=. python benchmarks/cuda_check.py --out cuda_check

It trains EfficientNet-Lite0 on generated sealant data with bf16, fp16 (+GradScaler, what
T4-class Colab GPUs use) and fp32, resumes an interrupted run, evaluates the GPU-trained
checkpoint on the CPU, and writes ``cuda_check.json``. Exit code 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from edge_sealant.data.synth import synthesize
from edge_sealant.evaluate import evaluate_run
from edge_sealant.train import Trainer, TrainOptions, resume


def placement(trainer: Trainer) -> dict:
    """Where the weights live and whether convolutions see channels_last tensors."""
    net = trainer.net
    seen = {}

    def hook(module, inputs, output):
        seen.setdefault("input_dtype", str(inputs[0].dtype))
        seen.setdefault("channels_last", inputs[0].is_contiguous(memory_format=torch.channels_last))
        seen.setdefault("output_dtype", str(output.dtype))

    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1))
    handle = conv.register_forward_hook(hook)
    images = torch.from_numpy(trainer.val_set.images[:4]).to(trainer.device).permute(0, 3, 1, 2).float()
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=trainer.amp_dtype or torch.float32, enabled=trainer.amp_dtype is not None):
        net(images)
    handle.remove()
    return {"params_on": str(next(net.parameters()).device), **seen}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("cuda_check"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--imgsz", type=int, nargs=2, default=(256, 96))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "bf16_supported": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "runs": {},
        "failures": [],
    }
    if not torch.cuda.is_available():
        report["failures"].append("no CUDA device")
        print(json.dumps(report, indent=2))
        return 1
    work = Path(tempfile.mkdtemp())
    data = work / "synth"
    synthesize(data, n=600, defect_ratio=0.3, size=(320, 112), seed=0)
    common = dict(data=str(data / "data.yaml"), model="efficientnet_lite0", imgsz=tuple(args.imgsz), epochs=args.epochs, device="cuda", workers=2)
    for amp in ("bf16", "fp16", "off"):
        started = time.perf_counter()
        trainer = Trainer(TrainOptions(out=str(work / f"run_{amp}"), amp=amp, **common))
        result = trainer.fit()
        entry = {
            "seconds": round(time.perf_counter() - started, 1),
            "amp": result.card.train["amp"],
            "val_auroc": result.card.metrics["val"]["auroc"],
            "epoch_seconds": [round(h["seconds"], 2) for h in result.card.train["history"]],
            "max_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20),
            "placement": placement(trainer),
        }
        report["runs"][amp] = entry
        expected = {"bf16": "bfloat16", "fp16": "float16", "off": None}[amp]
        if entry["amp"] != expected:
            report["failures"].append(f"{amp}: run.json says amp={entry['amp']}")
        if entry["placement"]["params_on"] != "cuda:0" or not entry["placement"]["channels_last"]:
            report["failures"].append(f"{amp}: placement {entry['placement']}")
        if expected and entry["placement"]["output_dtype"] != f"torch.{expected}":
            report["failures"].append(f"{amp}: autocast did not run in {expected}")
        if entry["val_auroc"] < 0.9:
            report["failures"].append(f"{amp}: val AUROC {entry['val_auroc']:.3f} < 0.9")
        torch.cuda.reset_peak_memory_stats()

    # An interrupted Colab run: two epochs, lose run.json, resume to the full schedule.
    interrupted = work / "run_resume"
    Trainer(TrainOptions(out=str(interrupted), **{**common, "epochs": 2})).fit()
    (interrupted / "run.json").unlink()
    resumed = resume(interrupted, epochs=args.epochs)
    epochs = [h["epoch"] for h in resumed.card.train["history"]]
    report["resume"] = {"epochs": epochs, "val_auroc": resumed.card.metrics["val"]["auroc"]}
    if epochs != list(range(args.epochs)):
        report["failures"].append(f"resume ran epochs {epochs}")

    # The GPU-trained checkpoint must evaluate on a CPU-only machine.
    metrics = evaluate_run(work / "run_bf16", data / "data.yaml", split="test")
    report["cpu_eval_of_gpu_run"] = {k: metrics[k] for k in ("auroc", "accuracy", "recall", "fpr", "backend")}
    (args.out / "cuda_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
