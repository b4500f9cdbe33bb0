"""What a training run tells while it runs, as callbacks: the domain reports, a front end presents.

:class:`TrainProgress` is the interface (every method optional, the base class is silent);
:class:`TextProgress` writes plain lines for scripts and notebooks; the CLI draws a rich
progress bar from the same calls (``edge_sealant/cli/train.py``). The wording of the epoch
line and of the end-of-run summary lives here once, as plain text, so every front end says
the same thing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

from edge_sealant.metrics import format_with_ci, operating_point_warnings

if TYPE_CHECKING:
    from edge_sealant.train.trainer import TrainResult


class TrainProgress:
    """Callbacks of a training run. Override what you need; the defaults do nothing."""

    def message(self, text: str) -> None:
        """A line of progress: data loaded, fold k of K, resuming, early stop."""

    def warning(self, text: str) -> None:
        """Something the user must read: a skipped image, a time limit, a costly operating point."""

    def started(self, steps: int, best_auroc: Optional[float]) -> None:
        """The epoch loop starts; ``steps`` batches per epoch; ``best_auroc``: the kept model's val AUROC when resuming."""

    def epoch_started(self, epoch: int, epochs: int, phase: str) -> None:
        """Epoch ``epoch`` (0-based) of ``epochs`` starts, in phase probe or finetune."""

    def step(self, mean_loss: float) -> None:
        """One batch done; ``mean_loss`` is the epoch's running mean."""

    def epoch_finished(self, record: dict[str, Any], improved: bool, best_auroc: Optional[float]) -> None:
        """An epoch's history record (losses, val AUROC, sample mix); ``improved``: a new best val
        epoch kept (``--select best-val`` only); ``best_auroc``: the kept model's val AUROC."""

    def stopped(self) -> None:
        """The epoch loop ended (normally, early, or by an error)."""

    def finished(self, result: TrainResult) -> None:
        """A model is trained and saved (each fold of ``--folds`` and the final model)."""


class TextProgress(TrainProgress):
    """Plain lines to ``write`` (stderr by default): an epoch line, messages, the summary."""

    def __init__(self, write: Optional[Callable[[str], None]] = None):
        self.write = write or (lambda text: print(text, file=sys.stderr, flush=True))

    def message(self, text: str) -> None:
        self.write(text)

    def warning(self, text: str) -> None:
        self.write(f"warning: {text}")

    def epoch_finished(self, record: dict[str, Any], improved: bool, best_auroc: Optional[float]) -> None:
        self.write(epoch_line(record, improved))

    def finished(self, result: TrainResult) -> None:
        for kind, text in summary_lines(result):
            self.write(f"warning: {text}" if kind == "warning" else text)


def auroc_text(value: Optional[float]) -> str:
    return "-" if value is None or value < 0 else f"{value:.4f}"


def epoch_line(record: dict[str, Any], improved: bool) -> str:
    """``epoch 3: train loss 0.2100, val loss 0.3100, val AUROC 0.9100 *  mix {...}``."""
    validation = ""
    if record.get("val_auroc") is not None:
        validation = f", val loss {record['val_loss']:.4f}, val AUROC {record['val_auroc']:.4f}{' *' if improved else ''}"
    return f"epoch {record['epoch'] + 1}: train loss {record['train_loss']:.4f}{validation}  mix {record['mix']}"


def _select(train: dict[str, Any]) -> str:
    return (train.get("options") or {}).get("select", "best-val")  # runs from before --select kept the best val epoch


def selected_epoch_text(train: dict[str, Any]) -> str:
    """Which epoch a run's model is, from its ``run.json`` ``train`` record: ``last epoch 8 of
    8``, ``best val epoch 4 of 8``, ``epoch 7 of 8, chosen on out-of-fold scores`` (``--folds``),
    with how the run stopped when it stopped early."""
    options = train.get("options") or {}
    epoch = int(train.get("best_epoch", -1)) + 1
    planned = options.get("epochs", train.get("epochs_run", "?"))
    if train.get("folds"):
        return f"epoch {epoch} of {planned}, chosen on out-of-fold scores"
    kind = "last epoch" if _select(train) == "last" else "best val epoch"
    stopped = f"; {train['stopped_by']}" if train.get("stopped_by") else ""
    return f"{kind} {epoch} of {planned}{stopped}"


def val_role_text(train: dict[str, Any]) -> str:
    """What val chose in this run: the threshold, and with ``--select best-val`` the epoch too."""
    return "val chose the threshold" if _select(train) == "last" else "val chose the epoch and the threshold"


def summary_lines(result: TrainResult) -> list[tuple[str, str]]:
    """The end of a run as (kind, text) lines, kind in info / note / warning."""
    metrics = result.card.metrics or {}
    choice = metrics.get("operating_point") or {}
    val = metrics.get("val")
    lines: list[tuple[str, str]] = []
    if val:
        lines.append(("info", (
            f"{selected_epoch_text(result.card.train or {})}: val AUROC {format_with_ci(val['auroc'], val['auroc_ci'])} "
            f"({val_role_text(result.card.train or {})}); threshold {choice['threshold']:.4g} ({choice['policy']}) gives val recall {val['recall']:.3f}, "
            f"false-alarm rate {format_with_ci(val['fpr'], val['fpr_ci'], 3)}; {result.seconds / 60:.1f} min"
        )))
        leak = val.get("leak_free") or {}
        if leak.get("excluded"):
            lines.append(("note", (
                f"{leak['excluded']} val images have an exact or near duplicate in train or test; on the "
                f"{leak['kept']} others: AUROC {format_with_ci(leak.get('auroc'), leak.get('auroc_ci'))}"
            )))
    if choice:
        warnings = operating_point_warnings(choice, choice.get("chosen_on", "val")) + (val or {}).get("warnings", [])
        lines += [("warning", warning) for warning in warnings]
    return lines
