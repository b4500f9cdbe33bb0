"""The protocol rules of `serve` without a server: tensors <-> images, the REST body (numpy only)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from edge_sealant.serve.rest import encode_response, parse_request
from edge_sealant.serve.tensors import (
    RequestError,
    encode_bytes_tensor,
    images_from_tensor,
    output_tensors,
    requested_outputs,
    tensor_from_binary,
    tensor_from_json,
)


def test_bytes_tensor_round_trip_and_cut_short():
    elements = [b"\xff\xd8jpeg", b"", b"png\x00bytes"]
    raw = encode_bytes_tensor(elements)
    assert tensor_from_binary("image", "BYTES", [3], raw).tolist() == elements
    with pytest.raises(RequestError, match="cut short"):
        tensor_from_binary("image", "BYTES", [3], raw[:-2])
    with pytest.raises(RequestError, match="does not hold"):
        tensor_from_binary("image", "BYTES", [2], raw)


def test_uint8_binary_and_json_tensors():
    pixels = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    assert np.array_equal(tensor_from_binary("image", "UINT8", [2, 3, 4, 3], pixels.tobytes()), pixels)
    assert np.array_equal(tensor_from_json("image", "UINT8", [2, 3, 4, 3], pixels.tolist()), pixels)  # nested lists too
    with pytest.raises(RequestError, match="not a UINT8 tensor"):
        tensor_from_json("image", "UINT8", [1], ["x"])
    with pytest.raises(RequestError, match="datatype INT64"):
        tensor_from_json("image", "INT64", [1], [1])


def test_images_from_bytes_strings_are_base64_never_paths():
    jpeg = b"\xff\xd8\xff\xe0 fake"
    images = images_from_tensor("image", "BYTES", [2], np.array([jpeg, base64.b64encode(jpeg).decode()], dtype=object), None, 8)
    assert images == [jpeg, jpeg]
    # A string that happens to be valid base64 is decoded, never opened as a file.
    (image,) = images_from_tensor("image", "BYTES", [1], np.array(["/tmp"], dtype=object), None, 8)
    assert isinstance(image, bytes) and image == base64.b64decode("/tmp")
    with pytest.raises(RequestError, match="base64"):
        images_from_tensor("image", "BYTES", [1], np.array(["/etc/passwd"], dtype=object), None, 8)


def test_images_from_pixels_bgr_by_default_rgb_on_request():
    pixels = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # blue in BGR
    (bgr,) = images_from_tensor("image", "UINT8", [1, 2, 2, 3], pixels, None, 8)
    (from_rgb,) = images_from_tensor("image", "UINT8", [1, 2, 2, 3], pixels, {"color_order": "rgb"}, 8)
    assert bgr[0, 0].tolist() == [255, 0, 0] and from_rgb[0, 0].tolist() == [0, 0, 255]


@pytest.mark.parametrize("name, datatype, shape, data, words", [
    ("frame", "BYTES", [1], [b"x"], "unknown input 'frame'"),
    ("image", "FP32", [1], [1.0], "datatype FP32"),
    ("image", "BYTES", [0], [], "empty batch"),
    ("image", "BYTES", [1, 2], [b"a", b"b"], "shape [N]"),
    ("image", "UINT8", [1, 4, 4, 1], [0] * 16, "[N, H, W, 3]"),
    ("image", "UINT8", [9, 1, 1, 3], [0] * 27, "at most 8"),
    ("image", "BYTES", [1], [b""], "empty bytes"),
])
def test_bad_inputs_are_request_errors(name, datatype, shape, data, words):
    array = np.array(data, dtype=object if datatype == "BYTES" else np.float32).reshape(shape) if data else np.zeros(shape, dtype=object)
    with pytest.raises(RequestError) as err:
        images_from_tensor(name, datatype, shape, array, None, 8)
    assert words in str(err.value) and err.value.status == 400


def binary_body(elements: list[bytes], extra: bytes = b"", outputs: list | None = None) -> tuple[bytes, str]:
    raw = encode_bytes_tensor(elements)
    header = {"id": "r1", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(elements)],
                                      "parameters": {"binary_data_size": len(raw)}}],
              "parameters": {"binary_data_output": True}}
    if outputs is not None:
        header["outputs"] = outputs
    head = json.dumps(header).encode()
    return head + raw + extra, str(len(head))


def test_parse_binary_request_and_its_errors():
    body, length = binary_body([b"one", b"two"])
    request = parse_request(body, length)
    assert request.id == "r1" and request.binary_default and request.inputs[0].array.tolist() == [b"one", b"two"]
    with pytest.raises(RequestError, match="after the inputs"):
        parse_request(*binary_body([b"one"], extra=b"junk"))
    with pytest.raises(RequestError, match="does not fit"):
        parse_request(body, str(len(body) + 1))
    with pytest.raises(RequestError, match="not JSON"):
        parse_request(b"\xff\xfe", None)
    with pytest.raises(RequestError, match="non-empty 'inputs'"):
        parse_request(b'{"inputs": []}', None)
    with pytest.raises(RequestError, match="neither 'data'"):
        parse_request(b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}', None)


def test_response_binary_or_json_per_output():
    outputs = output_tensors([0.25, 0.75], [False, True], np.zeros((2, 3, 2), dtype=np.float32))
    assert [o.name for o in outputs] == ["probability", "is_defect", "heatmap"]
    body, length = binary_body([b"a", b"b"], outputs=[{"name": "probability", "parameters": {"binary_data": False}},
                                                      {"name": "is_defect"}])
    request = parse_request(body, length)
    chosen = requested_outputs(outputs, request.outputs)
    payload, json_length = encode_response(request, "m", "v1", chosen, {"threshold": 0.5})
    header = json.loads(payload[:json_length])
    assert header["outputs"][0]["data"] == [0.25, 0.75]  # asked as JSON
    assert header["outputs"][1]["parameters"]["binary_data_size"] == 2  # the request's default: binary
    assert np.frombuffer(payload[json_length:], dtype=np.bool_).tolist() == [False, True]
    assert header["id"] == "r1" and header["model_version"] == "v1" and header["parameters"]["threshold"] == 0.5
    with pytest.raises(RequestError, match="unknown output 'scores'"):
        requested_outputs(outputs, ["scores"])
    assert [o.name for o in output_tensors([0.1], [False], None)] == ["probability", "is_defect"]
