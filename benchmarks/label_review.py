#!/usr/bin/env python
"""Where several heatmap models agree against the labels: the review that outlives one seed.

``evaluate`` reviews one model (:mod:`edge_sealant.localize`): heatmap regions outside every
labelled region, and labelled regions the heatmap does not reach. One model's list mixes label
gaps with that model's own errors. This script reviews several runs trained on the same data
(seeds, or input sizes) and keeps what **every** run says:

* an unlabelled region is *agreed* when every run has a heatmap region on that image whose box
  overlaps the first run's region (source pixels);
* an unseen label is agreed when no run's heatmap reaches the level on it.

Agreed items are the ones to take to whoever labelled the data: a defect that models of
different seeds all find where no label is, or a label none of them can see. Whether the label
or the models are wrong is for a person to decide from the pictures (``evaluate`` writes them).

    python benchmarks/label_review.py DATA RUN [RUN ...] [--split test]

Results: Markdown + JSON in ``--results`` (default benchmarks/results), named by date, CPU and dataset.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant.bench import cpu_info, cpu_label, publish_results  # noqa: E402
from edge_sealant.localize import UNLABELLED, UNSEEN  # noqa: E402


def review_run(run: Path, data: Path, split: str) -> dict[str, Any]:
    """One run's localization figures and review items on ``split`` (nothing written)."""
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import card_group_by, infer_images, part_groups, relative_name
    from edge_sealant.imageset import load_images
    from edge_sealant.localize import heatmap_report
    from edge_sealant.torch_backend import TorchBackend

    backend = TorchBackend.from_run(run)
    card = backend.card
    if not card.has_heatmap:
        raise SystemExit(f"{run}: an image-only model has no heatmap to review")
    dataset = load_dataset_like(data, card.data_summary)
    loaded = load_images(dataset.split(split), card)
    outputs = infer_images(backend, loaded.images)
    names = [relative_name(s, dataset.root) for s in loaded.samples]
    groups = part_groups(loaded.samples, card_group_by(card))
    report = heatmap_report(outputs.heatmap, outputs.probability, loaded, names, card, groups)
    return {"run": str(run), "model": card.model, "input_size": list(card.input_size), **report}


def _overlap(a: list[int], b: list[int]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def agreed_items(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first run's review items that every other run repeats (module doc), with each run's peak."""
    agreed = []
    for item in runs[0]["review"]["items"]:
        peaks, probabilities = [item["peak"]], [item["probability"]]
        for other in runs[1:]:
            match = [o for o in other["review"]["items"] if o["file"] == item["file"] and o["kind"] == item["kind"]
                     and (_overlap(o["box"], item["box"]) if item["kind"] == UNLABELLED else o["box"] == item["box"])]
            if not match:
                break
            best = max(match, key=lambda o: o["peak"]) if item["kind"] == UNLABELLED else match[0]
            peaks.append(best["peak"])
            probabilities.append(best["probability"])
        else:
            agreed.append({**item, "peaks": peaks, "probabilities": probabilities})
    return agreed


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(payload: dict[str, Any]) -> str:
    runs, agreed = payload["runs"], payload["agreed"]
    lines = [
        f"# Label review: where heatmap and labels disagree ({payload['date']})",
        "",
        f"{payload['data']} ({payload['split']} split), {cpu_label(payload['cpu'])}.",
        "Per run (`evaluate`'s review): heatmap regions (cells >= 0.5) touching no labelled region (dilated by 2% of the input side), "
        "on defect and on normal images; labelled regions the heatmap does not reach 0.5 on. Agreed: repeated by every run "
        "(overlapping boxes for regions, the same label for unseen labels). Pointing game interval: 95%, Clopper-Pearson "
        "widened to a bootstrap of parts.",
        "",
        "| run | model | pointing game [95% CI] | regions outside labels: defect images | normal images | unseen labels | images (parts) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        located, review = run["localization"] or {}, run["review"]
        ci = located.get("pointing_game_ci") or [None, None]
        lines.append(
            f"| {Path(run['run']).name} | {run['model']} {run['input_size'][0]}x{run['input_size'][1]} | "
            f"{_f(located.get('pointing_game'))} [{_f(ci[0])}, {_f(ci[1])}] | {review['unlabelled_on_defect_images']} | "
            f"{review['unlabelled_on_normal_images']} | {review['unseen_labels']} | {review['images']} ({review['parts']}) |"
        )
    lines += [
        "",
        f"## Agreed by all {len(runs)} runs: {len(agreed)} items on {len({a['file'] for a in agreed})} images of "
        f"{len({a['part'] for a in agreed})} parts",
        "",
        "Part: images of one part (exposures of one tile) share it: exact or near duplicates, as the intervals group them.",
        "",
        "| file | part | labelled | kind | box (source px, first run) | peak per run | probability per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in agreed:
        lines.append(
            f"| {item['file']} | {item['part']} | {'defect' if item['label'] else 'normal'} | {item['kind']} | {tuple(item['box'])} | "
            f"{' / '.join(_f(p, 2) for p in item['peaks'])} | {' / '.join(_f(p, 3) for p in item['probabilities'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+", help="heatmap runs trained on DATA (seeds, sizes)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--name", default=None, help="dataset name in the result file (default: the data folder's)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    runs = [review_run(run, args.data, args.split) for run in args.runs]
    agreed = agreed_items(runs)
    payload = {
        "date": date.today().isoformat(),
        "data": str(args.data),
        "split": args.split,
        "cpu": cpu_info(),
        "runs": runs,
        "agreed": agreed,
        "agreed_counts": {kind: sum(a["kind"] == kind for a in agreed) for kind in (UNLABELLED, UNSEEN)},
    }
    name = args.name or Path(args.data).resolve().parent.name
    publish_results(args.results, f"{name}_label-review", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
