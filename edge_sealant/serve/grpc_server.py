"""The gRPC half of the model server: KServe's gRPC server and servicer, extended.

Bound to ``--host`` (KServe binds [::]), ``--max-request-mb`` as the receive limit, port
sharing only for ``--workers``, model metadata with our versions and platform, and one
interceptor that turns exceptions into status codes (client errors: one warning line, no
traceback) and counts ``ModelInfer`` requests.
"""

from __future__ import annotations

import logging
import time
from concurrent import futures
from typing import Any, Callable

import grpc
from grpc import aio
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer

from edge_sealant.serve.options import ServeOptions
from edge_sealant.serve.service import InspectionService
from edge_sealant.serve.tensors import RequestError

logger = logging.getLogger("edge_sealant.serve")
CLIENT_ERRORS = ((InvalidInput, grpc.StatusCode.INVALID_ARGUMENT), (ModelNotFound, grpc.StatusCode.NOT_FOUND),
                 (ModelNotReady, grpc.StatusCode.UNAVAILABLE))
REQUEST_ERROR_CODES = {404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED}


class Interceptor(aio.ServerInterceptor):
    """Maps exceptions to status codes (client errors: one log line, no traceback); counts ModelInfer."""

    def __init__(self, service: InspectionService):
        self.service = service

    async def intercept_service(self, continuation: Callable, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        counted = details.method.endswith("/ModelInfer")
        inner = handler.unary_unary

        async def guarded(request: Any, context: Any) -> Any:
            started, outcome = time.perf_counter(), "ok"
            try:
                return await inner(request, context)
            except Exception as exc:
                outcome, code, message = _grpc_status(exc)
                if outcome == "server_error":
                    logger.exception("gRPC %s failed", details.method)
                else:
                    logger.warning("request refused (%s): %s", code.name, message)
                await context.abort(code, message)
            finally:
                if counted:
                    self.service.metrics.request("grpc", outcome, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(guarded, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)

class Servicer(InferenceServicer):
    """KServe's servicer; metadata with our versions and platform (KServe sends neither)."""

    def __init__(self, *args: Any, service: InspectionService):
        super().__init__(*args)
        self.service = service

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        if request.name != self.service.name:
            raise RequestError(f"no model named {request.name!r}; this server has {self.service.name!r}", status=404)
        return pb.ModelMetadataResponse(**self.service.metadata())

class InspectionGRPCServer(GRPCServer):
    """KServe's gRPC server on ``options.host``, with our interceptor and message limit."""

    def __init__(self, *args: Any, service: InspectionService, options: ServeOptions, reuse_port: bool = False,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.service, self.options, self.reuse_port = service, options, reuse_port

    async def start(self, max_workers: int) -> None:
        limit = self.options.max_request_bytes
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers), interceptors=(Interceptor(self.service),),
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", 256 * 1024 * 1024),
                     # gRPC shares ports by default on Linux: only workers may, never a second server.
                     ("grpc.so_reuseport", int(self.reuse_port))],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            Servicer(self._data_plane, self._model_repository_extension, service=self.service), self._server)
        host = self.options.host
        address = f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"
        if self._server.add_insecure_port(address) == 0:
            raise OSError(f"cannot listen on {address} (gRPC)")
        await self._server.start()
        await self._server.wait_for_termination()


def _grpc_status(exc: Exception) -> tuple[str, Any, str]:
    """(outcome, status code, one-line message) for an exception raised while serving."""
    if isinstance(exc, RequestError):
        return "client_error", REQUEST_ERROR_CODES.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), str(exc)
    for exc_type, code in CLIENT_ERRORS:
        if isinstance(exc, exc_type):
            message = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            return "client_error", code, message.splitlines()[0]
    return "server_error", grpc.StatusCode.INTERNAL, f"inference failed: {type(exc).__name__}: {exc}".splitlines()[0]
