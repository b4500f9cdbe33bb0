"""The v2 REST infer body, with the binary data extension, read and written without a server.

KServe 0.21's own REST infer turns binary inputs back into JSON lists and decodes BYTES
elements as UTF-8, so an encoded JPEG fails there (500) and a pixel tensor becomes millions
of Python ints. We answer ``POST /v2/models/{name}/infer`` ourselves with this module:
JSON header (``Inference-Header-Content-Length`` bytes, or the whole body), then each
binary input's ``binary_data_size`` bytes in order; outputs binary when the request asks
(``binary_data_output`` or an output's ``binary_data``), as Triton clients do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from edge_sealant.serve.tensors import OutputTensor, RequestError, encode_bytes_tensor, tensor_from_binary, tensor_from_json

HEADER_LENGTH = "inference-header-content-length"


@dataclass
class RestInput:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RestRequest:
    """A parsed infer request: its inputs, the outputs asked for and how to send them."""

    id: str | None
    inputs: list[RestInput]
    outputs: list[str]
    binary_outputs: dict[str, bool]  # per requested output; missing: the request's default
    binary_default: bool


def parse_request(body: bytes, header_length: str | None) -> RestRequest:
    """Parse an infer body; :class:`RequestError` on anything malformed."""
    json_end = _json_length(body, header_length)
    try:
        header = json.loads(body[:json_end])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"request body is not JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list) or not header["inputs"]:
        raise RequestError("request body needs a non-empty 'inputs' list")
    binary = memoryview(body)[json_end:]
    inputs, offset = [], 0
    for spec in header["inputs"]:
        item, offset = _parse_input(spec, binary, offset)
        inputs.append(item)
    if offset != len(binary):
        raise RequestError(f"{len(binary) - offset} bytes after the inputs' binary data; check binary_data_size")
    parameters = header.get("parameters") or {}
    outputs, binary_outputs = _requested(header.get("outputs"))
    return RestRequest(
        id=header.get("id") if isinstance(header.get("id"), str) else None,
        inputs=inputs, outputs=outputs, binary_outputs=binary_outputs,
        binary_default=bool(isinstance(parameters, dict) and parameters.get("binary_data_output", False)),
    )


def _json_length(body: bytes, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    try:
        length = int(header_length)
    except ValueError:
        raise RequestError(f"Inference-Header-Content-Length {header_length!r} is not a number") from None
    if not 0 < length <= len(body):
        raise RequestError(f"Inference-Header-Content-Length {length} does not fit a body of {len(body)} bytes")
    return length


def _parse_input(spec: Any, binary: memoryview, offset: int) -> tuple[RestInput, int]:
    if not isinstance(spec, dict) or not all(k in spec for k in ("name", "datatype", "shape")):
        raise RequestError("each input needs 'name', 'datatype' and 'shape'")
    name, datatype, shape = str(spec["name"]), str(spec["datatype"]).upper(), spec["shape"]
    if not isinstance(shape, list):
        raise RequestError(f"input {name!r}: shape must be a list")
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(f"input {name!r}: parameters must be an object")
    if "data" in spec:
        array = tensor_from_json(name, datatype, shape, spec["data"])
    elif "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise RequestError(f"input {name!r}: binary_data_size {size!r} does not fit the {len(binary) - offset} bytes left")
        array = tensor_from_binary(name, datatype, shape, binary[offset:offset + size])
        offset += size
    else:
        raise RequestError(f"input {name!r} has neither 'data' nor a binary_data_size parameter")
    return RestInput(name, datatype, [int(d) for d in shape], array, parameters), offset


def _requested(outputs: Any) -> tuple[list[str], dict[str, bool]]:
    if outputs is None:
        return [], {}
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and "name" in o for o in outputs):
        raise RequestError("'outputs' must be a list of objects with a 'name'")
    names = [str(o["name"]) for o in outputs]
    binary = {str(o["name"]): bool(o["parameters"]["binary_data"]) for o in outputs
              if isinstance(o.get("parameters"), dict) and "binary_data" in o["parameters"]}
    return names, binary


def encode_response(
    request: RestRequest, model_name: str, version: str, outputs: Sequence[OutputTensor], parameters: dict[str, Any],
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    described, blobs = [], []
    for output in outputs:
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": output.shape}
        if request.binary_outputs.get(output.name, request.binary_default):
            raw = encode_bytes_tensor(output.array.reshape(-1)) if output.datatype == "BYTES" else output.array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = output.array.reshape(-1).tolist()
        described.append(entry)
    header: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": described,
                              "parameters": parameters}
    if request.id is not None:
        header["id"] = request.id
    head = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
