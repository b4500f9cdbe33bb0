"""edge-sealant bench on a tiny exported run: rows, files, header and the INT8 drop gate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bench_fixtures import benchmark_script, build_tiny_dataset, build_tiny_run
from edge_sealant import bench
from edge_sealant.cli import app
from edge_sealant.errors import EdgeSealantError

runner = CliRunner()
FAST = ["--threads", "1", "--iterations", "5", "--warmup", "1", "--e2e-images", "4"]
ROW_KEYS = {
    "backend", "precision", "label", "auroc", "accuracy", "balanced_accuracy", "recall", "fpr",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "preprocess_ms",
    "throughput_ips", "throughput_mode", "size_mb", "speedup_vs_torch", "e2e_ips", "e2e_p50_ms",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = build_tiny_dataset(root / "data")
    run = build_tiny_run(root / "run", data)
    return run, data


@pytest.fixture(scope="module")
def bench_out(tiny, tmp_path_factory):
    run, data = tiny
    out = tmp_path_factory.mktemp("bench_out")
    result = runner.invoke(
        app,
        ["bench", str(run), str(data), *FAST, "--reference", "full-res",
         "--json", str(out / "b.json"), "--csv", str(out / "b.csv"), "--md", str(out / "b.md")],
    )
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "b.json").read_text()), result.output


def test_every_artifact_gets_a_row_with_the_contract_keys(bench_out):
    _, payload, _ = bench_out
    rows = payload["rows"]
    keys = [(r["backend"], r["precision"]) for r in rows if not r["timing_only"]]
    assert keys[0] == ("torch", "fp32")
    for expected in [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "int8")]:
        assert expected in keys
    for row in rows:
        assert ROW_KEYS <= row.keys()
        assert row["latency_p50_ms"] > 0 and row["latency_p50_ms"] <= row["latency_p99_ms"]
        assert row["throughput_ips"] > 0
    for row in rows:
        if row["timing_only"]:
            continue
        assert 0.0 <= row["auroc"] <= 1.0 and 0.0 <= row["accuracy"] <= 1.0
        assert row["size_mb"] > 0.1
        assert row["preprocess_ms"] > 0
        if row["backend"] == "torch":
            assert row["speedup_vs_torch"] == pytest.approx(1.0)
            assert row["e2e_ips"] is None
        else:
            assert row["e2e_ips"] > 0 and row["e2e_p50_ms"] > 0
    ov = {r["precision"]: r for r in rows if r["backend"] == "openvino"}
    assert ov["fp32"]["inference_precision"] == "f32"
    assert ov["fp16"]["size_mb"] < 0.7 * ov["fp32"]["size_mb"]
    assert "AsyncInferQueue" in ov["fp32"]["throughput_mode"]


def test_reference_row_is_timing_only(bench_out):
    _, payload, _ = bench_out
    (ref,) = [r for r in payload["rows"] if r["timing_only"]]
    assert "EfficientNet-B0" in ref["label"] and "timing only" in ref["label"]
    assert ref["auroc"] is None and ref["accuracy"] is None
    assert ref["latency_p50_ms"] > 0


def test_header_states_cpu_isa_threads_and_versions(bench_out):
    _, payload, output = bench_out
    header = payload["header"]
    assert header["cpu"] and header["threads"] == 1
    assert {"avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"} <= header["isa"].keys()
    assert "FP32" in header["openvino_capabilities"]
    for name in ("torch", "onnxruntime", "openvino"):
        assert header["versions"][name]
    assert header["split"] == "test" and header["images"] > 0
    if not header["bf16"]:
        assert all(r["precision"] != "bf16" for r in payload["rows"])
    assert "AUROC" in output and "threads" in output


def test_csv_markdown_and_plots_are_written(bench_out):
    out, payload, _ = bench_out
    with open(out / "b.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(payload["rows"])
    assert {"backend", "precision", "auroc", "latency_p50_ms", "throughput_ips", "size_mb"} <= rows[0].keys()
    md = (out / "b.md").read_text()
    assert "| row | AUROC [95% CI] |" in md and "ONNX Runtime INT8" in md and "CPU:" in md
    assert {"auroc_ci", "recall_ci", "fpr_ci"} <= rows[0].keys() and len(rows[0]["auroc_ci"].split()) == 2
    for name in ("b_roc.png", "b_latency.png", "b_auroc_vs_latency.png"):
        assert (out / name).stat().st_size > 1000, name


def test_fail_on_drop_gate_exits_1_with_one_line(tiny, monkeypatch):
    from edge_sealant import bench

    run, data = tiny
    args = ["bench", str(run), str(data), *FAST, "--backends", "openvino", "--precisions", "fp32,int8", "--no-e2e"]
    refused = runner.invoke(app, [*args, "--fail-on-drop", "-1"])  # a negative gate is a typo: refused before timing
    assert refused.exit_code == 1 and "--fail-on-drop -1 must be an AUROC drop in [0, 1]" in refused.output
    real_row = bench.bench_row

    def degraded(spec, *rest, **kw):  # an INT8 model that lost 0.2 AUROC
        row, curve = real_row(spec, *rest, **kw)
        if spec.precision == "int8":
            row["auroc"] -= 0.2
        return row, curve

    monkeypatch.setattr(bench.table, "bench_row", degraded)  # where run_bench looks it up
    result = runner.invoke(app, [*args, "--fail-on-drop", "0.01"])
    assert result.exit_code == 1
    assert "INT8 AUROC drop above 0.01" in result.output and "OpenVINO INT8" in result.output
    assert (run / "bench" / "bench.json").is_file()  # results are kept for the post-mortem
    monkeypatch.setattr(bench.table, "bench_row", real_row)
    ok = runner.invoke(app, [*args, "--fail-on-drop", "0.01"])
    assert ok.exit_code == 0, ok.output


def test_the_split_is_grouped_once_and_every_row_resamples_those_parts(tiny, monkeypatch):
    import edge_sealant.evaluate as evaluate

    run, data = tiny
    calls, seen = [], []
    real_groups, real_report = evaluate.part_groups, evaluate.report

    def counting_groups(samples, group_by=None):
        calls.append(len(samples))
        return real_groups(samples, group_by)

    def recording_report(loaded, scores, card, root=None, groups=None):
        seen.append(groups)
        return real_report(loaded, scores, card, root=root, groups=groups)

    monkeypatch.setattr(evaluate, "part_groups", counting_groups)
    monkeypatch.setattr(evaluate, "report", recording_report)
    options = bench.BenchOptions(run=run, data=data, backends=["torch", "openvino"], precisions=["fp32", "int8"],
                                 threads=1, iterations=3, warmup=1, e2e=False)
    result = bench.run_bench(options)
    assert len([r for r in result.rows if not r["timing_only"]]) == 3  # torch, OV FP32, OV INT8
    assert len(calls) == 1  # not once per row
    assert len(seen) == 3 and all(g is not None and len(g) == len(seen[0]) for g in seen)


def test_drop_gate_compares_int8_with_fp32_of_the_same_backend():
    def row(backend, precision, auroc):
        return {"backend": backend, "precision": precision, "auroc": auroc, "label": f"{backend} {precision}", "timing_only": False}

    rows = [row("torch", "fp32", 0.99), row("openvino", "fp32", 0.95), row("openvino", "int8", 0.94), row("onnxruntime", "int8", 0.97)]
    assert bench.drop_gate(rows, 0.02) == []
    failures = bench.drop_gate(rows, 0.005)
    assert len(failures) == 2 and failures[0].startswith("openvino int8")
    assert "torch fp32" in failures[1]  # no ONNX FP32 row: torch FP32 is the reference


def test_plan_rows_order_and_bf16_only_when_capable(tiny):
    run, _ = tiny
    plain = bench.plan_rows(run, bench.BACKENDS, bench.PRECISIONS, bf16=False)
    assert [(s.backend, s.precision) for s in plain][:2] == [("torch", "fp32"), ("onnxruntime", "fp32")]
    assert all(s.precision != "bf16" for s in plain)
    with_bf16 = bench.plan_rows(run, ["openvino"], ["fp32", "bf16"], bf16=True)
    assert [(s.precision, s.ov_inference_precision) for s in with_bf16] == [("fp32", "f32"), ("bf16", "bf16")]
    assert with_bf16[1].path == with_bf16[0].path  # bf16 runs the FP32 IR with the bf16 hint
    with pytest.raises(EdgeSealantError, match="nothing to benchmark"):
        bench.plan_rows(run.parent, bench.BACKENDS, bench.PRECISIONS, bf16=False)


def test_options_are_checked():
    with pytest.raises(EdgeSealantError, match="--backends"):
        bench.BenchOptions(run=".", data=".", backends=["tensorrt"])
    with pytest.raises(EdgeSealantError, match="full-res"):
        bench.BenchOptions(run=".", data=".", reference="half-res")
    assert bench.BenchOptions(run=".", data=".", backends=["ov", "ort"]).backends == ["openvino", "onnxruntime"]


def test_timing_helpers():
    timing = bench.Timing.of([0.001] * 98 + [0.002, 0.010])
    assert timing.p50 == pytest.approx(1.0) and timing.p99 > 1.5 and timing.mean > 1.0
    assert bench.cpu_slug("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.0GHz") == "intel-xeon-platinum-8480"
    assert bench.cpu_label({"cpu": "AMD EPYC", "isa": {"avx2": True, "avx512_vnni": True, "amx_tile": False}}) == "AMD EPYC (avx2, avx512_vnni)"
    assert bench.cpu_label({"cpu": "AMD EPYC"}) == "AMD EPYC"  # a payload from before the ISA was recorded
    assert bench.physical_cores() >= 1
    images = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    assert bench.batch_of(images, 5).shape == (5, 2, 2, 3)


def test_bf16_row_runs_the_fp32_ir_with_the_bf16_hint(tiny, monkeypatch):
    run, data = tiny
    header = bench.system_header
    monkeypatch.setattr(bench.table, "system_header", lambda threads: {**header(threads), "bf16": True})
    options = bench.BenchOptions(run=run, data=data, backends=["openvino"], precisions=["bf16"], threads=1, iterations=3, warmup=1, e2e=False)
    (row,) = bench.run_bench(options).rows
    assert row["precision"] == "bf16" and "bf16 hint" in row["label"]
    assert row["path"].endswith("openvino/fp32/model.xml")
    assert row["inference_precision"] in ("bf16", "f32")  # what OpenVINO really chose on this CPU
    assert row["speedup_vs_torch"] is None  # no torch row in this run


@pytest.mark.slow
def test_magnetic_tile_script_smoke(tmp_path, repo_root):
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_magnetic_tile", repo_root / "benchmarks" / "run_magnetic_tile.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--smoke", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "runs")]) == 0
    (md,) = (tmp_path / "results").glob("*_magnetic-tile_smoke.md")
    payload = json.loads(md.with_suffix(".json").read_text())
    assert payload["smoke"] and payload["header"]["cpu"]
    assert all("error" not in entry for entry in payload["models"] + payload["resolution"])
    assert len(payload["resolution"]) == 3
    assert payload["e2e"]["frame"] == [2532, 824] and payload["e2e"]["e2e_ips"] > 0
    text = md.read_text()
    assert "## Resolution trade-off" in text and "## End to end on customer-size frames" in text


def test_small_defects_paired_gain_re_chooses_both_thresholds(repo_root):
    script = benchmark_script(repo_root, "small_defects")
    rng = np.random.default_rng(0)
    labels = np.array([0] * 200 + [1] * 100)
    normal = rng.uniform(0, 1, 200)
    assert np.mean(normal >= script.budget_threshold(normal)) <= 0.05
    assert np.mean(normal >= script.budget_threshold(normal)) >= 0.04  # the highest such threshold
    base = np.concatenate([normal, rng.uniform(0.5, 1.0, 100)])  # about a tenth of the defects above 5% FPR
    better = np.concatenate([normal, rng.uniform(0.995, 1.0, 100)])  # every defect above it
    every = labels == 1
    out = script.paired_recall_gain(labels, base, better, every, resamples=300)
    assert 0.8 < out["gain"] < 0.95 and out["gain_ci"][0] > 0.7
    same = script.paired_recall_gain(labels, base, base, every, resamples=300)
    assert same["gain"] == 0.0 and same["gain_ci"] == [0.0, 0.0]  # pairing: a run never differs from itself
    assert script.paired_recall_gain(labels, base, better, np.zeros(300, bool))["gain"] is None


def test_small_defects_table_names_the_baseline_it_compares_with(repo_root):
    script = benchmark_script(repo_root, "small_defects")
    rate = {"recall": 0.5, "recall_ci": [0.4, 0.6], "caught": 5, "defects": 10}
    gain = {"gain": 0.1, "gain_ci": [0.0, 0.2]}
    run = {"auroc": 0.9, "auroc_ci": [0.8, 0.95], "all_defects": rate, "small_defects": rate, "heatmap_stride": 16}
    payload = {"date": "2026-11-29", "data": "d.yaml", "split": "all", "cpu": {"cpu": "x", "isa": {"avx2": True}}, "runs": [
        {**run, "run": "runs/small_512_image", "supervision": "image", "input_size": [512, 192]},
        {**run, "run": "runs/small_960_image", "supervision": "image", "input_size": [960, 320],
         "gain_over_image": {"all_defects": gain, "small_defects": gain}},
    ]}
    text = script.markdown(payload)
    assert "Recall gain over small_512_image (image, 512x192)" in text
    assert "| small_960_image | +0.100 [+0.000, +0.200] | +0.100 [+0.000, +0.200] |" in text
    payload["runs"].append({**run, "run": "runs/small_960_boxes", "supervision": "boxes", "input_size": [960, 320],
                            "gain_over_image": {"all_defects": gain, "small_defects": gain},
                            "gain_over_image_same_input": {"image_run": "runs/small_960_image", "all_defects": gain, "small_defects": gain}})
    assert "| small_960_boxes | small_960_image | +0.100 [+0.000, +0.200] | +0.100 [+0.000, +0.200] |" in script.markdown(payload)


def test_small_defects_pairs_each_boxes_run_with_the_image_run_of_its_input_size(repo_root):
    script = benchmark_script(repo_root, "small_defects")
    rng = np.random.default_rng(1)
    labels = np.array([0] * 200 + [1] * 100)
    normal = rng.uniform(0, 1, 200)
    weak, strong = np.concatenate([normal, rng.uniform(0.5, 1.0, 100)]), np.concatenate([normal, rng.uniform(0.995, 1.0, 100)])
    runs = [{"run": "a/img512", "supervision": "image", "input_size": [512, 192]},
            {"run": "a/box512", "supervision": "boxes", "input_size": [512, 192]},
            {"run": "a/img960", "supervision": "image", "input_size": [960, 320]},
            {"run": "a/box960", "supervision": "boxes", "input_size": [960, 320]},
            {"run": "a/box768", "supervision": "boxes", "input_size": [768, 288]}]
    every = labels == 1
    script.add_same_input_gains(runs, labels, [weak, strong, strong, strong, strong], every)
    assert runs[1]["gain_over_image_same_input"]["image_run"] == "a/img512"
    assert runs[1]["gain_over_image_same_input"]["all_defects"]["gain"] > 0.8  # strong over weak
    assert runs[3]["gain_over_image_same_input"]["image_run"] == "a/img960"
    assert runs[3]["gain_over_image_same_input"]["all_defects"]["gain"] == 0.0  # the same scores: no gain
    assert "gain_over_image_same_input" not in runs[0] and "gain_over_image_same_input" not in runs[4]  # no 768 image run


def test_int8_qat_summary_counts_runs_meeting_the_target_on_both_splits(repo_root):
    script = benchmark_script(repo_root, "int8_qat")

    def figures(val_drop, test_drop):
        split = {"fp32_auroc": 0.9, "fp32_auroc_ci": [0.8, 0.95], "int8_auroc": 0.9, "int8_auroc_ci": [0.8, 0.95],
                 "peak_same_cell": None, "peak_in_fp32_region": None}
        return {"seconds": 10.0, "engine": "e", "val": {**split, "auroc_drop": val_drop}, "test": {**split, "auroc_drop": test_drop}}

    runs = [{"run": "a", "ptq": figures(-0.002, 0.008), "qat": figures(0.001, 0.003)},
            {"run": "b", "ptq": figures(0.001, 0.004), "qat": figures(0.006, 0.002)}]
    summary = script.summarise(runs)
    assert summary["ptq"]["runs_meeting_target"] == 1 and summary["qat"]["runs_meeting_target"] == 1
    assert summary["ptq"]["test"][0] == pytest.approx(0.006) and summary["qat"]["val"][1] == pytest.approx(0.0025)
    table = script.markdown({"date": "d", "data": "x", "epochs": 1.0, "cpu": {"cpu": "c", "isa": {"avx2": True}},
                             "runs": runs, "summary": summary})
    assert "| a | ptq | test |" in table and "| qat | +0.0035 +- 0.0025 | +0.0025 +- 0.0005 | 1 of 2 | 10 |" in table


def test_heatmap_cost_table_gives_costs_and_the_rounds_range(repo_root):
    script = benchmark_script(repo_root, "heatmap_cost")

    def row(fp32: float, int8: float, rounds: list[float]) -> dict:
        return {"fp32": {"p50_ms": fp32}, "int8": {"p50_ms": int8, "p90_ms": int8 * 1.1, "size_mb": 4.0},
                "e2e_int8": {"images_per_s": sorted(rounds)[len(rounds) // 2], "images_per_s_rounds": rounds, "p50_ms": 15.0}}

    payload = {"date": "d", "cpu": {"cpu": "c", "isa": {"avx2": True}}, "threads": 2, "iterations": 300, "frames": 120,
               "image-only": row(10.0, 5.0, [120.0, 100.0, 110.0]), "heatmap": row(10.5, 5.5, [90.0, 105.0, 99.0])}
    table = script.markdown(payload)
    assert "| image-only | 10.00 | 5.00 | 5.50 | 4.00 | 110.0 (100-120) | 15.00 |" in table
    assert "| heatmap vs image-only | +5.0% | +10.0% | +10.0% | | -10.0% | |" in table


def test_int8_error_variants_and_table(repo_root):
    script = benchmark_script(repo_root, "int8_error")
    recipe = {"overflow_fix": "enable", "float_head": True}
    convs = ["/net/conv_stem/Conv", "/net/blocks.0/dw_conv/Conv", "/net/blocks.5/project_conv/Conv",
             "/net/blocks.6/expand_conv/Conv", "/net/blocks.15/dw_conv/Conv", "/net/conv_head/Conv"]
    assert script.variant_settings("recipe", recipe, ["head"], convs) == (recipe, ["head"])
    assert script.variant_settings("overflow-disable", recipe, ["head"], convs)[0]["overflow_fix"] == "disable"
    assert recipe["overflow_fix"] == "enable"  # the recipe itself is not changed
    assert script.variant_settings("float-blocks-0-5", recipe, ["head"], convs)[1] == ["head", convs[1], convs[2]]
    assert script.variant_settings("float-conv-head", recipe, [], convs)[1] == [convs[5]]
    with pytest.raises(SystemExit, match="unknown variant"):
        script.variant_settings("float-everything", recipe, [], convs)
    labels = np.array([0, 0, 0, 1, 1])
    fp32 = np.array([-3.0, -2.0, -1.0, 1.0, 2.0])
    row = script.error_row(labels, fp32, fp32 + np.array([0.5, 0.5, 0.5, 0.0, -0.5]), None)
    assert row["logit_mad"] == pytest.approx(0.4) and row["shift_normal"] == pytest.approx(0.5)
    assert row["shift_defect"] == pytest.approx(-0.25) and row["auroc_drop"] == pytest.approx(0.0)
    entry = {"run": "r", "model": "m", "input_size": [8, 8], "variants": [
        {"variant": v, "overflow_fix": f, "float_ops": 2, "seconds": 1.0, "splits": {"val": row, "test": row}}
        for v, f in (("recipe", "enable"), ("overflow-disable", "disable"))]}
    table = script.markdown({"date": "d", "data": "x", "cpu": {"cpu": "c", "isa": {"avx2": True}}, "runs": [entry, entry]})
    assert "| overflow-disable | disable | 2 | 0.400 | +0.50 / -0.25 |" in table
    assert "| recipe | 0.400 / 0.400 | 0.400 / 0.400 | +0.0000 / +0.0000 | +0.0000 / +0.0000 |" in table
