"""The model server: KServe's Python model server around :class:`InspectionService`.

KServe (``kserve.Model``, its data plane, model repository, v2 REST endpoints, gRPC
servicer and ``/metrics``) does the protocol. We add what a line needs and KServe 0.21 does
not do: binding to ``--host`` (KServe binds 0.0.0.0 / [::]), our own REST ``infer`` (KServe's
breaks on binary BYTES, see :mod:`edge_sealant.serve.rest`), the model card at
``/v2/models/NAME/config``, a body-size limit, 4xx with one line and no traceback for client
errors, metrics, and a drain on SIGTERM: HTTP stops accepting, in-flight requests finish
(up to ``grace_s``), then gRPC does the same.

This module and :mod:`~edge_sealant.serve.grpc_server` import kserve: load them through
:func:`edge_sealant.serve.server_module` (kserve parses ``sys.argv`` when imported).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from typing import Any, Callable

import kserve
from fastapi import Request, Response
from kserve import InferOutput, InferResponse
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.model_server import FASTAPI_APP_IMPORT_STRING
from kserve.protocol.rest.server import RESTServer

from edge_sealant.serve.grpc_server import InspectionGRPCServer
from edge_sealant.serve.options import ServeOptions
from edge_sealant.serve.rest import HEADER_LENGTH, encode_response, parse_request
from edge_sealant.serve.service import InspectionService
from edge_sealant.serve.tensors import RequestError, check_input_name, images_from_tensor, requested_outputs

logger = logging.getLogger("edge_sealant.serve")


def run_server(service: InspectionService, options: ServeOptions, on_ready: Callable[[dict], None] | None = None,
               reuse_port: bool = False) -> None:
    """Serve ``service`` until SIGTERM/SIGINT; returns after the drain.

    ``reuse_port``: share the ports with other worker processes (``SO_REUSEPORT``); without
    it, a port already in use is an error, never silently shared.
    """
    model = InspectionModel(service)
    server = kserve.ModelServer(http_port=options.http_port, grpc_port=options.grpc_port, workers=1,
                                enable_grpc=bool(options.grpc_port), enable_latency_logging=False,
                                grace_period=int(options.grace_s))
    _configure_logging(options.log_level)
    server.register_model(model)
    rest = InspectionRESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension,
                                options.http_port, grace_period=int(options.grace_s), service=service, options=options,
                                reuse_port=reuse_port)
    grpc_server = None
    if options.grpc_port:
        grpc_server = InspectionGRPCServer(options.grpc_port, server.dataplane, server.model_repository_extension,
                                           kwargs={}, grace_period=int(options.grace_s), service=service, options=options,
                                           reuse_port=reuse_port)

    def request_exit(_signum: int, _frame: Any) -> None:
        # Before uvicorn takes over the signals (and again when it re-raises the one it caught
        # after its own drain): ask the HTTP server to stop; the gRPC drain follows it.
        rest._server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_exit)
    server.setup_event_loop()
    asyncio.run(_serve(rest, grpc_server, options, service, on_ready))


def _configure_logging(level: str) -> None:
    """Our lines through KServe's handlers (it configured them); no access log unless debug."""
    kserve_logger = logging.getLogger("kserve")
    logger.handlers, logger.propagate = list(kserve_logger.handlers), False
    for name in ("kserve", "edge_sealant.serve", "uvicorn.error"):
        logging.getLogger(name).setLevel(level.upper())
    # uvicorn logs each request when its access logger has handlers; at 100 images/s that costs.
    logging.getLogger("uvicorn.access").disabled = level.lower() != "debug"


async def _serve(rest: Any, grpc_server: Any, options: ServeOptions, service: InspectionService,
                 on_ready: Callable[[dict], None] | None) -> None:
    """REST and gRPC until a signal; the one that fails to start stops the other, in one line."""
    from edge_sealant.errors import EdgeSealantError

    tasks = {asyncio.create_task(rest.start())}
    if grpc_server is not None:
        tasks.add(asyncio.create_task(grpc_server.start(max(4, service.inspector.decode_workers * 2))))
    ready = asyncio.create_task(_announce(rest, options, service, on_ready))
    try:
        # REST returns once uvicorn has drained after a signal; gRPC only returns if it failed.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        rest._server.should_exit = True
        if grpc_server is not None:
            await grpc_server.stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        service.close()
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        raise EdgeSealantError(f"serve: {failure}") from None
    if not getattr(rest._server, "started", False):
        raise EdgeSealantError(f"serve: the REST server on {options.host}:{options.http_port} did not start (see the log above)")
    logger.info("edge-sealant serve: stopped")


async def _announce(rest: Any, options: ServeOptions, service: InspectionService, on_ready: Callable[[dict], None] | None) -> None:
    while not rest._server.started:
        await asyncio.sleep(0.05)
    facts = {**service.describe(), "http": f"http://{options.host}:{options.http_port}",
             "grpc": f"{options.host}:{options.grpc_port}" if options.grpc_port else None}
    logger.info("edge-sealant serve: ready %s", json.dumps(facts))
    if on_ready is not None:
        on_ready(facts)


# --------------------------------------------------------------------------- kserve model
class InspectionModel(kserve.Model):
    """``kserve.Model`` for our service: the gRPC infer path (REST infer is ours, see InspectionRESTServer)."""

    def __init__(self, service: InspectionService):
        super().__init__(service.name)
        self.service = service
        self.ready = True

    def load(self) -> bool:
        self.ready = True
        return True

    def get_input_types(self) -> list[dict]:
        return self.service.metadata()["inputs"]

    def get_output_types(self) -> list[dict]:
        return self.service.metadata()["outputs"]

    async def predict(self, payload: Any, headers: dict | None = None) -> Any:
        if len(payload.inputs) != 1:
            raise RequestError(f"send exactly one input named 'image', got {len(payload.inputs)}")
        tensor = payload.inputs[0]
        check_input_name(tensor.name)
        if tensor.datatype not in ("BYTES", "UINT8"):
            images_from_tensor(tensor.name, tensor.datatype, tensor.shape, None, None, 0)  # raises the one-line error
        try:
            array = tensor.as_numpy()
        except (ValueError, TypeError):
            raise RequestError(f"input 'image': shape {list(tensor.shape)} does not hold the data sent") from None
        images = images_from_tensor(tensor.name, tensor.datatype, tensor.shape, array,
                                    dict(tensor.parameters or {}), self.service.max_batch)
        results = await self.service.infer(images)
        wanted = [o.name for o in payload.request_outputs or []]
        outputs = []
        for t in requested_outputs(self.service.output_tensors(results), wanted):
            output = InferOutput(t.name, t.shape, t.datatype)
            output.set_data_from_numpy(t.array, binary_data=True)
            outputs.append(output)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs,
                             model_version=self.service.version, from_grpc=payload.from_grpc,
                             parameters=_grpc_parameters(self.service.response_parameters()),
                             use_binary_outputs=True)


def _grpc_parameters(parameters: dict) -> dict:
    """Floats as their shortest exact text: KServe's InferParameter has no double_param."""
    return {k: repr(v) if isinstance(v, float) else v for k, v in parameters.items()}


class InspectionRESTServer(RESTServer):
    """KServe's REST server bound to ``options.host``, with our infer, config, limits and errors."""

    def __init__(self, *args: Any, service: InspectionService, options: ServeOptions, reuse_port: bool = False,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.service, self.options, self.reuse_port = service, options, reuse_port
        self.config.host = options.host

    async def start(self) -> None:
        self.create_application()
        await self._server.serve(sockets=[_listening_socket(self.options.host, self.options.http_port, self.reuse_port)])

    def _register_endpoints(self, app: Any) -> None:
        # Registered first, so they win over KServe's routes of the same path.
        app.add_api_route("/v2/models/{model_name}/infer", self.infer, methods=["POST"])
        app.add_api_route("/v2/models/{model_name}/config", self.model_config, methods=["GET"])
        app.add_api_route("/v2/models/{model_name}", self.model_metadata, methods=["GET"])
        app.add_api_route("/metrics", metrics_response, methods=["GET"])
        super()._register_endpoints(app)

    def _add_middlewares(self, app: Any) -> None:
        # Not KServe's TimingMiddleware: it logs a line per request.
        app.add_middleware(BodyLimit, limit=self.options.max_request_bytes)

    def _add_exception_handlers(self, app: Any) -> None:
        super()._add_exception_handlers(app)
        for exc_type, status in ((RequestError, 400), (InvalidInput, 400), (ModelNotFound, 404), (ModelNotReady, 503)):
            app.add_exception_handler(exc_type, _client_error_handler(status))

    def _served(self, model_name: str) -> InspectionService:
        if model_name != self.service.name:
            raise RequestError(f"no model named {model_name!r}; this server has {self.service.name!r}", status=404)
        return self.service

    async def model_metadata(self, model_name: str) -> Response:
        return _json_response(self._served(model_name).metadata())

    async def model_config(self, model_name: str) -> Response:
        return _json_response(self._served(model_name).config())

    async def infer(self, request: Request, model_name: str) -> Response:
        started, outcome = time.perf_counter(), "ok"
        try:
            service = self._served(model_name)
            parsed = parse_request(await request.body(), request.headers.get(HEADER_LENGTH))
            if len(parsed.inputs) != 1:
                raise RequestError(f"send exactly one input named 'image', got {len(parsed.inputs)}")
            tensor = parsed.inputs[0]
            images = images_from_tensor(tensor.name, tensor.datatype, tensor.shape, tensor.array, tensor.parameters,
                                        service.max_batch)
            results = await service.infer(images)
            outputs = requested_outputs(service.output_tensors(results), parsed.outputs)
            body, json_length = encode_response(parsed, service.name, service.version, outputs,
                                                service.response_parameters())
        except RequestError as exc:
            outcome = "client_error"
            return _error_response(str(exc), exc.status)
        except Exception as exc:  # a server fault: logged with its traceback, answered in one line
            outcome = "server_error"
            logger.exception("inference failed")
            return _error_response(f"inference failed: {type(exc).__name__}: {exc}", 500)
        finally:
            self.service.metrics.request("rest", outcome, time.perf_counter() - started)
        if json_length is None:
            return Response(body, media_type="application/json")
        return Response(body, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(json_length)})


def _listening_socket(host: str, port: int, reuse_port: bool) -> Any:
    """The REST socket, bound here so workers can share it (uvicorn has no SO_REUSEPORT option)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def metrics_response() -> Any:
    """Prometheus text: this process's metrics, or every worker's added up (``--workers``)."""
    import os

    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _json_response(payload: Any, status: int = 200) -> Any:
    return Response(json.dumps(payload).encode(), status_code=status, media_type="application/json")


def _error_response(message: str, status: int) -> Any:
    if status < 500:
        logger.warning("request refused (%d): %s", status, message)
    return _json_response({"error": message}, status)


def _client_error_handler(status: int) -> Callable:
    async def handler(_request: Any, exc: Exception) -> Any:
        return _error_response(str(exc), getattr(exc, "status", status) if isinstance(exc, RequestError) else status)

    return handler


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 and is never stored.

    A declared length over the limit is answered at once, after the body is read and dropped
    when it is at most ``DRAIN_FACTOR`` x the limit: clients that send the whole body before
    reading (urllib, requests) would otherwise see a broken pipe instead of the 413. Larger
    bodies get the 413 and the connection is closed.
    """

    DRAIN_FACTOR = 4

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            drain = int(length) <= self.DRAIN_FACTOR * self.limit
            if drain:
                while (await receive()).get("more_body", False):
                    pass
            return await self._refuse(send, int(length), close=not drain)
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # chunked bodies carry no Content-Length
                raise RequestError(f"request body over the limit of {self.limit} bytes (--max-request-mb)", status=413)
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Callable, length: int, close: bool) -> None:
        message = f"request body of {length} bytes is over the limit of {self.limit} bytes (--max-request-mb)"
        logger.warning("request refused (413): %s", message)
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers + [(b"connection", b"close")] * close})
        await send({"type": "http.response.body", "body": body})
