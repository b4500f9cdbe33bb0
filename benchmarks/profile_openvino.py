"""Where the time of one frame goes: decode, resize and OpenVINO per-layer counters.

    python benchmarks/profile_openvino.py MODEL.xml FRAME.jpg [--runs 200] [--threads 2]

Prints a Markdown table (time per stage, then the network's time per layer type from
OpenVINO's PERF_COUNT), used to explain end-to-end targets that are missed.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from edge_sealant.preprocess import decode, resize
from edge_sealant.runtime.model_file import read_card


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("frame", type=Path)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    card = read_card(args.model)
    data = args.frame.read_bytes()
    decoded = decode(data, card.input_size, card.resize_mode)
    stages = {
        "decode (full resolution)": median_ms(lambda: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), args.runs // 4),
        f"decode (reduced to {decoded.shape[0]}x{decoded.shape[1]})": median_ms(lambda: decode(data, card.input_size, card.resize_mode), args.runs // 4),
        "resize + channel order": median_ms(lambda: cv2.cvtColor(resize(decoded, card.input_size, card.resize_mode), cv2.COLOR_BGR2RGB), args.runs),
    }
    core = ov.Core()
    config = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(core.read_model(args.model), "CPU", config)
    request = compiled.create_infer_request()
    image = np.ascontiguousarray(cv2.cvtColor(resize(decoded, card.input_size, card.resize_mode), cv2.COLOR_BGR2RGB)[None])
    stages["inference (batch 1, LATENCY)"] = median_ms(lambda: request.infer({0: image}), args.runs)
    per_type: dict[str, float] = defaultdict(float)
    for _ in range(20):
        request.infer({0: image})
        for info in request.get_profiling_info():
            per_type[f"{info.node_type} ({info.exec_type})"] += info.real_time.total_seconds() * 1000 / 20
    print(f"## {args.model} on {args.frame.name} ({card.height}x{card.width} input, {args.threads} threads)\n")
    print("| stage | median ms |\n|---|---:|")
    for name, ms in stages.items():
        print(f"| {name} | {ms:.2f} |")
    total = sum(per_type.values())
    print("\n| layer type (kernel) | ms per frame | share |\n|---|---:|---:|")
    for name, ms in sorted(per_type.items(), key=lambda kv: -kv[1])[:12]:
        print(f"| {name} | {ms:.2f} | {ms / total:.0%} |")


if __name__ == "__main__":
    main()
