"""Open Inference Protocol (KServe v2) tensors <-> images and verdicts, without a server.

Everything here is plain numpy, so the rules a request must follow are tested without
starting anything. Input ``image``: ``BYTES`` ``[N]`` (encoded JPEG/PNG/BMP..., one element
an image) or ``UINT8`` ``[N, H, W, 3]`` (decoded pixels, BGR like OpenCV unless the input's
parameter ``color_order`` is ``"RGB"``; any H and W, the server resizes like training did).
Outputs: ``probability`` FP32 ``[N]``, ``is_defect`` BOOL ``[N]`` and, for heatmap models,
``heatmap`` FP32 ``[N, h, w]``.

A client's mistake raises :class:`RequestError` (one line; the servers answer 4xx with it).
Only ``bytes`` and arrays ever reach the inspector: a string is never taken as a file path.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edge_sealant.errors import EdgeSealantError

INPUT_NAME = "image"
OUTPUT_NAMES = ("probability", "is_defect", "heatmap")
INPUT_DATATYPES = ("BYTES", "UINT8")
COLOR_ORDERS = ("BGR", "RGB")
_NUMPY_DTYPES = {"UINT8": np.uint8, "FP32": np.float32, "BOOL": np.bool_, "BYTES": np.object_}


class RequestError(EdgeSealantError):
    """A bad request (wrong input, datatype, shape, not an image...): answered with ``status``."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class OutputTensor:
    """One output of a response: name, v2 datatype and the array (shape = ``array.shape``)."""

    name: str
    datatype: str
    array: np.ndarray

    @property
    def shape(self) -> list[int]:
        return list(self.array.shape)


# ---------------------------------------------------------------------------------- inputs
def images_from_tensor(
    name: str, datatype: str, shape: Sequence[int], array: np.ndarray, parameters: Mapping[str, Any] | None, max_batch: int,
) -> list[bytes | np.ndarray]:
    """The images of input tensor ``name`` (already as an array of ``datatype`` and ``shape``).

    BYTES elements become ``bytes`` (a JSON string element is read as base64); UINT8 gives one
    BGR array per image. Raises :class:`RequestError` for anything else.
    """
    check_input_name(name)
    datatype = str(datatype).upper()
    shape = [int(d) for d in shape]
    if datatype == "BYTES":
        images = _encoded_images(array, shape)
    elif datatype == "UINT8":
        images = _pixel_images(array, shape, _color_order(parameters))
    else:
        raise RequestError(f"input 'image' has datatype {datatype}; send BYTES (encoded images) or UINT8 [N, H, W, 3] (pixels)")
    if not images:
        raise RequestError("input 'image' is an empty batch; send at least one image")
    if len(images) > max_batch:
        raise RequestError(f"input 'image' has {len(images)} images; this server takes at most {max_batch} per request")
    return images


def check_input_name(name: str) -> None:
    if name != INPUT_NAME:
        raise RequestError(f"unknown input {name!r}: send one input named 'image'")


def _encoded_images(array: np.ndarray, shape: list[int]) -> list[bytes]:
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise RequestError(f"BYTES input 'image' must have shape [N] (one encoded image each), got {shape}")
    images = []
    for index, element in enumerate(np.asarray(array, dtype=object).reshape(-1)):
        if isinstance(element, (bytes, bytearray, memoryview)):
            data = bytes(element)
        elif isinstance(element, str):  # JSON carries bytes as text: base64, as KServe's examples do
            data = _from_base64(element, index)
        else:
            raise RequestError(f"image {index}: BYTES element is {type(element).__name__}, not bytes")
        if not data:
            raise RequestError(f"image {index}: empty bytes")
        images.append(data)
    return images


def _from_base64(text: str, index: int) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"image {index}: a JSON string element must be base64 of an encoded image "
                           "(or send the bytes with the binary data extension)") from None


def _pixel_images(array: np.ndarray, shape: list[int], color_order: str) -> list[np.ndarray]:
    if len(shape) != 4 or shape[3] != 3 or min(shape[1:3], default=0) < 1:
        raise RequestError(f"UINT8 input 'image' must have shape [N, H, W, 3] (BGR pixels), got {shape}")
    pixels = np.asarray(array, dtype=np.uint8).reshape(shape)
    if color_order == "RGB":
        pixels = pixels[..., ::-1]
    return [np.ascontiguousarray(image) for image in pixels]


def _color_order(parameters: Mapping[str, Any] | None) -> str:
    value = str((parameters or {}).get("color_order", "BGR")).upper()
    if value not in COLOR_ORDERS:
        raise RequestError(f"input parameter color_order is {value!r}; use BGR or RGB")
    return value


# ------------------------------------------------------------------ REST tensor encodings
def tensor_from_json(name: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray:
    """A tensor given inline in a REST JSON body (``"data": [...]``, flat or nested)."""
    dtype = _dtype(name, datatype)
    try:
        if dtype is np.object_:
            flat = np.array(_flatten(data), dtype=object)
        else:
            flat = np.asarray(data, dtype=dtype).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise RequestError(f"input {name!r}: 'data' is not a {datatype} tensor") from None
    return _reshaped(name, flat, shape)


def tensor_from_binary(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> np.ndarray:
    """A tensor sent with the binary data extension (bytes after the JSON header).

    BYTES elements are each a 4-byte little-endian length and the bytes, as Triton clients write.
    """
    dtype = _dtype(name, datatype)
    if dtype is not np.object_:
        if len(raw) % np.dtype(dtype).itemsize:
            raise RequestError(f"input {name!r}: {len(raw)} binary bytes are not whole {datatype} elements")
        return _reshaped(name, np.frombuffer(raw, dtype=dtype), shape)
    elements, offset, view = [], 0, memoryview(raw)
    while offset < len(view):
        if offset + 4 > len(view):
            raise RequestError(f"input {name!r}: BYTES element {len(elements)} is cut short")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise RequestError(f"input {name!r}: BYTES element {len(elements)} is cut short")
        elements.append(view[offset:offset + length].tobytes())
        offset += length
    return _reshaped(name, np.array(elements, dtype=object), shape)


def encode_bytes_tensor(elements: Sequence[bytes]) -> bytes:
    """The binary form of a BYTES tensor: each element as length (uint32 LE) + bytes."""
    return b"".join(struct.pack("<I", len(e)) + bytes(e) for e in elements)


def _dtype(name: str, datatype: str) -> Any:
    dtype = _NUMPY_DTYPES.get(str(datatype).upper())
    if dtype is None:
        raise RequestError(f"input {name!r} has datatype {datatype}; send BYTES (encoded images) or UINT8 [N, H, W, 3] (pixels)")
    return dtype


def _reshaped(name: str, flat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    try:
        dims = [int(d) for d in shape]
    except (TypeError, ValueError):
        raise RequestError(f"input {name!r}: shape {shape!r} is not a list of integers") from None
    if any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.int64)) != flat.size:
        raise RequestError(f"input {name!r}: shape {dims} does not hold the {flat.size} elements sent")
    return flat.reshape(dims)


def _flatten(data: Any) -> list:
    if isinstance(data, list):
        return [item for element in data for item in _flatten(element)]
    return [data]


# --------------------------------------------------------------------------------- outputs
def output_tensors(probabilities: Sequence[float], decisions: Sequence[bool], heatmaps: np.ndarray | None) -> list[OutputTensor]:
    """``probability``, ``is_defect`` and, when the model has one, ``heatmap``."""
    outputs = [
        OutputTensor("probability", "FP32", np.asarray(probabilities, dtype=np.float32)),
        OutputTensor("is_defect", "BOOL", np.asarray(decisions, dtype=np.bool_)),
    ]
    if heatmaps is not None:
        outputs.append(OutputTensor("heatmap", "FP32", np.ascontiguousarray(heatmaps, dtype=np.float32)))
    return outputs


def requested_outputs(outputs: list[OutputTensor], names: Sequence[str] | None) -> list[OutputTensor]:
    """The outputs a request asked for (all when it named none); an unknown name is an error."""
    if not names:
        return outputs
    by_name = {o.name: o for o in outputs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise RequestError(f"unknown output {unknown[0]!r}; this model has {', '.join(by_name)}")
    return [by_name[n] for n in names]
