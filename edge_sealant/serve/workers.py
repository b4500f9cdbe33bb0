"""``serve --workers N``: N server processes on the same ports, one supervisor.

Each worker is a whole server (REST + gRPC, its own copy of the model) whose listening
sockets set ``SO_REUSEPORT``, so the kernel spreads connections over the workers. Each worker's
OpenVINO gets ``cores / N`` threads (N engines using every core would fight over them). The
metrics of all workers are added up (prometheus_client's multiprocess mode), so ``/metrics``
answers the same whichever worker a scrape reaches. The supervisor forwards SIGTERM/SIGINT,
waits for every worker to drain, and stops them all if one dies (systemd or Kubernetes then
restarts the service).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from dataclasses import replace
from typing import Any, Callable

from edge_sealant.errors import EdgeSealantError
from edge_sealant.serve.options import ServeOptions

logger = logging.getLogger("edge_sealant.serve")
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable


def serve_workers(options: ServeOptions, on_ready: Callable[[dict], None] | None = None) -> None:
    """Run ``options.workers`` workers until SIGTERM/SIGINT; raise if one dies on its own."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked OpenVINO state
    metrics_dir = tempfile.mkdtemp(prefix="edge-sealant-metrics-")
    workers = [context.Process(target=_worker, args=(options, metrics_dir), name=f"serve-worker-{i}")
               for i in range(options.workers)]
    stopping = False

    def stop_all(_signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid and worker.exitcode is None:
                os.kill(worker.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        _announce_when_ready(options, workers, on_ready)
        failed = _supervise(workers, lambda: stopping, stop_all)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if failed:
        raise EdgeSealantError(f"serve: {failed} exited on its own; stopped the other workers")


def _worker(options: ServeOptions, metrics_dir: str) -> None:
    """One worker process: the single-process server, sharing the ports."""
    os.environ[METRICS_DIR_ENV] = metrics_dir  # before prometheus_client is imported
    from edge_sealant.serve import server_module
    from edge_sealant.serve.service import InspectionService

    server = server_module()
    threads = max(1, (os.cpu_count() or 1) // options.workers)
    service = InspectionService.load(options, threads=threads)
    server.run_server(service, replace(options, workers=1), reuse_port=True)


def _announce_when_ready(options: ServeOptions, workers: list, on_ready: Callable[[dict], None] | None) -> None:
    """Call ``on_ready`` once the ports answer ready (with all workers still alive)."""
    url = f"http://{_client_host(options.host)}:{options.http_port}/v2/health/ready"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if any(w.exitcode is not None for w in workers):
            return  # _supervise reports it
        try:
            with urllib.request.urlopen(url, timeout=1):
                break
        except OSError:
            time.sleep(0.25)
    if on_ready is not None:
        from edge_sealant.runtime import read_card

        card = read_card(options.model)
        on_ready({"model": options.model, "name": options.name, "backend": "openvino" if options.model.endswith(".xml") else "onnxruntime",
                  "precision": card.precision, "threshold": options.threshold if options.threshold is not None else card.threshold,
                  "http": f"http://{options.host}:{options.http_port}",
                  "grpc": f"{options.host}:{options.grpc_port}" if options.grpc_port else None,
                  "workers": options.workers})


def _client_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _supervise(workers: list, stopping: Callable[[], bool], stop_all: Callable[[], None]) -> str | None:
    """Wait for every worker; the first that exits unasked stops the rest. Returns its name, or None."""
    failed = None
    while any(w.exitcode is None for w in workers):
        for worker in workers:
            worker.join(0.2)
            if worker.exitcode is not None and not stopping() and failed is None:
                failed = f"{worker.name} (exit code {worker.exitcode})"
                logger.error("serve: %s; stopping the other workers", failed)
                stop_all()
    return failed
