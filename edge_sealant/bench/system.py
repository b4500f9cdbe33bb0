"""The machine a benchmark ran on: CPU model, ISA flags, cores, OpenVINO capabilities, versions.

Two benchmark files can only be compared when their headers say what ran them; everything
here feeds :func:`system_header`.
"""

from __future__ import annotations

import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from edge_sealant.versions import BENCHMARK, library_versions

# The flags that decide INT8 (VNNI, AMX-INT8) and BF16 (AVX512-BF16, AMX-BF16) speed.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
CPUINFO = Path("/proc/cpuinfo")


def physical_cores() -> int:
    """Physical cores (hyper-threads do not help these networks); logical CPUs as fallback."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
        if cores:
            return int(cores)
    except ImportError:
        pass
    return _cores_from_cpuinfo() or os.cpu_count() or 1


def _cores_from_cpuinfo() -> Optional[int]:
    """Distinct (physical id, core id) pairs of /proc/cpuinfo; None where it cannot be read."""
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return None
    pairs = set()
    physical = None
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            pairs.add((physical, value.strip()))
    return len(pairs) or None


def cpu_info() -> dict[str, Any]:
    """CPU model and the ISA flags that decide INT8/BF16 speed (from /proc/cpuinfo)."""
    from edge_sealant.runtime.cpu import read_cpuinfo

    model, flags = read_cpuinfo(CPUINFO)
    return {"cpu": model, "isa": {flag: flag in (flags or set()) for flag in ISA_FLAGS}}


def openvino_capabilities() -> dict[str, Any]:
    """OpenVINO's CPU device name and ``OPTIMIZATION_CAPABILITIES`` (FP32, INT8, BF16, ...)."""
    try:
        import openvino as ov

        core = ov.Core()
        return {
            "device": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
            "optimization_capabilities": [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")],
        }
    except Exception as exc:  # no OpenVINO or no CPU plugin: the header says so
        return {"device": None, "optimization_capabilities": [], "error": f"{type(exc).__name__}: {exc}"}


def system_header(threads: int) -> dict[str, Any]:
    """What a reader needs to compare two benchmark files: CPU, ISA, threads, versions, date."""
    info = cpu_info()
    ov_caps = openvino_capabilities()
    return {
        "cpu": info["cpu"],
        "isa": info["isa"],
        "openvino_device": ov_caps.get("device"),
        "openvino_capabilities": ov_caps.get("optimization_capabilities", []),
        "bf16": "BF16" in ov_caps.get("optimization_capabilities", []),
        "threads": threads,
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "os": platform.platform(),
        "versions": library_versions(BENCHMARK),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def cpu_label(cpu: dict[str, Any]) -> str:
    """``cpu_info()`` as result files name it: 'AMD EPYC (avx2, avx512f, avx512_vnni)', the ISA
    flags present (an older payload without them: the name alone)."""
    flags = [flag for flag, present in (cpu.get("isa") or {}).items() if present]
    return f"{cpu['cpu']} ({', '.join(flags)})" if flags else str(cpu["cpu"])


def cpu_slug(cpu: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+' -> 'intel-xeon-platinum-8480' (for file names)."""
    text = re.sub(r"\((r|tm)\)|cpu|@.*$|processor", " ", cpu.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:48] or "cpu"
