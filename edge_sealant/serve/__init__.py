"""Serve a model over the Open Inference Protocol (KServe v2: REST and gRPC).

>>> from edge_sealant.serve import ServeOptions, serve
>>> serve(ServeOptions("runs/lite0/openvino/int8/model.xml", host="0.0.0.0"))  # until SIGTERM

Modules: ``options`` (:class:`ServeOptions`), ``tensors`` (protocol tensors <-> images and
verdicts, numpy only), ``rest`` (the REST infer body with the binary data extension),
``service`` (one model shared by concurrent requests, its metadata), ``metrics``
(Prometheus), ``server`` and ``grpc_server`` (KServe's model server around it; needs ``pip
install 'edge-sealant[serve]'``), ``workers`` (``--workers N``: N servers on the same ports).
Only ``server`` and ``grpc_server`` import kserve, through :func:`server_module`.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Callable

from edge_sealant.serve.options import ServeOptions

__all__ = ["ServeOptions", "serve", "server_module"]
# What the serve extra brings; an ImportError naming one of them means the extra is missing.
_EXTRA_MODULES = {"kserve", "fastapi", "grpc", "prometheus_client", "uvicorn"}


def serve(options: ServeOptions, on_ready: Callable[[dict], None] | None = None) -> None:
    """Load the model, then serve it until SIGTERM/SIGINT (in-flight requests finish first).

    Options and the model path are checked before kserve is imported, so a mistake fails
    fast, in one line. ``on_ready`` gets the start-up facts (model, backend, addresses).
    """
    from dataclasses import replace

    from edge_sealant.serve.service import InspectionService, resolve_served_model

    _check(options)
    options = replace(options, model=str(resolve_served_model(options.model)))
    server = server_module()
    if options.workers > 1:
        from edge_sealant.serve.workers import serve_workers

        return serve_workers(options, on_ready)
    service = InspectionService.load(options)
    server.run_server(service, options, on_ready)


def server_module() -> ModuleType:
    """:mod:`edge_sealant.serve.server`, imported with an empty command line (kserve parses
    ``sys.argv`` when imported); a missing serve extra is one line."""
    from edge_sealant.errors import EdgeSealantError

    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        from edge_sealant.serve import server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in _EXTRA_MODULES:
            raise
        raise EdgeSealantError(f"serving needs the serve extra: pip install 'edge-sealant[serve]' ({exc})") from None
    finally:
        sys.argv = argv
    return server


def _check(options: ServeOptions) -> None:
    from edge_sealant.errors import EdgeSealantError

    for name in ("http_port", "grpc_port"):
        value = getattr(options, name)
        if not 0 <= int(value) <= 65535 or (name == "http_port" and value == 0):
            raise EdgeSealantError(f"--{name.replace('_', '-')} {value} is not a port (1-65535{', 0 = off' if name == 'grpc_port' else ''})")
    if options.http_port == options.grpc_port:
        raise EdgeSealantError(f"--http-port and --grpc-port are both {options.http_port}")
    if options.max_request_mb <= 0 or options.max_batch < 1 or options.workers < 1 or options.grace_s < 0:
        raise EdgeSealantError("--max-request-mb, --max-batch and --workers must be positive, --grace-s not negative")
