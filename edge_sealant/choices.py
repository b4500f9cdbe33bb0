"""One parser for comma-list options such as ``--format onnx,openvino`` or ``--backends ov``.

Export, quantize and bench accept the same spellings of the same things; one function
resolves aliases, drops repeats, keeps the user's order and refuses an unknown value in one
line that lists the valid ones.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

from edge_sealant.errors import EdgeSealantError

# Spellings users type for the engines. "onnx" is an engine in bench/quantize (ONNX Runtime)
# and a file format in export: callers whose allowed values include "onnx" keep it.
ENGINE_ALIASES = {"ov": "openvino", "onnx": "onnxruntime", "ort": "onnxruntime", "pytorch": "torch"}


def parse_choices(
    values: Optional[Iterable[str]],
    allowed: Sequence[str],
    what: str,
    default: Optional[Sequence[str]] = None,
    aliases: Mapping[str, str] = ENGINE_ALIASES,
    option: str = "",
) -> list[str]:
    """Normalised, de-duplicated ``values`` (lower case, aliases resolved); ``default`` (all of
    ``allowed`` when None) when no value is given. ``option`` (e.g. ``--backends``) starts
    the error message."""
    given = [v.strip().lower() for v in values or [] if v and v.strip()]
    if not given:
        return list(allowed if default is None else default)
    chosen: list[str] = []
    for value in given:
        value = value if value in allowed else aliases.get(value, value)
        if value not in allowed:
            prefix = f"{option}: " if option else ""
            raise EdgeSealantError(f"{prefix}unknown {what} {value!r}; choose from {', '.join(allowed)}")
        if value not in chosen:
            chosen.append(value)
    return chosen


def parse_choice(value: str, allowed: Sequence[str], what: str, option: str = "", aliases: Mapping[str, str] = ENGINE_ALIASES) -> str:
    """One value of ``allowed`` (aliases resolved)."""
    return parse_choices([str(value)], allowed, what, aliases=aliases, option=option)[0]
