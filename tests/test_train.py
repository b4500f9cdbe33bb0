"""Training and evaluation end to end on tiny generated data (a few seconds each)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edge_sealant.cli import app
from edge_sealant.data.synth import synthesize
from edge_sealant.errors import EdgeSealantError
from edge_sealant.train import TrainOptions, epoch_indices, resume, train

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    synthesize(out, n=60, defect_ratio=0.35, size=(64, 32), seed=3)
    return out / "data.yaml"


def tiny_options(data, out, **extra):
    values = dict(data=str(data), out=str(out), model="mobilenet_v3_small", pretrained="none", imgsz=(64, 32), epochs=2, batch_size=8)
    values.update(extra)
    return TrainOptions(**values)


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    train(tiny_options(tiny_data, run))
    return run


def test_run_folder_contents(tiny_run):
    for name in ("best.pt", "last.pt", "run.json", "training_curves.png"):
        assert (tiny_run / name).is_file(), name
    card = json.loads((tiny_run / "run.json").read_text())
    assert card["model"] == "mobilenet_v3_small"
    assert card["input_size"] == [64, 32]
    assert 0.0 <= card["threshold"] <= 1.0
    assert card["threshold_policy"] == "recall@0.99"
    assert card["metrics"]["val"]["recall"] >= 0.99  # the policy's promise on val
    assert card["data_summary"]["counts"]["train"]["defect"] > 0
    assert card["library_versions"]["torch"]
    assert len(card["train"]["history"]) == 2
    assert card["train"]["history"][0]["phase"] == "probe"
    assert card["defect_classes"] == ["gap", "thinning", "bubble", "smear", "offset"]
    scale = card["train"]["defect_scale"]  # the train split's boxes, measured at the 64x32 input
    assert scale["input_size"] == [64, 32] and scale["stride"] == 16
    assert scale["regions"] >= card["data_summary"]["counts"]["train"]["defect"]


def test_checkpoint_loads_with_weights_only(tiny_run):
    state = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=True)
    assert "state_dict" in state and state["card"]["model"] == "mobilenet_v3_small"


def test_refuses_to_overwrite_a_finished_run(tiny_data, tiny_run):
    with pytest.raises(EdgeSealantError, match="already holds a finished run"):
        train(tiny_options(tiny_data, tiny_run))


def test_resume_continues_from_last_epoch(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_options(tiny_data, run, epochs=1))
    (run / "run.json").unlink()  # as if the Colab session dropped before the end
    with pytest.raises(EdgeSealantError, match="--resume"):
        train(tiny_options(tiny_data, run, epochs=2))
    result = resume(run, epochs=2)
    history = result.card.train["history"]
    assert [h["epoch"] for h in history] == [0, 1]
    assert (run / "run.json").is_file()


def test_resume_of_a_run_from_before_box_supervision_stays_image_only(tiny_data, tmp_path):
    """Its checkpoint has no ``supervision`` option; today's default (auto) would pick boxes
    on this data and build a net its weights do not fit."""
    import torch

    run = tmp_path / "old"
    train(tiny_options(tiny_data, run, epochs=1, supervision="image"))
    (run / "run.json").unlink()
    state = torch.load(run / "last.pt", weights_only=True)
    for key in ("supervision", "seg_weight", "image_level_classes", "select"):
        state["options"].pop(key)
    state["card"].pop("supervision")
    state["card"].pop("heatmap_stride")
    torch.save(state, run / "last.pt")
    result = resume(run, epochs=2)
    assert result.card.heatmap_stride == 0 and [h["epoch"] for h in result.card.train["history"]] == [0, 1]
    assert result.card.train["options"]["select"] == "best-val"  # what such runs did, not today's default


def _scripted_val(monkeypatch, aurocs):
    """Make ``Trainer.validate`` report ``aurocs`` epoch by epoch (the training itself is real)."""
    from edge_sealant.train.trainer import Trainer

    real = Trainer.validate
    seen = iter(aurocs)

    def validate(self):
        auroc, loss = real(self)
        return (next(seen), loss) if self.options.folds is None and auroc is not None else (auroc, loss)

    monkeypatch.setattr(Trainer, "validate", validate)


def test_the_last_epoch_is_the_model_by_default(tiny_data, tmp_path, monkeypatch):
    """A val AUROC that peaks early (as noise does with tens of val defects) neither stops the run nor picks its epoch."""
    _scripted_val(monkeypatch, [0.7, 0.9, 0.6, 0.5])
    run = tmp_path / "run"
    result = train(tiny_options(tiny_data, run, epochs=4, patience=1))
    train_record = result.card.train
    assert train_record["epochs_run"] == 4 and train_record["stopped_by"] is None
    assert result.best_epoch == 3 and train_record["best_epoch"] == 3
    kept = torch.load(run / "best.pt", weights_only=True)["state_dict"]
    last = torch.load(run / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(kept[name], last[name]) for name in last)
    from edge_sealant.train.progress import selected_epoch_text, val_role_text

    assert selected_epoch_text(train_record) == "last epoch 4 of 4" and val_role_text(train_record) == "val chose the threshold"


def test_select_best_val_keeps_the_best_val_epoch_and_stops_early(tiny_data, tmp_path, monkeypatch):
    _scripted_val(monkeypatch, [0.7, 0.9, 0.6, 0.5])
    run = tmp_path / "run"
    result = train(tiny_options(tiny_data, run, epochs=4, patience=1, select="best-val"))
    train_record = result.card.train
    assert result.best_epoch == 1 and train_record["epochs_run"] == 3 and "early stop" in train_record["stopped_by"]
    kept = torch.load(run / "best.pt", weights_only=True)["state_dict"]
    last = torch.load(run / "last.pt", weights_only=True)["state_dict"]
    assert not all(torch.equal(kept[name], last[name]) for name in last)  # epoch 2's weights, not epoch 3's
    from edge_sealant.train.progress import selected_epoch_text

    assert selected_epoch_text(train_record) == "best val epoch 2 of 4; early stop after epoch 3 (patience 1)"


def test_epoch_selection_benchmark_scores_both_checkpoints(tiny_data, tmp_path, monkeypatch, repo_root):
    from bench_fixtures import benchmark_script

    _scripted_val(monkeypatch, [0.7, 0.9, 0.6])
    run = tmp_path / "run"
    train(tiny_options(tiny_data, run, epochs=3, select="best-val"))
    script = benchmark_script(repo_root, "epoch_selection")
    entry = script.measure(run, tiny_data, "recall@0.95")
    assert entry["best-val"]["epoch"] == 2 and entry["last"]["epoch"] == 3 and entry["select"] == "best-val"
    for rule in ("best-val", "last"):
        assert entry[rule]["val"]["recall"] >= 0.95  # the policy holds on the val it was chosen on
    other = {**entry, "seed": 1, "last": {**entry["last"], "test": {**entry["last"]["test"], "auroc": entry["last"]["test"]["auroc"] - 0.1}}}
    (row,) = script.summarise([entry, other])
    gap = entry["last"]["test"]["auroc"] - entry["best-val"]["test"]["auroc"]
    assert row["runs"] == 2 and row["last_minus_best_test_auroc"] == pytest.approx(gap - 0.05)
    assert row["last_test_auroc"][1] == pytest.approx(0.05)  # the seeds' sd
    table = script.markdown({"date": "d", "data": "x", "policy": "recall@0.95", "cpu": {"cpu": "c"}, "runs": [entry], "summary": [row]})
    assert "| last - best-val (mean of pairs) |" in table and "| best-val | 2 of 3 |" in table and "| last | 3 of 3 |" in table


def test_recorded_options_read_an_older_or_newer_runs_recipe():
    from edge_sealant.train.options import recorded_options

    options = recorded_options({"imgsz": [64, 32], "seg_weight": 0.5, "balance": "weighted-loss", "gone_option": 1})
    assert options.imgsz == (64, 32) and options.seg_weight == 0.5 and options.balance == "weighted-loss"
    assert options.batch_size == TrainOptions(data="d", out="o").batch_size  # missing: today's default
    assert recorded_options(None).lr == TrainOptions(data="d", out="o").lr
    # options a run recorded before they existed read as what it did, not as today's default
    assert recorded_options({"imgsz": [64, 32]}).heatmap_target == "any"
    assert recorded_options({"heatmap_target": "coverage"}).heatmap_target == "coverage"


def test_heatmap_target_must_be_known(tiny_data, tmp_path):
    with pytest.raises(EdgeSealantError, match="--heatmap-target 'centre' is not one of any, coverage"):
        tiny_options(tiny_data, tmp_path / "run", heatmap_target="centre")


def test_select_must_be_a_known_rule_and_leaves_folds_alone(tiny_data, tmp_path):
    with pytest.raises(EdgeSealantError, match="--select 'best' is not one of last, best-val"):
        tiny_options(tiny_data, tmp_path / "run", select="best")
    with pytest.raises(EdgeSealantError, match="--select best-val cannot be combined with --folds"):
        tiny_options(tiny_data, tmp_path / "run", select="best-val", folds=3)


@pytest.mark.parametrize("balance", ["none", "undersample", "oversample", "weighted-sampler"])
def test_epoch_indices_balance_the_class_mix(balance):
    labels = np.array([0] * 30 + [1] * 10)
    chosen = epoch_indices(labels, balance, np.random.default_rng(0))
    defect = labels[chosen].sum()
    expected = {"none": (40, 10, 10), "undersample": (20, 10, 10), "oversample": (60, 30, 30), "weighted-sampler": (40, 12, 28)}
    size, low, high = expected[balance]
    assert len(chosen) == size
    assert low <= defect <= high


def test_bad_options_fail_before_training(tiny_data, tmp_path):
    with pytest.raises(EdgeSealantError, match="balance"):
        tiny_options(tiny_data, tmp_path / "r", balance="magic")
    with pytest.raises(EdgeSealantError, match="threshold policy"):
        tiny_options(tiny_data, tmp_path / "r", threshold_policy="recall")
    with pytest.raises(EdgeSealantError, match="unknown training option"):
        TrainOptions.from_mapping({"data": "x", "out": "y", "colour": "red"})


def test_train_cli_with_config(tiny_data, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: {tiny_data}\nmodel: mobilenet_v3_small\npretrained: none\nimgsz: 64x32\nepochs: 1\n"
        "batch-size: 8\nbalance: weighted-loss\nthreshold_policy: youden\n"
    )
    out = tmp_path / "cfg_run"
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "run.json").read_text())
    assert card["threshold_policy"] == "youden"
    assert card["train"]["options"]["balance"] == "weighted-loss"


def test_train_cli_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_evaluate_json_and_plots(tiny_run, tiny_data):
    result = runner.invoke(app, ["evaluate", str(tiny_run), str(tiny_data), "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    for key in ("auroc", "accuracy", "balanced_accuracy", "recall", "fpr", "threshold", "average_precision"):
        assert key in metrics
    assert metrics["n"] == metrics["confusion_matrix"]["tn"] + metrics["confusion_matrix"]["fp"] + metrics["confusion_matrix"]["fn"] + metrics["confusion_matrix"]["tp"]
    assert set(metrics["recall_per_class"]) <= {"gap", "thinning", "bubble", "smear", "offset"}
    assert set(metrics["plots"]) == {"roc", "pr", "confusion", "histogram"}
    for path in metrics["plots"].values():
        assert path.endswith(".png") and Path(path).is_file() and Path(path).parent == tiny_run / "eval" / "test"
    card = json.loads((tiny_run / "run.json").read_text())
    assert card["metrics"]["test"]["auroc"] == metrics["auroc"]
    leak = metrics["leak_free"]  # generated scenes are distinct: nothing to exclude
    assert leak["excluded"] == 0 and leak["kept"] == metrics["n"]
    missed = metrics["errors_by_part"]["missed_defects"]
    assert missed["images"] == len(metrics["missed_defects"]) == metrics["confusion_matrix"]["fn"]
    assert missed["parts"] == len({m["part"] for m in metrics["missed_defects"]}) <= missed["of_parts"]


def test_errors_are_counted_by_part():
    from edge_sealant.evaluate import errors_by_part

    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0])
    predicted = np.array([0, 0, 0, 1, 0, 1, 1, 0, 0])
    parts = [7, 7, 7, 7, 8, 9, 9, 10, 11]  # three exposures of part 7 missed, one caught
    result = errors_by_part(labels, predicted, parts)
    assert result["missed_defects"] == {"images": 4, "parts": 2, "of_images": 5, "of_parts": 2}
    assert result["false_alarms"] == {"images": 2, "parts": 1, "of_images": 4, "of_parts": 3}
    assert errors_by_part(labels, labels.astype(bool), parts)["missed_defects"]["parts"] == 0


def test_evaluate_threshold_policy_is_stored(tiny_run, tiny_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    result = runner.invoke(app, ["evaluate", str(run), str(tiny_data), "--threshold-policy", "fpr@0.1", "--json"])
    assert result.exit_code == 0, result.output
    card = json.loads((run / "run.json").read_text())
    assert card["threshold_policy"] == "fpr@0.1"
    assert json.loads(result.stdout)["threshold"] == pytest.approx(card["threshold"])


def test_evaluate_missing_split_is_one_line(tiny_run, tiny_data):
    result = runner.invoke(app, ["evaluate", str(tiny_run), str(tiny_data), "--split", "holdout"])
    assert result.exit_code == 1
    assert "no 'holdout' split" in result.output


# ------------------------------------------------------------------------------ honest evaluation
def test_evaluate_reports_intervals_and_the_role_of_the_split(tiny_run, tiny_data):
    result = runner.invoke(app, ["evaluate", str(tiny_run), str(tiny_data), "--split", "test", "--json"])
    metrics = json.loads(result.stdout)
    for key in ("auroc_ci", "recall_ci", "fpr_ci", "average_precision_ci"):
        lo, hi = metrics[key]
        assert 0.0 <= lo <= hi <= 1.0
    assert metrics["role"] == "held-out"
    assert "groups" in metrics["ci"]["auroc"] and metrics["ci"]["groups"] <= metrics["n"]  # parts, not photographs
    roc = metrics["roc_at_recall"]
    assert roc["recall"] >= 0.95 and 0.0 <= roc["fpr"] <= 1.0
    val = runner.invoke(app, ["evaluate", str(tiny_run), str(tiny_data), "--split", "val"])
    assert val.exit_code == 0, val.output
    flat = " ".join(val.output.split())
    assert "selection split" in flat  # val chose the epoch and threshold
    assert "own ROC" in flat and "not deployable" in flat


def test_run_json_records_the_operating_point_and_split_settings(tiny_run):
    card = json.loads((tiny_run / "run.json").read_text())
    point = card["metrics"]["operating_point"]
    assert point["chosen_on"] == "val" and point["policy"] == "recall@0.99"
    assert point["fpr_ci"][0] <= point["fpr"] <= point["fpr_ci"][1]
    assert card["metrics"]["val"]["role"] == "selection" and "auroc_ci" in card["metrics"]["val"]
    assert card["metrics"]["val"]["leak_free"]["excluded"] == 0
    assert card["train"]["selection_splits"] == ["val"]
    assert card["data_summary"]["split_settings"]["seed"] == 0


def test_time_limit_as_a_safety_net_fails_loudly(tiny_data, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(EdgeSealantError, match="safety time limit"):
        train(tiny_options(tiny_data, run, epochs=3, time_limit_min=1e-6, time_limit_action="fail"))


def test_time_limit_stop_is_recorded(tiny_data, tmp_path):
    result = train(tiny_options(tiny_data, tmp_path / "run", epochs=3, time_limit_min=1e-6))
    assert result.card.train["epochs_run"] == 1
    assert result.card.train["stopped_by"].startswith("time limit after epoch 1 of 3")


def test_folds_keep_the_whole_schedule_unless_an_earlier_epoch_wins_beyond_the_noise():
    from edge_sealant.train.crossval import choose_epochs

    flat = np.array([  # magnetic-tile 320, 5 folds: epoch 5's mean is 0.001 above epoch 8's
        [0.8422, 0.8776, 0.9233, 0.9557, 0.9565, 0.9639, 0.9548, 0.9553],
        [0.9116, 0.8909, 0.9494, 0.9822, 0.9836, 0.9846, 0.9902, 0.9906],
        [0.8682, 0.8504, 0.9671, 0.9880, 0.9955, 0.9994, 0.9997, 0.9998],
        [0.8271, 0.7543, 0.9017, 0.9776, 0.9657, 0.9333, 0.9273, 0.9455],
        [0.8224, 0.8491, 0.9597, 0.9396, 0.9465, 0.9517, 0.9466, 0.9517],
    ])
    assert int(np.argmax(flat.mean(axis=0))) == 4 and choose_epochs(flat, probe_epochs=1) == 7
    overfits = flat.copy()
    overfits[:, 5:] -= np.array([0.02, 0.03, 0.04])  # every fold loses after epoch 5
    assert choose_epochs(overfits, probe_epochs=1) == 4
    assert choose_epochs(flat[:1], probe_epochs=1) == 5  # one fold: no noise estimate, its own best
    assert choose_epochs(np.array([[0.9, 0.8], [0.9, 0.7]]), probe_epochs=1) == 1  # the probe epoch is never chosen


def test_folds_choose_epochs_and_threshold_out_of_fold(tiny_data, tiny_run, tmp_path):
    run = tmp_path / "cv"
    result = runner.invoke(
        app, ["train", str(tiny_data), "--model", "mobilenet_v3_small", "--pretrained", "none", "--imgsz", "64x32",
              "--epochs", "2", "--batch-size", "8", "--folds", "3", "--out", str(run)],
    )
    assert result.exit_code == 0, result.output
    card = json.loads((run / "run.json").read_text())
    folds = card["train"]["folds"]
    assert folds["k"] == 3 and len(folds["fold_auroc"]) == 3 and len(folds["epoch_curves"]) == 3
    assert card["train"]["options"]["folds"] == 3  # the options the user gave, not the final model's internals
    assert 1 <= folds["chosen_epochs"] <= 2
    assert card["train"]["epochs_run"] == folds["chosen_epochs"]  # the final model stops at the chosen epoch
    from edge_sealant.train.progress import selected_epoch_text

    assert selected_epoch_text(card["train"]) == f"epoch {folds['chosen_epochs']} of 2, chosen on out-of-fold scores"
    assert card["train"]["selection_splits"] == [] and card["train"]["training_splits"] == ["train", "val"]
    oof = card["metrics"]["oof"]
    train_val = sum(card["data_summary"]["counts"][s]["normal"] + card["data_summary"]["counts"][s]["defect"] for s in ("train", "val"))
    assert oof["n"] == train_val and oof["auroc_ci"][0] <= oof["auroc"] <= oof["auroc_ci"][1]
    assert card["metrics"]["operating_point"]["chosen_on"] == "out-of-fold scores"
    assert card["threshold"] == pytest.approx(card["metrics"]["operating_point"]["threshold"])
    rows = (run / "folds" / "oof.csv").read_text().splitlines()
    assert len(rows) == train_val + 1 and {r.split(",")[2] for r in rows[1:]} == {"0", "1", "2"}
    assert (run / "best.pt").is_file() and not (run / "folds" / "fold0" / "best.pt").exists()
    # the final model again for another number of epochs: same pool and threshold, new epoch count
    from edge_sealant.train.crossval import retrain_final_model

    other = 3 - folds["chosen_epochs"]
    retrained = json.loads((retrain_final_model(run, other, tmp_path / "cv_other", seed=7).run / "run.json").read_text())
    assert retrained["train"]["epochs_run"] == other and retrained["train"]["folds"]["source_run"] == str(run)
    assert retrained["train"]["options"]["seed"] == 7 == retrained["train"]["folds"]["final_seed"]
    assert retrained["threshold"] == pytest.approx(card["threshold"])
    assert retrained["train"]["training_splits"] == ["train", "val"] and retrained["metrics"]["oof"]["n"] == train_val
    with pytest.raises(EdgeSealantError, match=r"epochs must be in \[1, 2\]"):
        retrain_final_model(run, 3, tmp_path / "cv_3")
    test = runner.invoke(app, ["evaluate", str(run), str(tiny_data), "--split", "val", "--json"])
    assert json.loads(test.stdout)["role"] == "training"  # the final model learnt from val
    # a new policy is chosen on the stored out-of-fold scores, as training did, never on val
    from edge_sealant.metrics import threshold_choice

    oof_rows = [r.split(",") for r in rows[1:]]
    expected = threshold_choice([int(r[1]) for r in oof_rows], [float(r[3]) for r in oof_rows], "youden").threshold
    retune = runner.invoke(app, ["evaluate", str(run), str(tiny_data), "--threshold-policy", "youden", "--json"])
    assert retune.exit_code == 0, retune.output
    assert json.loads(retune.stdout)["threshold"] == pytest.approx(expected)
    # the retrained final model carries the same out-of-fold scores, so it re-chooses alike
    assert (tmp_path / "cv_other" / "folds" / "oof.csv").read_text() == (run / "folds" / "oof.csv").read_text()
    again = runner.invoke(app, ["evaluate", str(tmp_path / "cv_other"), str(tiny_data), "--threshold-policy", "youden", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["operating_point"]["threshold"] == pytest.approx(expected)
    _threshold_policies_benchmark(run, tiny_run, tiny_data, expected)
    card = json.loads((run / "run.json").read_text())
    assert card["threshold"] == pytest.approx(expected) and card["threshold_policy"] == "youden"
    assert card["metrics"]["operating_point"]["chosen_on"] == "out-of-fold scores"
    assert card["train"]["selection_splits"] == []  # val did not become a selection split
    (run / "folds" / "oof.csv").unlink()
    refused = runner.invoke(app, ["evaluate", str(run), str(tiny_data), "--threshold-policy", "youden"])
    assert refused.exit_code == 1 and "trained on val" in refused.output


def _threshold_policies_benchmark(run, plain_run, data, oof_youden):
    """benchmarks/threshold_policies.py chooses as evaluate does (out-of-fold here, val for a
    plain run), scores test, and leaves the run's card alone."""
    from bench_fixtures import benchmark_script

    script = benchmark_script(Path(__file__).resolve().parents[1], "threshold_policies")
    before = (run / "run.json").read_text()
    entry = script.measure(run, data, ["youden", "recall@0.9,fpr<=0.5"])
    assert (run / "run.json").read_text() == before
    youden, budget = entry["rows"]
    assert youden["chosen_on"] == "out-of-fold" and youden["selection"]["threshold"] == pytest.approx(oof_youden)
    assert budget["selection"]["fpr"] <= 0.5
    for row in entry["rows"]:
        test = row["test"]
        missed = test["errors_by_part"]["missed_defects"]
        assert missed["images"] == round((1 - test["recall"]) * missed["of_images"]) and missed["parts"] <= missed["images"]
        assert len(test["missed_files"]) == missed["images"] and all(name.startswith("images/test/") for name in test["missed_files"])
        assert test["fpr_ci"][0] <= test["fpr"] <= test["fpr_ci"][1]
    assert script.measure(plain_run, data, ["youden"])["rows"][0]["chosen_on"] == "val"
    lost = run.parent / "lost"
    shutil.copytree(run, lost)
    (lost / "folds" / "oof.csv").unlink()
    with pytest.raises(EdgeSealantError, match="trained on val"):
        script.measure(lost, data, ["youden"])  # never val: the final model trained on it
    table = script.markdown({"date": "d", "data": "x", "cpu": {"cpu": "c"}, "runs": [entry]})
    assert table.count("| cv | ") == 2 and "`recall@0.9,fpr<=0.5` | out-of-fold |" in table
    for row in entry["rows"]:
        listed = ", ".join(Path(name).stem for name in row["test"]["missed_files"]) or "none"
        assert f"- cv, `{row['policy']}`: {listed}" in table


def test_folds_refuse_a_time_limit(tiny_data, tmp_path):
    with pytest.raises(EdgeSealantError, match="cannot be combined with --folds"):
        tiny_options(tiny_data, tmp_path / "r", folds=3, time_limit_min=5)
    with pytest.raises(EdgeSealantError, match="--folds 1 must be >= 2"):
        tiny_options(tiny_data, tmp_path / "r", folds=1)


def test_weight_average_is_validated_and_saved(tiny_data, tmp_path):
    from edge_sealant.checkpoint import read_checkpoint

    result = train(tiny_options(tiny_data, tmp_path / "run", ema_epochs=0.5, epochs=1, probe_epochs=0))  # best = last epoch
    assert result.card.train["options"]["ema_epochs"] == 0.5
    saved = read_checkpoint(tmp_path / "run" / "best.pt")["state_dict"]
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert "ema_state" in last and last["ema_updates"] > 0
    # the deployed weights are the average, not the last optimizer step
    weights = [k for k, v in saved.items() if v.dtype.is_floating_point and "running" not in k]
    assert any(not torch.equal(saved[k], last["state_dict"][k]) for k in weights)
    assert all(torch.equal(saved[k], last["ema_state"][k]) for k in saved)
    with pytest.raises(EdgeSealantError, match="ema-epochs"):
        tiny_options(tiny_data, tmp_path / "r", ema_epochs=-1)


def test_zero_byte_image_is_skipped_not_a_traceback(tiny_run, tiny_data, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(tiny_data.parent, data)
    (data / "images" / "test" / "zero.jpg").write_bytes(b"")  # a camera that wrote nothing
    result = runner.invoke(app, ["evaluate", str(tiny_run), str(data / "data.yaml"), "--split", "test", "--json", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert any("zero.jpg: empty file" in s for s in json.loads(result.stdout)["skipped"])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("input_size", ["192", "x"], "input_size must be"),
        ("input_size", [100000, 192], "input_size must be"),
        ("mean", [0.5, 0.5], "mean must be three"),
        ("std", [0.2, 0.0, 0.2], "std must be three positive"),
        ("threshold", "high", "threshold 'high' is not a number"),
        ("threshold", 1.5, "outside"),
        ("resize_mode", "crop", "resize_mode 'crop'"),
        ("labels", "normal,defect", "labels must be two names"),
        ("train", [], "train must be a mapping"),
        ("model", "mobilenet_v3_large", "weights do not fit model 'mobilenet_v3_large'"),
        ("model", 7, "model must be a model name"),
    ],
)
def test_edited_run_json_fails_in_one_line(tiny_run, tiny_data, tmp_path, field, value, message):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    card = json.loads((run / "run.json").read_text())
    card[field] = value
    (run / "run.json").write_text(json.dumps(card))
    result = runner.invoke(app, ["evaluate", str(run), str(tiny_data), "--split", "test"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and message in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "config, message",
    [
        ("lr: abc\n", "--lr 'abc' is not a number"),
        ("lr: .nan\n", "--lr nan must be a number in (0, 1]"),
        ("lr: -0.01\n", "--lr -0.01 must be a number in (0, 1]"),
        ("epochs: ten\n", "--epochs 'ten' is not a whole number"),
        ("epochs: 2.5\n", "--epochs 2.5 is not a whole number"),
        ("time_limit_min: -3\n", "--time-limit -3.0 must be a positive number"),
        ("imgsz: 99999x192\n", "both sides in [8, 8192]"),
        ("threshold_policy: [recall]\n", "is not a policy"),
        ("colour: red\n", "unknown training option(s): colour"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_bad_config_values_fail_before_any_work(tiny_data, tmp_path, config, message):
    path = tmp_path / "run.yaml"
    path.write_text(f"data: {tiny_data}\nmodel: mobilenet_v3_small\npretrained: none\n" + config if not config.startswith("-") else config)
    out = tmp_path / "never"
    result = runner.invoke(app, ["train", "--config", str(path), "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output
    assert not out.exists()


def test_text_numbers_from_yaml_are_accepted(tiny_data, tmp_path):
    options = TrainOptions.from_mapping({"data": str(tiny_data), "out": str(tmp_path / "r"), "lr": "1e-3", "epochs": "2"})
    assert options.lr == 0.001 and options.epochs == 2


def test_failed_training_leaves_no_empty_run_folder(tmp_path):
    data = tmp_path / "ds"
    synthesize(data, n=20, defect_ratio=0.0, size=(64, 32), seed=1)  # no defects: training must refuse
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(data / "data.yaml"), "--model", "mobilenet_v3_small", "--pretrained", "none",
                                 "--imgsz", "64x32", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not out.exists()
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(app, ["train", str(data / "data.yaml"), "--out", str(tmp_path / "afile")])
    assert result.exit_code == 1 and "exists and is not a folder" in result.output


def test_a_leaky_val_split_is_kept_but_reported_leak_free(tiny_data, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(tiny_data.parent, data)
    source = sorted((data / "images" / "train").iterdir())[0]
    shutil.copy2(source, data / "images" / "val" / f"again_{source.name}")  # the user's split leaks one image
    label = data / "labels" / "train" / f"{source.stem}.txt"
    if label.exists():
        shutil.copy2(label, data / "labels" / "val" / f"again_{source.stem}.txt")
    result = train(tiny_options(data / "data.yaml", tmp_path / "run", epochs=1))
    leak = result.card.metrics["val"]["leak_free"]
    assert leak["excluded"] == 1 and leak["kept"] == result.card.metrics["val"]["n"] - 1
