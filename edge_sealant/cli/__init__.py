"""The ``edge-sealant`` command line: thin by design.

Each command parses options, calls one domain function and presents what it returns. Domain
modules never import typer or rich; they raise :class:`EdgeSealantError`, which becomes a
one-line message and exit code 1 (``common._App``). Heavy libraries are imported inside the
commands so ``edge-sealant --help`` stays instant.

One module per verb (or family of verbs) holds its command(s) and their presentation:
``data``, ``train`` (train, evaluate), ``export`` (export, set-threshold), ``quantize``,
``predict``, ``bench``, ``demo``, ``serve``.
"""

from __future__ import annotations

# Imported for their side effect: each registers its commands on ``app``, in --help order.
from edge_sealant.cli import data, train, export, quantize, predict, bench, demo, serve  # noqa: F401,E401
from edge_sealant.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
