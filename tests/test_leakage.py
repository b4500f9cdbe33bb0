"""Leak-free metrics: test images duplicated from train must be reported apart."""

import shutil

import cv2
import numpy as np

from edge_sealant.data.audit import duplicated_elsewhere
from edge_sealant.data.loading import load_dataset
from edge_sealant.data.synth import synthesize


def test_copied_and_reexposed_images_are_found(tmp_path):
    root = tmp_path / "ds"
    synthesize(root, n=40, size=(96, 48), seed=5)
    train = sorted((root / "images" / "train").glob("*.jpg"))
    test_dir = root / "images" / "test"
    shutil.copy(train[0], test_dir / "copy.jpg")  # exact duplicate
    brighter = np.clip(cv2.imread(str(train[1])).astype(int) + 12, 0, 255).astype(np.uint8)
    cv2.imwrite(str(test_dir / "reexposed.jpg"), brighter)  # same scene, other exposure
    dataset = load_dataset(root / "data.yaml")
    leaked = {p.name for p in duplicated_elsewhere(dataset, "test")}
    assert {"copy.jpg", "reexposed.jpg"} <= leaked
    assert len(leaked) == 2  # the generated test images are all distinct scenes
