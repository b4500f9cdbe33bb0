"""Benchmark every artifact of a run: accuracy, size, latency, throughput and end-to-end speed.

Rooms:

* :mod:`~edge_sealant.bench.system`: the machine (CPU, ISA flags, cores, OpenVINO
  capabilities, library versions) for the header;
* :mod:`~edge_sealant.bench.measure`: timing primitives and the rules every row shares;
* :mod:`~edge_sealant.bench.table`: options, the rows a run yields, one row's figures, the
  INT8 drop gate and :func:`run_bench`, which strings them together;
* :mod:`~edge_sealant.bench.report`: Markdown, CSV and JSON files; the plots are in
  :mod:`edge_sealant.plots` and the terminal table in ``edge_sealant.cli.bench``.

Nothing here prints: progress goes to ``run_bench``'s ``log`` callback.
"""

from edge_sealant.bench.measure import (
    THROUGHPUT_BATCH,
    Timing,
    batch_of,
    measure_batched_throughput,
    measure_end_to_end,
    measure_latency,
    measure_openvino_throughput,
    measure_preprocess,
    measure_reference,
    source_size,
    time_calls,
)
from edge_sealant.bench.report import (
    COMPACT_KEYS,
    TABLE_COLUMNS,
    default_out_dir,
    header_lines,
    table_cells,
    to_csv,
    to_json,
    to_markdown,
    write_outputs,
    publish_results,
    result_stem,
    write_result_files,
)
from edge_sealant.bench.system import ISA_FLAGS, cpu_info, cpu_label, cpu_slug, openvino_capabilities, physical_cores, system_header
from edge_sealant.bench.table import (
    BACKENDS,
    PRECISIONS,
    ROW_KEYS,
    BenchOptions,
    BenchResult,
    RowSpec,
    add_speedups,
    bench_row,
    drop_gate,
    open_row_backend,
    plan_rows,
    reference_row,
    run_bench,
)

__all__ = [
    "BACKENDS",
    "COMPACT_KEYS",
    "ISA_FLAGS",
    "PRECISIONS",
    "ROW_KEYS",
    "TABLE_COLUMNS",
    "THROUGHPUT_BATCH",
    "BenchOptions",
    "BenchResult",
    "RowSpec",
    "Timing",
    "add_speedups",
    "batch_of",
    "bench_row",
    "cpu_info",
    "cpu_label",
    "cpu_slug",
    "default_out_dir",
    "drop_gate",
    "header_lines",
    "measure_batched_throughput",
    "measure_end_to_end",
    "measure_latency",
    "measure_openvino_throughput",
    "measure_preprocess",
    "measure_reference",
    "open_row_backend",
    "openvino_capabilities",
    "physical_cores",
    "plan_rows",
    "reference_row",
    "run_bench",
    "source_size",
    "system_header",
    "table_cells",
    "time_calls",
    "to_csv",
    "to_json",
    "to_markdown",
    "write_outputs",
    "publish_results",
    "result_stem",
    "write_result_files",
]
