"""The benchmark's files: Markdown, CSV and JSON, plus the columns and cells they share.

Pure text: nothing here prints. The CLI renders the same columns and header lines as a rich
table (``edge_sealant.cli.bench.render_table``); the plots live in :mod:`edge_sealant.plots`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Optional, Sequence

from edge_sealant.bench.table import ROW_KEYS, BenchResult
from edge_sealant.card import atomic_write_text

# (title, row key, decimals; None = the text as is) of the Markdown and terminal tables.
TABLE_COLUMNS = (
    ("row", "label", None),
    ("AUROC [95% CI]", "auroc", 4),
    ("acc", "accuracy", 3),
    ("bal acc", "balanced_accuracy", 3),
    ("recall", "recall", 3),
    ("FPR", "fpr", 3),
    ("MB", "size_mb", 2),
    ("p50 ms", "latency_p50_ms", 2),
    ("p90 ms", "latency_p90_ms", 2),
    ("p99 ms", "latency_p99_ms", 2),
    ("mean ms", "latency_mean_ms", 2),
    ("img/s", "throughput_ips", 0),
    ("speed-up", "speedup_vs_torch", 2),
    ("e2e img/s", "e2e_ips", 0),
    ("e2e p50 ms", "e2e_p50_ms", 2),
)
# The headline columns kept on a narrow terminal.
COMPACT_KEYS = ("label", "auroc", "recall", "fpr", "size_mb", "latency_p50_ms", "latency_p99_ms", "throughput_ips", "speedup_vs_torch", "e2e_ips")


def format_value(value: Any, digits: int = 4) -> str:
    """'-' for a missing figure, floats with ``digits`` decimals, anything else as text."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table_cells(row: dict[str, Any], columns: Sequence[tuple[str, str, Optional[int]]] = TABLE_COLUMNS) -> list[str]:
    """Cells of one row; AUROC, recall and FPR carry their 95% interval where it was measured."""
    from edge_sealant.metrics import format_with_ci

    def cell(key: str, digits: Optional[int]) -> str:
        if digits is None:
            return str(row[key])
        if row.get(f"{key}_ci") and row[key] is not None:
            return format_with_ci(row[key], row[f"{key}_ci"], digits)
        return format_value(row[key], digits)

    return [cell(key, digits) for _, key, digits in columns]


def header_lines(header: dict[str, Any]) -> list[str]:
    """The header as sentences: CPU, ISA, OpenVINO capabilities, threads and versions, run, date."""
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in header["isa"].items())
    versions = ", ".join(f"{k} {v}" for k, v in header["versions"].items())
    lines = [
        f"CPU: {header['cpu']} ({header['physical_cores']} physical cores, {header['logical_cpus']} logical CPUs)",
        f"ISA: {isa}",
        f"OpenVINO CPU capabilities: {', '.join(header['openvino_capabilities']) or '-'}"
        + ("" if header["bf16"] else " (no BF16: bf16 row skipped)"),
        f"threads: {header['threads']} for every backend; versions: {versions}",
    ]
    if "model" in header:  # a bare system header (benchmark scripts) has no run
        lines.append(
            f"model: {header['model']} {header['input_size'][0]}x{header['input_size'][1]}, threshold "
            f"{header['threshold']:.4g} ({header['threshold_policy']}); {header['split']} split ({header.get('split_role', 'held-out')}): {header['images']} images; "
            f"{header['iterations']} timed runs after {header['warmup']} warm-up; preprocessing "
            f"(decode + resize) {header['preprocess_ms']:.2f} ms/image, not in the latency columns"
        )
    lines.append(f"date: {header['date']}")
    return lines


def to_markdown(result: BenchResult) -> str:
    """The report: header bullets, the full table, how each figure was measured, gate, plots."""
    out = ["# edge-sealant bench", ""]
    out += [f"- {line}" for line in header_lines(result.header)]
    out += ["", "| " + " | ".join(t for t, _, _ in TABLE_COLUMNS) + " |", "|" + "|".join("---" if k == "label" else "---:" for _, k, _ in TABLE_COLUMNS) + "|"]
    out += ["| " + " | ".join(table_cells(row)) + " |" for row in result.rows]
    out += ["", _measurement_note(result.rows)]
    if result.gate:
        out += ["", "**Drop gate failed:**", *[f"- {g}" for g in result.gate]]
    if result.plots:
        out += ["", *[f"![{name}]({Path(path).name})" for name, path in result.plots.items()]]
    return "\n".join(out) + "\n"


def _measurement_note(rows: Sequence[dict[str, Any]]) -> str:
    """The paragraph under the table: what each timing column measures."""
    modes = "; ".join(sorted({f"{r['backend']}: {r['throughput_mode']}" for r in rows if not r["timing_only"]}))
    return (
        "Latency: batch 1, LATENCY hint, inference only (decoded and resized images in memory); "
        "img/s: THROUGHPUT hint (" + modes + "). "
        "speed-up: torch FP32 p50 / row p50. e2e: file -> decision through the runtime "
        "(Inspector.stream for img/s, one inspect() per file for p50), decode and resize included. "
        "Rows marked 'timing only' have no accuracy."
    )


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return " ".join(f"{v:.6g}" for v in value) if isinstance(value, (list, tuple)) else value  # intervals: "lo hi"


def to_csv(result: BenchResult) -> str:
    """One line per row, the columns of ``ROW_KEYS``; intervals as 'lo hi'."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(ROW_KEYS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in ROW_KEYS})
    return buffer.getvalue()


def to_json(result: BenchResult) -> str:
    """bench.json: header, rows, plots and gate."""
    return json.dumps(result.to_dict(), indent=2, default=str) + "\n"


def write_outputs(
    result: BenchResult,
    out_dir: Path,
    json_path: Optional[Path] = None,
    csv_path: Optional[Path] = None,
    md_path: Optional[Path] = None,
) -> dict[str, str]:
    """PNGs (+ bench.json when no --json) in ``out_dir``; JSON/CSV/Markdown where asked."""
    from edge_sealant.plots import write_bench_plots

    prefix = f"{json_path.stem}_" if json_path else ""
    result.plots = write_bench_plots(result, out_dir, prefix)
    written = dict(result.plots)
    json_path = json_path or out_dir / "bench.json"
    atomic_write_text(json_path, to_json(result))
    written["json"] = str(json_path)
    if csv_path:
        atomic_write_text(csv_path, to_csv(result))
        written["csv"] = str(csv_path)
    if md_path:
        atomic_write_text(md_path, to_markdown(result))
        written["md"] = str(md_path)
    return written


def default_out_dir(run: Path, json_path: Optional[Path]) -> Path:
    """Where the PNGs go: next to --json, else RUN/bench."""
    return json_path.parent if json_path else Path(run) / "bench"


def result_stem(date: str, cpu: str, name: str) -> str:
    """``<date>_<cpu slug>_<name>``: how every results file is named, so runs on different CPUs never collide."""
    from edge_sealant.bench.system import cpu_slug

    return f"{date}_{cpu_slug(cpu)}_{name}"


def publish_results(folder: Path, name: str, payload: dict[str, Any], markdown_text: str) -> tuple[Path, Path]:
    """What every benchmark script ends with: ``<date>_<cpu>_<name>.{md,json}`` in ``folder``
    (date and CPU read from ``payload["date"]`` and ``payload["cpu"]["cpu"]``), the report printed."""
    paths = write_result_files(folder, result_stem(payload["date"], payload["cpu"]["cpu"], name), payload, markdown_text)
    print(markdown_text)
    return paths


def write_result_files(folder: Path, stem: str, payload: dict[str, Any], markdown_text: str) -> tuple[Path, Path]:
    """``folder/stem.json`` (the payload) and ``folder/stem.md`` (its report), atomically:
    the pair every benchmark script leaves in ``benchmarks/results``."""
    from edge_sealant.card import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    md_path, json_path = folder / f"{stem}.md", folder / f"{stem}.json"
    atomic_write_text(json_path, json.dumps(payload, indent=2, default=str) + "\n")
    atomic_write_text(md_path, markdown_text)
    return md_path, json_path
