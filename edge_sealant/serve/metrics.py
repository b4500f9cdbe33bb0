"""Prometheus metrics of the model server, on the HTTP port's ``/metrics``.

``edge_sealant_requests_total{model,protocol,outcome}`` (outcome ok / client_error /
server_error), ``edge_sealant_request_seconds{model,protocol}`` (latency histogram, whole
request: decode, inference, encoding) and ``edge_sealant_decisions_total{model,decision}``
(decision normal / defect). They live in prometheus_client's default registry, which KServe's
``/metrics`` serves next to its own ``request_*_seconds`` histograms.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class ServeMetrics:
    """The counters of one served model."""

    def __init__(self, model: str):
        self.model = model
        self._requests, self._latency, self._images = _collectors()

    def request(self, protocol: str, outcome: str, seconds: float) -> None:
        self._requests.labels(self.model, protocol, outcome).inc()
        self._latency.labels(self.model, protocol).observe(seconds)

    def decisions(self, defects: Iterable[bool]) -> None:
        for is_defect in defects:
            self._images.labels(self.model, "defect" if is_defect else "normal").inc()


@functools.lru_cache(maxsize=1)
def _collectors() -> tuple[Any, Any, Any]:
    """Created once per process: prometheus_client refuses a second collector of a name."""
    from prometheus_client import Counter, Histogram

    requests = Counter("edge_sealant_requests", "Inference requests by outcome", ["model", "protocol", "outcome"])
    latency = Histogram("edge_sealant_request_seconds", "Inference request latency (decode, inference, encoding)",
                        ["model", "protocol"], buckets=LATENCY_BUCKETS)
    images = Counter("edge_sealant_decisions", "Images inspected, by decision", ["model", "decision"])
    return requests, latency, images
