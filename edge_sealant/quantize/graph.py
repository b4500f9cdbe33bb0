"""Reading model graphs: is it already quantized, which weights are float, which op is the head.

Functions take a loaded model (``ov.Model`` or ``onnx.ModelProto``) and import nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_sealant.errors import EdgeSealantError

# Ops whose inputs NNCF quantizes in a CNN; a model that already has these is quantized.
OV_QUANTIZED_OPS = frozenset({"FakeQuantize", "FakeConvert"})
ONNX_QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
        "QLinearAdd",
        "QLinearMul",
        "QLinearGlobalAveragePool",
        "QLinearSigmoid",
    }
)
LOW_BIT_TYPES = frozenset({"i8", "u8", "i4", "u4", "nf4", "f8e4m3", "f8e5m2"})
WEIGHTED_OV_OPS = frozenset({"Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData"})
# Ops between a weights constant and its Convolution/MatMul (decompression, layout changes).
WEIGHT_PATH_OPS = frozenset({"Convert", "Multiply", "Subtract", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "FakeQuantize"})


def _element_type(op: Any) -> str:
    return op.get_output_element_type(0).get_type_name()


def openvino_quantized_ops(model: Any) -> list[str]:
    """Names of ops that show ``model`` (an ``ov.Model``) is already quantized / compressed."""
    found = []
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind in OV_QUANTIZED_OPS:
            found.append(f"{kind} {op.get_friendly_name()}")
        elif kind == "Constant" and _element_type(op) in LOW_BIT_TYPES:
            found.append(f"{_element_type(op)} constant {op.get_friendly_name()}")
    return found


def onnx_quantized_ops(proto: Any) -> list[str]:
    """Names of QuantizeLinear/QLinear*/...Integer nodes in an ``onnx.ModelProto``."""
    return [f"{n.op_type} {n.name}" for n in proto.graph.node if n.op_type in ONNX_QUANTIZED_OPS]


def quantized_ops(model: Any, backend: str) -> list[str]:
    """:func:`openvino_quantized_ops` or :func:`onnx_quantized_ops`, by ``backend``."""
    return openvino_quantized_ops(model) if backend == "openvino" else onnx_quantized_ops(model)


def check_not_quantized(found: list[str], path: Path) -> None:
    """Refuse a model in which quantization nodes were ``found``: it is not an FP32 model."""
    if found:
        raise EdgeSealantError(
            f"{path}: already quantized ({len(found)} quantization nodes, e.g. {found[0]}); "
            "quantize the FP32 model (re-export with 'edge-sealant export')"
        )


def has_fp16_weights(model: Any) -> bool:
    """Whether an ``ov.Model`` holds f16 constants (an IR saved with ``compress_to_fp16=True``)."""
    return any(op.get_type_name() == "Constant" and _element_type(op) == "f16" for op in model.get_ops())


def _weights_state(op: Any) -> tuple[bool, bool]:
    """(found a weights constant, found it quantized) on the weights input of ``op``.

    Walks back through :data:`WEIGHT_PATH_OPS`: an i8/u8 constant or a FakeQuantize on the
    way means INT8 weights.
    """
    constant, seen = False, set()
    stack = [op.input_value(1).get_node()]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return constant, True
        if kind == "Constant":
            constant = True
            if _element_type(node) in LOW_BIT_TYPES:
                return constant, True
            continue
        if kind in WEIGHT_PATH_OPS:
            stack.extend(node.input_value(i).get_node() for i in range(node.get_input_size()))
    return constant, False


def float_weighted_ops(model: Any) -> list[str]:
    """Convolution/MatMul ops of an ``ov.Model`` whose weights are not quantized.

    The weights input is traced back through Convert/Multiply/Subtract/Reshape...: an i8/u8
    constant or a FakeQuantize on the way means INT8 weights. Ops fed by two activations
    (no constant on the weights input) are not listed.
    """
    out = []
    for op in model.get_ops():
        if op.get_type_name() not in WEIGHTED_OV_OPS or op.get_input_size() < 2:
            continue
        constant, quantized = _weights_state(op)
        if constant and not quantized:
            out.append(op.get_friendly_name())
    return sorted(out)


def head_op_names(model: Any) -> list[str]:
    """Friendly name(s) of the last Convolution/MatMul before each Sigmoid of an ``ov.Model``."""
    names = []
    for op in model.get_ops():
        if op.get_type_name() != "Sigmoid":
            continue
        stack, seen = [op.input_value(0).get_node()], set()
        while stack:
            node = stack.pop()
            if id(node) in seen or node.get_type_name() in ("Parameter", "Constant"):
                continue
            seen.add(id(node))
            if node.get_type_name() in WEIGHTED_OV_OPS:
                names.append(node.get_friendly_name())
                continue
            # Walk back through the bias Add / reshapes only (the first input is the data).
            stack.append(node.input_value(0).get_node())
    return sorted(set(names))


def onnx_head_node_names(proto: Any) -> list[str]:
    """Name(s) of the last Gemm/MatMul/Conv before each Sigmoid of an ONNX graph."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    names = []
    for node in proto.graph.node:
        if node.op_type != "Sigmoid":
            continue
        current = producers.get(node.input[0])
        while current is not None:
            if current.op_type in ("Gemm", "MatMul", "Conv"):
                names.append(current.name)
                break
            current = producers.get(current.input[0]) if current.input else None
    return sorted(set(names))


HEATMAP_SCOPES = ("/heatmap_head/", "/fusion/")  # node-name parts the torch exporter writes for them


def heatmap_op_names(model: Any, backend: str) -> list[str]:
    """Every op of the heatmap head and the score fusion (an ``ov.Model`` or ONNX graph).

    Kept in float: the image score is the heatmap's peak, so INT8 rounding of a dense head's
    few low-resolution ops moves the ranking (measured on Magnetic-Tile: test AUROC -0.045
    with them quantized), while they cost a few percent of the network's time.
    """
    if backend == "openvino":
        names = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() not in ("Constant", "Result", "Parameter")]
    else:
        names = [node.name for node in model.graph.node]
    return sorted({name for name in names if any(scope in name for scope in HEATMAP_SCOPES)})


def head_names(model: Any, backend: str) -> list[str]:
    """:func:`head_op_names` or :func:`onnx_head_node_names`, by ``backend``."""
    return head_op_names(model) if backend == "openvino" else onnx_head_node_names(model)


def kept_in_float(model: Any, backend: str, float_head: bool, has_heatmap: bool) -> list[str]:
    """Ops NNCF / ONNX Runtime must leave in float: the 1-output head when the recipe says so
    (``float_head``), and the heatmap head with the score fusion of a heatmap model (for every
    family, see :func:`heatmap_op_names`)."""
    ignored = head_names(model, backend) if float_head else []
    if has_heatmap:
        ignored = sorted(set(ignored) | set(heatmap_op_names(model, backend)))
    return ignored


def onnx_input_name(proto: Any) -> str:
    """Name of the image input of an ONNX graph (the first input that is not an initializer)."""
    initializers = {t.name for t in proto.graph.initializer}
    return next(i.name for i in proto.graph.input if i.name not in initializers)
