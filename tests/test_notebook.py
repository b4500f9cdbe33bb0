"""The Colab quickstart runs top to bottom on a CPU with generated data (quick sizes)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "colab_quickstart.ipynb"


def test_notebook_is_valid_and_guards_colab_only_steps():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    source = "\n".join(cell.source for cell in nb.cells)
    for needle in ("pip install -q git+", "pip install -q -e", "files.upload()", "drive.mount", "data inspect",
                   "--device {DEVICE}", "{FOLD_OPTION}", "--threshold-policy", "quantize", "bench", "--bundle", "EDGE_SEALANT_NOTEBOOK_QUICK"):
        assert needle in source, needle
    for line in source.splitlines():
        if "google.colab import" in line:
            assert line.startswith("    "), f"Colab import not guarded: {line!r}"
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit the notebook without outputs"


@pytest.mark.slow
def test_notebook_executes_on_cpu(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("EDGE_SEALANT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("EDGE_SEALANT_NOTEBOOK_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if not shutil.which("edge-sealant"):  # the notebook falls back to python -m edge_sealant
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NOTEBOOK.parents[1]), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    work = tmp_path / "work"
    card = json.loads((work / "run" / "run.json").read_text())
    # quick mode takes the GPU route's grouped folds (2 of them), so it runs end to end too
    assert card["train"]["folds"]["k"] == 2 and card["metrics"]["operating_point"]["chosen_on"] == "out-of-fold scores"
    assert (work / "run" / "openvino" / "int8" / "model.xml").is_file()
    rows = json.loads((work / "run" / "bench" / "bench.json").read_text())["rows"]
    assert {(r["backend"], r["precision"]) for r in rows} >= {("torch", "fp32"), ("openvino", "int8")}
    assert (work / "edge_sealant_bundle.zip").stat().st_size > 1000
