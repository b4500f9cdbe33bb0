"""Commands: `serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_sealant.cli.common import app, default_of, err_console
from edge_sealant.serve.options import ServeOptions

_D = ServeOptions


@app.command("serve")
def serve_cmd(
    model: Annotated[Path, typer.Argument(help="Exported .xml/.onnx, a run folder (its best model) or an 'export --bundle' zip.")],
    name: Annotated[str, typer.Option(help="Model name in the URLs (/v2/models/NAME/infer).")] = default_of(_D, "name"),
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = default_of(_D, "host"),
    http_port: Annotated[int, typer.Option("--http-port", help="REST port (v2 REST, health, /metrics).")] = default_of(_D, "http_port"),
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port (v2 gRPC); 0 turns gRPC off.")] = default_of(_D, "grpc_port"),
    workers: Annotated[int, typer.Option(help="Server processes sharing the ports, each with its own copy of the model.")] = default_of(_D, "workers"),
    max_request_mb: Annotated[float, typer.Option("--max-request-mb", help="Largest request body / gRPC message accepted (413 / RESOURCE_EXHAUSTED above).")] = default_of(_D, "max_request_mb"),
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most images in one request.")] = default_of(_D, "max_batch"),
    device: Annotated[str, typer.Option(help="OpenVINO device.")] = default_of(_D, "device"),
    precision: Annotated[Optional[str], typer.Option(help="OpenVINO inference precision: f32 (default), bf16, f16.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Override the model's threshold.")] = None,
    grace_s: Annotated[float, typer.Option("--grace-s", help="On SIGTERM, seconds in-flight requests get to finish.")] = default_of(_D, "grace_s"),
    log_level: Annotated[str, typer.Option("--log-level", help="debug (a line per request), info, warning.")] = default_of(_D, "log_level"),
) -> None:
    """Serve a model over the Open Inference Protocol (KServe v2 REST + gRPC) until SIGTERM."""
    from edge_sealant.serve import serve

    options = ServeOptions(
        model=str(model), name=name, host=host, http_port=http_port, grpc_port=grpc_port, workers=workers,
        max_request_mb=max_request_mb, max_batch=max_batch, device=device, precision=precision,
        threshold=threshold, grace_s=grace_s, log_level=log_level,
    )

    def on_ready(facts: dict) -> None:
        grpc = f", gRPC {facts['grpc']}" if facts.get("grpc") else ""
        grpc += f", {facts['workers']} workers" if facts.get("workers", 1) > 1 else ""
        err_console.print(
            f"serving {facts['model']} as '{facts['name']}' ({facts['backend']} {facts['precision']}, threshold "
            f"{facts['threshold']}) on {facts['http']}{grpc}; SIGTERM or Ctrl-C stops after in-flight requests",
            highlight=False, markup=False,
        )

    serve(options, on_ready=on_ready)
