"""Checkpoint files: a plain dict of tensors and JSON-able values (``weights_only=True`` safe)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from edge_sealant.card import ModelCard, atomic_write_bytes
from edge_sealant.errors import EdgeSealantError

BEST = "best.pt"
LAST = "last.pt"


def save_checkpoint(path: Path, net: torch.nn.Module, card: ModelCard, **state: Any) -> None:
    """Atomically write weights, the model card and optional resume state (optimizer, epoch...)."""
    buffer = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "card": card.to_dict(), **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EdgeSealantError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise EdgeSealantError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {first_line})") from None


def load_trained(run_or_checkpoint: str | Path) -> tuple[torch.nn.Module, ModelCard]:
    """Rebuild the trained ``InspectionNet`` (eval mode, CPU) and its card from a run folder.

    The card comes from ``run.json`` when present (it holds the threshold chosen after
    training), else from the checkpoint.
    """
    from edge_sealant.models.registry import build_inspection_net

    path = Path(run_or_checkpoint)
    ckpt_path = path / BEST if path.is_dir() else path
    ckpt = read_checkpoint(ckpt_path)
    run_json = ckpt_path.parent / "run.json"
    card = ModelCard.load(run_json) if run_json.is_file() else ModelCard.from_dict(ckpt["card"])
    net = build_inspection_net(card.model, pretrained="none", heatmap=card.heatmap_stride)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:  # torch lists every mismatched tensor: kilobytes
        saved = (ckpt.get("card") or {}).get("model", "?") if isinstance(ckpt.get("card"), dict) else "?"
        raise EdgeSealantError(
            f"{ckpt_path}: the weights do not fit model '{card.model}' named by the card (the checkpoint was trained as "
            f"'{saved}'; was run.json edited?) [{type(exc).__name__}]"
        ) from None
    return net.eval(), card
