"""What `edge-sealant serve` is told: one dataclass, defaults read by the CLI's help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ServeOptions:
    """Options of :func:`edge_sealant.serve.serve` (and ``edge-sealant serve``).

    ``host`` is loopback by default: opening the service to the plant network is a decision
    (``--host 0.0.0.0``). ``grpc_port`` 0 turns gRPC off. ``max_request_mb`` bounds one
    request's body (REST) or message (gRPC); ``max_batch`` the images in one request.
    ``grace_s``: on SIGTERM, in-flight requests get this long to finish.
    """

    model: str
    name: str = "edge-sealant"
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 8081
    workers: int = 1
    max_request_mb: float = 64.0
    max_batch: int = 32
    device: str = "CPU"
    precision: Optional[str] = None  # OpenVINO inference precision; None = f32
    threshold: Optional[float] = None  # overrides the sidecar and the embedded threshold
    grace_s: float = 30.0
    log_level: str = "info"

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)
