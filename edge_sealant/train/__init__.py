"""Training: options, the training loop, K-fold cross-validation, progress callbacks.

Rooms: ``options`` (``TrainOptions``, config files), ``parts`` (augmentation, sampling,
probe/fine-tune, weight average), ``trainer`` (``Trainer``: one run), ``crossval``
(``train --folds K``), ``progress`` (``TrainProgress`` callbacks, plain-text wording),
``start`` (``train`` / ``resume``: what the CLI calls).

Names are imported lazily: ``edge_sealant.train.options`` (read by the CLI for its defaults
and help) must not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "TrainOptions": "options",
    "load_config": "options",
    "epoch_indices": "parts",
    "TrainProgress": "progress",
    "TextProgress": "progress",
    "train": "start",
    "resume": "start",
    "Trainer": "trainer",
    "TrainData": "trainer",
    "TrainResult": "trainer",
    "load_training_dataset": "trainer",
    "new_card": "trainer",
    "train_folds": "crossval",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'edge_sealant.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edge_sealant.train.{_HOME[name]}"), name)
