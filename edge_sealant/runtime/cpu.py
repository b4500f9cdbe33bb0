"""What this CPU can do for INT8 inference, read from ``/proc/cpuinfo`` (Linux).

An INT8 model whose weights use the full 8-bit range (quantized without NNCF's overflow fix)
is only exact on CPUs with VNNI or AMX-INT8: without them the u8 x s8 kernels add pairs of
products in 16 bits, which saturate. ``quantize --overflow-fix disable`` makes such a model
(30-45% less logit error than 7-bit weights on magnetic-tile, on a VNNI CPU); the runtime warns
when it meets a CPU without VNNI.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Optional

CPUINFO = Path("/proc/cpuinfo")
# Any of these: INT8 dot products accumulate in 32 bits (no saturation of the pair sums).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def read_cpuinfo(path: Path = CPUINFO) -> tuple[str, Optional[set[str]]]:
    """(CPU model name, ISA flags of the first CPU); flags None where they cannot be read
    (no ``/proc/cpuinfo``: Windows, macOS)."""
    model, flags = platform.processor() or platform.machine(), None
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return model, None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key.strip() == "flags" and flags is None:
            flags = set(value.split())
    return model, flags


def has_vnni(flags: Optional[set[str]]) -> Optional[bool]:
    """Whether INT8 sums cannot saturate on this CPU; None when its flags are unknown."""
    if flags is None:
        return None
    return any(flag in flags for flag in VNNI_FLAGS)


def saturation_warning(overflow_fix: Optional[str], flags: Optional[set[str]]) -> Optional[str]:
    """The warning for an INT8 OpenVINO model quantized with ``overflow_fix`` on a CPU with
    ``flags``, or None (the fix on every layer, a VNNI CPU, or flags that cannot be read)."""
    if overflow_fix in (None, "enable") or has_vnni(flags) is not False:
        return None
    return (
        f"this INT8 model was quantized with overflow fix '{overflow_fix}' (full-range 8-bit weights) and this "
        "CPU has no VNNI/AMX-INT8: its INT8 sums can saturate and scores drift; quantize with "
        "--overflow-fix enable for such PCs, and check its figures here (edge-sealant evaluate)"
    )
