"""Learning from boxes: the heatmap head, its loss, masks moving with augmentation, mixed
batches, two-output export and INT8, regions in source pixels, overlays, predict --regions."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edge_sealant.card import ModelCard
from edge_sealant.cli import app
from edge_sealant.data.synth import synthesize
from edge_sealant.errors import EdgeSealantError
from edge_sealant.models.net import DeployNet
from edge_sealant.models.registry import MODEL_SPECS, build_inspection_net, split_parameters
from edge_sealant.runtime.regions import find_regions, grid_extent
from edge_sealant.train import train
from edge_sealant.train.parts import ArrayDataset, augmentation, cell_targets, heatmap_loss

runner = CliRunner()
SIZE = (64, 32)


@pytest.mark.parametrize("name", list(MODEL_SPECS))
def test_every_model_gets_a_heatmap_and_keeps_its_classifier(name):
    plain = build_inspection_net(name, pretrained="none").eval()
    net = build_inspection_net(name, pretrained="none", heatmap=True).eval()
    net.backbone.load_state_dict(plain.backbone.state_dict())
    with torch.no_grad():
        net.fusion.weights.copy_(torch.tensor([1.0, 0.0]))  # fused = the classifier alone
        pixels = torch.rand(2, 3, 96, 64) * 255
        logits, heatmap = net.forward_with_heatmap(pixels)
        assert torch.allclose(logits, plain(pixels), atol=1e-5)  # the cut-open forward is the model's own
    assert heatmap.shape == (2, 1, 6, 4)
    head, body = split_parameters(net)
    head_ids = {id(p) for p in head}
    assert all(id(p) in head_ids for p in net.heatmap_head.parameters())  # trained in the linear probe too
    assert all(id(p) in head_ids for p in net.fusion.parameters())


@pytest.mark.parametrize("name", list(MODEL_SPECS))
def test_every_model_gets_a_stride_8_heatmap_on_the_same_classifier(name):
    plain = build_inspection_net(name, pretrained="none").eval()
    net = build_inspection_net(name, pretrained="none", heatmap=8).eval()
    net.backbone.load_state_dict(plain.backbone.state_dict())
    assert net.taps.stride == 8 and net.taps.index8 < net.taps.index
    with torch.no_grad():
        net.fusion.weights.copy_(torch.tensor([1.0, 0.0]))
        pixels = torch.rand(2, 3, 96, 64) * 255
        logits, heatmap = net.forward_with_heatmap(pixels)
        assert torch.allclose(logits, plain(pixels), atol=1e-5)  # cutting at stride 8 too changes nothing
        assert heatmap.shape == (2, 1, 12, 8)
        assert net.forward_with_heatmap(torch.rand(1, 3, 72, 40) * 255)[1].shape == (1, 1, 9, 5)  # odd sides
    head, _ = split_parameters(net)
    assert {id(p) for p in net.heatmap_head.lateral8.parameters()} <= {id(p) for p in head}


def test_stride_8_run_exports_its_finer_heatmap(box_data, tmp_path):
    from edge_sealant.data.loading import load_dataset
    from edge_sealant.imageset import load_images
    from edge_sealant.runtime import Inspector, open_backend
    from edge_sealant.torch_backend import TorchBackend

    run = tmp_path / "fine"
    train(_options(box_data, run, epochs=1, heatmap_stride=8))
    card = ModelCard.load(run)
    assert (card.heatmap_stride, card.heatmap_size) == (8, (8, 4)) and "H/8" in card.output
    result = runner.invoke(app, ["export", str(run), "--format", "openvino", "--parity-images", "4"])
    assert result.exit_code == 0, result.output
    torch_backend = TorchBackend.from_run(run)
    images = load_images(load_dataset(box_data).split("val")[:4], card).images
    expected = torch_backend.infer(images)
    outputs = open_backend(run / "openvino/fp32/model.xml").infer(images)
    assert outputs.heatmap.shape == (4, 8, 4) and np.abs(outputs.heatmap - expected.heatmap).max() < 1e-4
    frame = np.zeros((128, 64, 3), np.uint8)  # source pixels 2x the input: a cell is 16 source pixels
    inspected = Inspector.load(run / "openvino/fp32/model.xml").inspect(frame)
    assert inspected.heatmap.shape == (8, 4)
    with pytest.raises(EdgeSealantError, match="heatmap-stride"):
        _options(box_data, run, heatmap_stride=4)


def test_deploy_net_has_two_outputs_in_zero_one():
    net = build_inspection_net("mobilenet_v3_small", pretrained="none", heatmap=True).eval()
    with torch.no_grad():
        probability, heatmap = DeployNet(net)(torch.zeros(3, *SIZE, 3, dtype=torch.uint8))
    assert probability.shape == (3, 1) and heatmap.shape == (3, 1, 4, 2)
    assert float(heatmap.min()) >= 0.0 and float(heatmap.max()) <= 1.0


def test_heatmap_loss_uses_known_masks_and_weights_rare_defect_cells():
    logits = torch.full((3, 1, 4, 2), -3.0, requires_grad=True)
    masks = torch.zeros(3, 64, 32, dtype=torch.uint8)
    masks[0, 0:16, 0:16] = 2  # one defect cell on image 0 (a box)
    known = torch.tensor([True, True, False])
    loss = heatmap_loss(logits, masks, known)
    loss.backward()
    grad = logits.grad
    assert float(grad[0, 0, 0, 0]) < 0  # push the defect cell up
    assert float(grad[1].max()) > 0  # and clear cells down
    assert float(grad[2].abs().max()) == 0.0  # an image without geometry does not count
    # the one defect cell outweighs a clear cell: its weight is the clear/defect ratio
    assert abs(float(grad[0, 0, 0, 0])) > 5 * float(grad[1, 0, 0, 0])
    nothing = heatmap_loss(logits, masks, torch.tensor([False, False, False]))
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad


def test_coverage_targets_put_the_peak_on_the_cell_that_holds_the_defect():
    box = torch.zeros(1, 1, 64, 64)
    box[0, 0, 12:30, 12:30] = 1  # 18 px: fills most of cell (1, 1), grazes its three neighbours
    touched = cell_targets(box, (4, 4), "any")[0, 0]
    assert touched[:2, :2].eq(1).all() and float(touched.sum()) == 4.0  # every grazed cell reads 1
    shares = cell_targets(box, (4, 4), "coverage")[0, 0]
    assert float(shares[1, 1]) == 1.0 and float(shares[0, 0]) < float(shares[0, 1]) < 0.5
    assert float(shares[2:].sum() + shares[:, 2:].sum()) == 0.0
    crack = torch.zeros(1, 1, 64, 64)
    crack[0, 0, 30:32, :] = 1  # a thin line fills a small share of each cell it crosses
    assert cell_targets(crack, (4, 4), "coverage")[0, 0, 1].eq(1).all()  # still 1 all along it


def test_heatmap_loss_with_coverage_targets_pushes_the_holding_cell_hardest():
    logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 12:30, 12:30] = 1
    heatmap_loss(logits, masks, torch.tensor([True, True]), target="coverage").backward()
    grad = logits.grad[0, 0]
    assert float(grad[1, 1]) == float(grad.min()) < float(grad[0, 1])  # the grazed cell is pushed up less


def test_augmentation_moves_the_mask_with_the_image():
    from edge_sealant.imageset import LoadedImages
    from edge_sealant.data.types import Region, Sample

    image = np.zeros((1, 64, 32, 3), np.uint8)
    image[0, 5:20, 2:12] = 255
    mask = np.zeros((1, 64, 32), np.uint8)
    mask[0, 5:20, 2:12] = 2
    sample = Sample(path=__file__, label=1, regions=(Region("x", "box", (0.2, 0.2, 0.3, 0.2)),))
    data = ArrayDataset(LoadedImages(image, [sample], [], mask), augmentation())
    torch.manual_seed(0)
    for _ in range(20):  # flips and affine at random; the square and its mask stay together
        pixels, label, moved, known = data[0]
        bright = pixels.float().mean(0) > 128
        marked = moved > 0
        assert bool(known) and float(label) == 1.0
        assert (bright ^ marked).sum() <= 0.25 * marked.sum() + 8, "mask left the defect"


def test_quarter_turns_move_the_mask_with_the_image_and_need_a_square_input():
    from edge_sealant.imageset import LoadedImages
    from edge_sealant.data.types import Region, Sample
    from edge_sealant.errors import EdgeSealantError
    from edge_sealant.train.options import TrainOptions
    from edge_sealant.train.parts import RandomTranspose
    from torchvision import tv_tensors

    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 2:30, 4:8] = 255  # a tall thin bar: a transpose lays it down
    mask = (image[..., 0] > 0).astype(np.uint8)
    sample = Sample(path=__file__, label=1, regions=(Region("x", "box", (0.2, 0.5, 0.1, 0.9)),))
    data = ArrayDataset(LoadedImages(image, [sample], [], mask), augmentation(quarter_turns=True))
    torch.manual_seed(0)
    lying = 0
    for _ in range(40):
        pixels, _, moved, _ = data[0]
        bright = pixels.float().mean(0) > 128
        assert (bright ^ (moved > 0)).sum() <= 0.25 * (moved > 0).sum() + 8, "mask left the defect"
        rows, cols = np.nonzero(bright.numpy())
        lying += int(np.ptp(cols) > np.ptp(rows))
    assert 8 < lying < 32  # turned about half of the time
    with pytest.raises(EdgeSealantError, match="square"):
        RandomTranspose(p=1.0)(tv_tensors.Image(torch.zeros(3, 8, 4)))
    with pytest.raises(EdgeSealantError, match="square --imgsz"):
        TrainOptions(data="d", out="o", imgsz=(64, 32), quarter_turns=True)


@pytest.fixture(scope="module")
def box_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    synthesize(out, n=60, defect_ratio=0.35, size=SIZE, seed=5)
    return out / "data.yaml"


def _options(data, out, **extra):
    from test_train import tiny_options  # the same tiny recipe (MobileNetV3-Small at 64x32, 2 epochs)

    return tiny_options(data, out, **extra)


@pytest.fixture(scope="module")
def box_run(box_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "boxes"
    train(_options(box_data, run))
    return run


def test_auto_supervision_learns_from_boxes(box_run):
    card = ModelCard.load(box_run)
    assert (card.supervision, card.heatmap_stride, card.heatmap_size) == ("boxes", 16, (4, 2))
    assert "heatmap" in card.output


def test_evaluate_reports_localization_and_a_review_of_heatmap_against_labels(box_run, box_data, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(box_run), str(box_data), "--split", "test", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    located = metrics["localization"]
    outlined = sum(1 for s in _split(box_data, "test") if s.label and s.has_geometry)
    assert located["defect_images"] == outlined > 0 and 0.0 <= located["pointing_game"] <= 1.0
    assert 0.0 < located["pointing_game_chance"] < 1.0
    review = metrics["review"]
    with open(out / "review.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(review["items"]) and review["images"] == len({r["file"] for r in rows})
    assert review["overlays_written"] == len(list((out / "review").glob("*.jpg"))) == review["images"]
    assert {r["kind"] for r in rows} <= {"unlabelled region", "unseen label"}
    for row in rows[:2]:  # each picture: the source image under a title bar
        picture = cv2.imread(str(out / "review" / row["overlay"]))
        assert picture is not None and picture.shape[0] > SIZE[0] and picture.shape[1] == SIZE[1]
    card = ModelCard.load(box_run)  # the card keeps the figures, not the list
    assert card.metrics["test"]["localization"] == located and "review" not in card.metrics["test"]
    again = runner.invoke(app, ["evaluate", str(box_run), str(box_data), "--split", "test", "--out", str(out)])
    printed = " ".join(again.output.split())  # the console wraps long lines
    assert "pointing game" in printed and "(a random peak: " in printed
    assert len(list((out / "review").glob("*.jpg"))) == review["images"]  # replaced, not doubled
    (out / "review" / "notes.txt").write_text("mine")
    refused = runner.invoke(app, ["evaluate", str(box_run), str(box_data), "--split", "test", "--out", str(out)])
    assert refused.exit_code == 1 and "not review pictures" in refused.output


def _split(data, split):
    from edge_sealant.data.loading import load_dataset

    return load_dataset(data).split(split)


def test_image_supervision_and_imagefolder_stay_image_only(box_data, tmp_path):
    train(_options(box_data, tmp_path / "img", supervision="image", epochs=1))
    assert ModelCard.load(tmp_path / "img").heatmap_stride == 0
    image_only = runner.invoke(app, ["evaluate", str(tmp_path / "img"), str(box_data), "--json", "--out", str(tmp_path / "e")])
    assert image_only.exit_code == 0, image_only.output
    assert "localization" not in json.loads(image_only.stdout) and not (tmp_path / "e" / "review.csv").exists()
    with pytest.raises(EdgeSealantError, match="no boxes or polygons"):
        from edge_sealant.train.trainer import resolve_supervision

        resolve_supervision("boxes", [])


def test_mixed_batch_with_defects_known_only_by_label(box_data, tmp_path):
    """Defect images without geometry (ImageFolder-style, or image-level classes) train beside
    boxed ones and normal images in one batch: their heatmap loss is masked out, their image
    loss still counts."""
    from edge_sealant.data.loading import load_dataset
    from edge_sealant.data.types import Sample
    from edge_sealant.imageset import load_images
    from edge_sealant.train.trainer import TrainData, Trainer, new_card

    dataset = load_dataset(box_data)
    train_samples = [Sample(s.path, s.label, s.defect_classes, s.boxes, ()) if s.label and i % 2 else s
                     for i, s in enumerate(dataset.split("train"))]
    assert any(s.label and not s.has_geometry for s in train_samples)
    assert any(s.label and s.has_geometry for s in train_samples)
    options = _options(box_data, tmp_path / "mixed_run", epochs=1, batch_size=32)
    card = new_card(options, dataset)
    data = TrainData(load_images(train_samples, card, masks=True), load_images(dataset.split("val"), card))
    assert not data.train.has_geometry.all()
    result = Trainer(options, dataset=dataset, data=data).fit()
    assert result.card.heatmap_stride == 16 and np.isfinite(result.card.train["history"][0]["train_loss"])


def test_regions_map_back_to_source_pixels_stretch_and_letterbox():
    heatmap = np.zeros((4, 2), np.float32)
    heatmap[1, 1] = 0.9  # input pixels x 16..32, y 16..32 of a 64x32 input
    stretch = find_regions(heatmap, 16, (0, 0, 64, 32), (640, 320))
    assert [r.box for r in stretch] == [(160, 160, 320, 320)] and stretch[0].peak == pytest.approx(0.9)
    # letterbox: a 100x100 source in a 64x32 input sits at top 16, left 0, 32x32
    boxed = find_regions(heatmap, 16, (16, 0, 32, 32), (100, 100))
    assert [r.box for r in boxed] == [(50, 0, 100, 50)]
    heatmap[0, 0] = 0.99  # a cell wholly on the letterbox margin maps to nothing
    assert len(find_regions(heatmap, 16, (16, 0, 32, 32), (100, 100))) == 1
    assert grid_extent((4, 2), 16, (16, 0, 32, 32), (100, 100)) == (0.0, -50.0, 100.0, 150.0)


@pytest.fixture(scope="module")
def exported_box_run(box_run, tmp_path_factory):
    import shutil

    run = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(box_run, run)
    result = runner.invoke(app, ["export", str(run), "--parity-images", "4"])
    assert result.exit_code == 0, result.output
    return run


def test_export_has_two_outputs_that_match_torch(exported_box_run, box_data):
    from edge_sealant.data.loading import load_dataset
    from edge_sealant.imageset import load_images
    from edge_sealant.runtime import open_backend
    from edge_sealant.torch_backend import TorchBackend

    torch_backend = TorchBackend.from_run(exported_box_run)
    images = load_images(load_dataset(box_data).split("val")[:6], torch_backend.card).images
    expected = torch_backend.infer(images)
    for model in ("onnx/fp32/model.onnx", "openvino/fp32/model.xml"):
        outputs = open_backend(exported_box_run / model).infer(images)
        assert outputs.heatmap.shape == (6, 4, 2)
        assert np.abs(outputs.probability - expected.probability).max() < 1e-4
        assert np.abs(outputs.heatmap - expected.heatmap).max() < 1e-4


def test_int8_keeps_both_outputs_and_the_heatmap_in_float(exported_box_run, box_data):
    result = runner.invoke(app, ["quantize", str(exported_box_run), str(box_data), "--subset-size", "16", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for row in report["metrics"].values():  # INT8's heatmap peak vs FP32's, on the defect images
        peaks = row["heatmap_peaks"]
        assert peaks["n"] == row["n_defect"] and 0.0 <= peaks["same_cell"] <= peaks["within_one_cell"] <= 1.0
    manifest = json.loads((exported_box_run / "openvino" / "int8" / "calibration.json").read_text())
    ignored = manifest["quantization"]["ignored_scope"] if "quantization" in manifest else json.dumps(manifest)
    assert "heatmap_head" in json.dumps(ignored)
    from edge_sealant.runtime import Inspector

    inspector = Inspector.load(exported_box_run / "openvino" / "int8" / "model.xml")
    result = inspector.inspect(np.full((130, 70, 3), 90, np.uint8))
    assert result.heatmap.shape == (4, 2) and 0.0 <= result.probability <= 1.0


def test_quantization_aware_fine_tune_keeps_both_outputs_and_the_heatmap_in_float(exported_box_run, box_data, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(exported_box_run, run, ignore=shutil.ignore_patterns("int8"))
    result = runner.invoke(app, ["quantize", str(run), str(box_data), "--subset-size", "16", "--qat-epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    settings = report["settings"]
    assert settings["engine"].startswith("nncf.quantize (torch)") and settings["fast_bias_correction"] is True
    qat = settings["qat"]
    assert qat["steps"] >= 1 and qat["train_images"] > 0 and qat["lr"] == pytest.approx(1e-5)  # 1% of the run's 1e-3
    assert qat["batch_size"] == 8  # the run's own recipe (tiny_options), not a default of 32
    assert "^heatmap_head/.*" in qat["ignored"] and any(name.endswith("/linear/0") for name in qat["ignored"])
    assert "quantization-aware fine-tune: step" in result.output
    for row in report["metrics"].values():
        assert row["heatmap_peaks"]["n"] == row["n_defect"]
    import openvino as ov

    model = ov.Core().read_model(run / "openvino" / "int8" / "model.xml")
    kinds = [op.get_type_name() for op in model.get_ops()]
    assert "FakeQuantize" in kinds
    heatmap_ops = [op for op in model.get_ops() if "heatmap_head" in op.get_friendly_name()]
    assert heatmap_ops and not any(op.get_type_name() == "FakeQuantize" for op in heatmap_ops)
    from edge_sealant.runtime import Inspector

    inspector = Inspector.load(run / "openvino" / "int8" / "model.xml")
    inspected = inspector.inspect(np.full((130, 70, 3), 90, np.uint8))
    assert inspected.heatmap.shape == (4, 2) and 0.0 <= inspected.probability <= 1.0
    assert inspector.card.precision == "int8" and inspector.card.threshold == report["int8_threshold"]["value"]


def test_quantization_aware_fine_tune_refuses_the_onnx_route_and_accuracy_control(exported_box_run, box_data):
    for extra in (["--backend", "onnx"], ["--max-drop", "0.01"]):
        result = runner.invoke(app, ["quantize", str(exported_box_run), str(box_data), "--qat-epochs", "1", "--force", *extra])
        assert result.exit_code == 1 and "--qat-epochs works with --backend openvino and without --max-drop" in result.output


def test_peak_agreement_counts_same_and_neighbouring_cells():
    from edge_sealant.quantize.scoring import peak_agreement

    fp32 = np.zeros((4, 3, 3), np.float32)
    int8 = np.zeros((4, 3, 3), np.float32)
    fp32[:, 1, 1] = 1.0
    int8[0, 1, 1] = int8[1, 1, 1] = 1.0  # same cell twice
    int8[2, 2, 2] = 1.0  # a diagonal neighbour
    int8[3, 0, 0] = 0.5  # also a neighbour of (1, 1)...
    fp32[3] = 0.0
    fp32[3, 2, 2] = 1.0  # ...but this image's FP32 peak is at (2, 2): two cells away
    result = peak_agreement(fp32, int8)
    assert result["n"] == 4 and result["same_cell"] == 0.5 and result["within_one_cell"] == 0.75 and result["met"] is False
    assert result["on_fp32_plateau"] == 0.5 and result["in_fp32_region"] == 0.5
    # the two moved peaks: FP32 rates INT8's cells 1.0 - 0.0 below its own peak
    assert result["moved_fp32_deficit"] == {"median": 1.0, "p90": 1.0}
    fp32[2, 2, 2] = 0.97  # a near-tie in FP32: INT8 picking that cell is on the plateau
    assert peak_agreement(fp32, int8)["on_fp32_plateau"] == 0.75
    assert peak_agreement(fp32, int8)["moved_fp32_deficit"]["median"] == pytest.approx((0.03 + 1.0) / 2)
    assert peak_agreement(fp32, int8)["in_fp32_region"] == 0.75  # and in the region around FP32's peak
    fp32[2, 2, 2] = 0.6  # below the plateau, still above the region level, touching the peak cell
    assert peak_agreement(fp32, int8)["on_fp32_plateau"] == 0.5 and peak_agreement(fp32, int8)["in_fp32_region"] == 0.75
    fp32[2, 1, 1], fp32[2, 2, 2] = 0.4, 0.3  # FP32 saw no region: only the very cell counts
    assert peak_agreement(fp32, int8)["in_fp32_region"] == 0.5
    assert peak_agreement(fp32[:0], int8[:0])["same_cell"] is None


def test_predict_overlay_and_regions(exported_box_run, tmp_path):
    model = exported_box_run / "openvino" / "fp32" / "model.xml"
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        frame = np.full((260, 90, 3), 60, np.uint8)
        cv2.circle(frame, (45, 80 + 40 * k), 12, (250, 250, 250), -1)
        cv2.imwrite(str(frames / f"f{k}.jpg"), frame)
    out, overlays = tmp_path / "rows.csv", tmp_path / "overlays"
    result = runner.invoke(app, ["predict", str(model), str(frames), "--out", str(out), "--regions",
                                 "--overlay", str(overlays), "--threshold", "0", "--region-level", "0"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [json.loads(r["regions"])[0]["box"] for r in rows] == [[0, 0, 90, 260]] * 3  # level 0: the whole grid
    pictures = sorted(overlays.glob("*.jpg"))
    assert [p.name for p in pictures] == ["f0.jpg", "f1.jpg", "f2.jpg"]  # threshold 0: all flagged
    picture = cv2.imread(str(pictures[0]))
    assert picture.shape[1] == 90 and picture.shape[0] > 260  # source size plus the title bar


def test_video_overlays_one_picture_per_flagged_frame(exported_box_run, tmp_path):
    model = exported_box_run / "openvino" / "fp32" / "model.xml"
    video = tmp_path / "line.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 256))
    assert writer.isOpened()
    for k in range(4):
        frame = np.full((256, 96, 3), 60, np.uint8)
        cv2.circle(frame, (48, 60 + 40 * k), 12, (250, 250, 250), -1)
        writer.write(frame)
    writer.release()
    overlays = tmp_path / "overlays"
    result = runner.invoke(app, ["predict", str(model), str(video), "--overlay", str(overlays), "--threshold", "0", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["path"] for r in rows] == [f"{video}#frame={k}" for k in range(4)] and not any(r["error"] for r in rows)
    pictures = sorted(p.name for p in overlays.glob("*.jpg"))
    assert pictures == [f"line_frame{k}.jpg" for k in range(4)]  # the frame itself, drawn: not the video file
    picture = cv2.imread(str(overlays / "line_frame2.jpg"))
    assert picture.shape[1] == 96 and picture.shape[0] > 256


def test_image_only_model_refuses_overlay(tmp_path):
    from deploy_fixtures import make_run

    run = make_run(tmp_path / "plain")
    runner.invoke(app, ["export", str(run), "--format", "onnx", "--parity-images", "2"])
    frame = tmp_path / "a.jpg"
    cv2.imwrite(str(frame), np.zeros((64, 32, 3), np.uint8))
    result = runner.invoke(app, ["predict", str(run / "onnx" / "fp32" / "model.onnx"), str(frame), "--overlay", str(tmp_path / "o")])
    assert result.exit_code == 1 and "image-only model has no heatmap" in result.output


def test_image_level_classes_keep_the_label_and_drop_the_mask(box_data):
    from edge_sealant.data.loading import load_dataset
    from edge_sealant.data.types import with_image_level_classes

    dataset = load_dataset(box_data)
    boxed = [s for s in dataset.split("train") if s.regions]
    chosen = boxed[0].regions[0].class_name
    converted = with_image_level_classes(dataset, [chosen])
    by_path = {s.path: s for s in converted.split("train")}
    for sample in boxed:
        after = by_path[sample.path]
        assert after.label == 1
        if any(r.class_name == chosen for r in sample.regions):
            assert after.image_level and not after.has_geometry
            assert all(r.class_name != chosen for r in after.regions)
        else:
            assert after.has_geometry
    with pytest.raises(EdgeSealantError, match="not a class"):
        with_image_level_classes(dataset, ["no-such-class"])


def test_bundle_readme_names_the_heatmap_output(exported_box_run, tmp_path):
    import zipfile

    from edge_sealant.bundle import build_bundle
    from edge_sealant.card import ModelCard

    rows, columns = ModelCard.load(exported_box_run).heatmap_size
    with zipfile.ZipFile(build_bundle(exported_box_run, tmp_path / "deploy.zip")) as zf:
        readme = zf.read("README.txt").decode()
    assert f'"defect_heatmap": N x 1 x {rows} x {columns}' in readme and "edge-sealant serve" in readme
