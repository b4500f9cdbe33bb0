"""Commands: `data inspect`, `data split`, `data synth`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edge_sealant.card import parse_size
from edge_sealant.cli.common import GROUP_BY_HELP, MAX_GROUP_HELP, console, data_app, print_json, split_list

@data_app.command("inspect")
def data_inspect(
    data: Path = typer.Argument(..., help="YOLO data.yaml, or a dataset folder (YOLO or ImageFolder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the audit as JSON on stdout."),
    normal_classes: Optional[str] = typer.Option(None, help="Comma-separated YOLO class names that mean OK."),
    seed: int = typer.Option(0, help="Seed of the split made when val/test are missing."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help=GROUP_BY_HELP),
) -> None:
    """Audit a dataset: counts per split, boxes per class, sizes, label problems, leakage."""
    from edge_sealant.data.audit import audit_dataset, render_audit
    from edge_sealant.data.loading import load_dataset

    dataset = load_dataset(data, normal_classes=split_list(normal_classes), seed=seed, group_by=group_by)
    report = audit_dataset(dataset)
    if as_json:
        print_json(report)
    else:
        render_audit(report, console)


@data_app.command("split")
def data_split(
    data: Path = typer.Argument(..., help="YOLO data.yaml or dataset folder; all its images are pooled."),
    out: Path = typer.Argument(..., help="New folder for the split dataset (links by default)."),
    val: float = typer.Option(0.15, "--val", help="Fraction of images for val."),
    test: float = typer.Option(0.15, "--test", help="Fraction of images for test."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help=GROUP_BY_HELP),
    max_group: Optional[int] = typer.Option(None, "--max-group", help=MAX_GROUP_HELP),
    seed: int = typer.Option(0, help="Random seed (same seed, same split)."),
    normal_classes: Optional[str] = typer.Option(None, help="Comma-separated YOLO class names that mean OK."),
    copy: bool = typer.Option(False, "--copy", help="Copy the files instead of linking them."),
) -> None:
    """Freeze a leak-free, grouped, stratified train/val/test split as a dataset with a manifest."""
    from edge_sealant.data.freeze import split_dataset

    result = split_dataset(
        data, out, val=val, test=test, seed=seed, group_by=group_by, max_group_size=max_group,
        normal_classes=split_list(normal_classes), copy=copy,
    )
    counts = ", ".join(f"{split} {c['normal'] + c['defect']} ({c['defect']} defect)" for split, c in result.counts.items())
    grouping = result.grouping
    console.print(f"wrote {result.out}: {counts}", highlight=False)
    console.print(
        f"{grouping['groups']} groups (largest {grouping['largest_group']}, {grouping['multi_image_groups']} with more than one image); "
        f"manifest {result.manifest}", highlight=False,
    )
    if grouping["split_chains"]:
        console.print(
            f"[yellow]note:[/] {len(grouping['split_chains'])} near-duplicate chains over {grouping['max_group_size']} images were cut apart; "
            f"{grouping['cut_near_pairs']} near pairs may cross splits (the audit lists them)"
        )
    console.print(f"next: edge-sealant data inspect {result.data}", highlight=False)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Folder to write the YOLO dataset to."),
    n: int = typer.Option(400, "--n", help="Number of images (all splits)."),
    defect_ratio: float = typer.Option(0.3, help="Fraction of images with a defect."),
    size: str = typer.Option("320x112", help="Image size HxW (tall, like sealant line frames)."),
    seed: int = typer.Option(0, help="Random seed (same seed, same images)."),
) -> None:
    """Generate a procedural sealant-bead dataset in YOLO format (the embedded default)."""
    from edge_sealant.data.synth import synthesize

    summary = synthesize(out, n=n, defect_ratio=defect_ratio, size=parse_size(size), seed=seed)
    console.print(f"wrote {summary['images']} images to {out} ({summary['counts']})")
