"""A deployment zip for the factory PC: models, a torch-free runtime and an example.

Layout of ``OUT.zip``::

    README.txt
    requirements.txt              numpy, opencv-python-headless, openvino, onnxruntime (no torch)
    inspect_folder.py             inspects a folder, prints/writes one row per image
    edge_sealant/                 the vendored runtime: __init__, errors, card, preprocess, runtime/*
    models/openvino-int8/model.xml|bin + run.json (+ model.threshold.json when set)
    models/openvino-fp32/...      every model the run has, best first in README
    models/onnx-fp32/model.onnx + run.json
    ovms/config.json              OpenVINO Model Server repository (base paths relative)
    ovms/edge_sealant_int8/1/model.xml|bin

The zip is written to a temporary name beside ``OUT`` and renamed; an existing ``OUT`` is an
error, never overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from edge_sealant import __version__
from edge_sealant.artifacts import BACKEND_FOLDER, existing_artifacts
from edge_sealant.card import RUN_JSON, ModelCard, normal_permissions
from edge_sealant.errors import EdgeSealantError
from edge_sealant.runtime.model_file import artifacts_best_first, check_model_path, model_files, read_card, sidecar_path

PACKAGE_DIR = Path(__file__).resolve().parent
# The runtime's whole import closure, vendored into the zip (a test checks it against what
# `import edge_sealant.runtime` really loads, and runs the unzipped copy without torch).
RUNTIME_FILES = (
    "__init__.py",
    "errors.py",
    "card.py",
    "preprocess.py",
    "runtime/__init__.py",
    "runtime/protocol.py",
    "runtime/cpu.py",
    "runtime/model_file.py",
    "runtime/backends.py",
    "runtime/regions.py",
    "runtime/inspector.py",
)
REQUIREMENTS = """\
# Runtime of an edge-sealant model bundle: no torch. The edge_sealant/ folder beside this
# file is the runtime itself (vendored from edge-sealant {version}); inspect_folder.py puts it
# on sys.path. One of openvino / onnxruntime is enough for its model format.
numpy>=1.24
opencv-python-headless>=4.8
openvino>=2024.4
onnxruntime>=1.18
"""

EXAMPLE = '''\
#!/usr/bin/env python3
"""Inspect every image of a folder with the model of this bundle (no torch needed).

    pip install -r requirements.txt
    python inspect_folder.py IMAGES_DIR [--model models/openvino-int8/model.xml] [--csv out.csv]

One line per image: path, defect probability, decision. Unreadable images are reported and
skipped. Threshold: --threshold, else models/*/model.threshold.json, else the exported one.
"""

import argparse
import csv
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the vendored edge_sealant runtime

from edge_sealant.preprocess import IMAGE_SUFFIXES  # noqa: E402
from edge_sealant.runtime import Inspector  # noqa: E402

MODELS = {models}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", type=Path, default=None, help="default: the best model in models/")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--hint", default="THROUGHPUT", help="OpenVINO: LATENCY or THROUGHPUT")
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows to this CSV")
    args = parser.parse_args()
    model = args.model or next((HERE / m for m in MODELS if (HERE / m).is_file()), None)
    if model is None:
        sys.exit("no model found in models/")
    paths = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    inspector = Inspector.load(model, hint=args.hint, threshold=args.threshold)
    print(f"# {{inspector!r}}", file=sys.stderr)
    rows, start = [], time.perf_counter()
    with inspector:
        for result in inspector.stream(paths):
            if result.ok:
                print(f"{{result.name}}\\t{{result.probability:.6f}}\\t{{result.decision}}")
            else:
                print(f"{{result.name}}\\terror\\t{{result.error}}", file=sys.stderr)
            rows.append(result)
    elapsed = time.perf_counter() - start
    defects = sum(1 for r in rows if r.is_defect)
    errors = sum(1 for r in rows if not r.ok)
    print(f"# {{len(rows)}} images, {{defects}} defects, {{errors}} errors, "
          f"{{len(rows) / max(elapsed, 1e-9):.1f}} images/s", file=sys.stderr)
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "probability", "decision", "latency_ms", "error"])
            for r in rows:
                writer.writerow([r.name, "" if r.probability is None else f"{{r.probability:.6f}}",
                                 r.decision, r.latency_ms, r.error or ""])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
'''

README = """\
edge-sealant model bundle ({model}, input {height}x{width} {channel_order}, threshold {threshold})
Made by edge-sealant {version}. No torch needed.

  pip install -r requirements.txt
  python inspect_folder.py IMAGES_DIR --csv predictions.csv

Python:
  import sys; sys.path.insert(0, "<this folder>")
  from edge_sealant.runtime import Inspector
  inspector = Inspector.load("{best}")
  print(inspector.inspect("frame.jpg"))

Models (best first; each folder's run.json is the model card, also embedded in the file):
{model_lines}

Threshold: change it without re-exporting by writing model.threshold.json next to a model,
  {{"threshold": 0.42}}
which wins over the embedded value (Inspector reports threshold_source = "sidecar").

OpenVINO Model Server: ovms/ is a model repository,
  docker run -v $PWD/ovms:/models -p 9000:9000 openvino/model_server:latest --config_path /models/config.json --port 9000
Input "images": uint8 N x {height} x {width} x 3 ({channel_order}), already resized ({resize_mode});
output "defect_probability": N x 1{heatmap_line}. Apply the threshold yourself.
Or serve the bundle itself over the same protocol, decoding JPEGs and applying the threshold:
  pip install "edge-sealant[serve]" && edge-sealant serve THIS.zip --host 0.0.0.0
"""


def check_bundle_target(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise EdgeSealantError(f"{out}: bundle name must end in .zip")
    if out.exists():
        raise EdgeSealantError(f"{out}: already exists (a bundle is never overwritten)")
    return out


def model_folder(backend: str, precision: str) -> str:
    """Where a model of ``backend`` and ``precision`` lives in the zip: ``models/openvino-int8``..."""
    return f"models/{BACKEND_FOLDER[backend]}-{precision}"


def build_bundle(run: str | Path, out: str | Path) -> Path:
    """Write the deployment zip of every exported/quantized model of ``run`` to ``out``."""
    run = Path(run)
    out = check_bundle_target(out)
    found = existing_artifacts(run)
    ordered = artifacts_best_first(found)
    if not ordered:
        raise EdgeSealantError(f"{run}: no exported models to bundle (run 'edge-sealant export {run}' first)")
    models = {key: found[key] for key in ordered}
    cards = {key: read_card(check_model_path(path)) for key, path in models.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    normal_permissions(Path(tmp))
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            _write_bundle(zf, models, cards)
        _rename_no_overwrite(Path(tmp), out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _write_bundle(zf: zipfile.ZipFile, models: dict[tuple[str, str], Path], cards: dict[tuple[str, str], ModelCard]) -> None:
    """Runtime, example, models (best first), OVMS repository and README into ``zf``."""
    entries = [f"{model_folder(*key)}/{path.name}" for key, path in models.items()]
    for rel in RUNTIME_FILES:
        zf.write(PACKAGE_DIR / rel, f"edge_sealant/{rel}")
    zf.writestr("requirements.txt", REQUIREMENTS.format(version=__version__))
    zf.writestr("inspect_folder.py", EXAMPLE.format(models=json.dumps(entries)))
    ovms_models = []
    lines = []
    for key, path in models.items():
        folder = model_folder(*key)
        _write_model(zf, path, folder)
        lines.append(f"  {folder}/{path.name}  ({key[0]} {key[1]}, threshold {cards[key].threshold})")
        if key[0] == "openvino":
            ovms_models.append(_write_ovms_model(zf, path, f"edge_sealant_{key[1]}"))
    if ovms_models:
        zf.writestr("ovms/config.json", json.dumps({"model_config_list": ovms_models}, indent=2) + "\n")
    card = next(iter(cards.values()))  # the best model's
    zf.writestr("README.txt", README.format(
        model=card.model, height=card.height, width=card.width, channel_order=card.channel_order,
        resize_mode=card.resize_mode, threshold=card.threshold, version=__version__, heatmap_line=_heatmap_line(card),
        best=entries[0], model_lines="\n".join(lines),
    ))


def _heatmap_line(card: ModelCard) -> str:
    """The OVMS README's mention of the second output, for heatmap models."""
    if not card.has_heatmap:
        return ""
    rows, columns = card.heatmap_size
    return f'; "defect_heatmap": N x 1 x {rows} x {columns} (one cell per {card.heatmap_stride} input pixels)'


def _write_model(zf: zipfile.ZipFile, path: Path, folder: str) -> None:
    """The model's files plus its ``run.json`` and threshold sidecar, when present."""
    for file in model_files(path):
        zf.write(file, f"{folder}/{file.name}")
    for extra in (path.parent / RUN_JSON, sidecar_path(path)):
        if extra.is_file():
            zf.write(extra, f"{folder}/{extra.name}")


def _write_ovms_model(zf: zipfile.ZipFile, path: Path, name: str) -> dict[str, Any]:
    """Version 1 of an IR in the OVMS repository; returns its ``config.json`` entry."""
    for file in model_files(path):
        zf.write(file, f"ovms/{name}/1/{file.name}")
    return {"config": {
        "name": name,
        "base_path": name,  # relative to config.json
        "target_device": "CPU",
        "plugin_config": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
    }}


def _rename_no_overwrite(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out`` unless ``out`` appeared meanwhile (hard link is atomic)."""
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise EdgeSealantError(f"{out}: already exists (a bundle is never overwritten)") from None
    except OSError:  # file systems without hard links
        if out.exists():
            raise EdgeSealantError(f"{out}: already exists (a bundle is never overwritten)") from None
        os.replace(tmp, out)
        return
    tmp.unlink()
