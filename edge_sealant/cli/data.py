"""Commands: `data inspect`, `data split`, `data synth`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edge_sealant.card import check_heatmap_stride, parse_size
from edge_sealant.cli.common import GROUP_BY_HELP, MAX_GROUP_HELP, console, data_app, print_json, split_list


@data_app.command("inspect")
def data_inspect(
    data: Annotated[Path, typer.Argument(help="YOLO data.yaml, or a dataset folder (YOLO or ImageFolder).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the audit as JSON on stdout.")] = False,
    normal_classes: Annotated[Optional[str], typer.Option(help="Comma-separated YOLO class names that mean OK.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split made when val/test are missing.")] = 0,
    group_by: Annotated[Optional[str], typer.Option("--group-by", help=GROUP_BY_HELP)] = None,
    imgsz: Annotated[str, typer.Option(help="Model input HxW the defects are measured at (the models' default: 512x192).")] = "512x192",
    resize: Annotated[str, typer.Option("--resize", help="stretch | letterbox, as train's --resize.")] = "stretch",
    heatmap_stride: Annotated[int, typer.Option(help="Input pixels per heatmap cell, as train's --heatmap-stride.")] = 16,
) -> None:
    """Audit a dataset: counts per split, boxes per class, sizes, defect size at the input, label problems, leakage."""
    from edge_sealant.data.audit import audit_dataset
    from edge_sealant.data.loading import load_dataset

    input_size = parse_size(imgsz)
    check_heatmap_stride(heatmap_stride)
    dataset = load_dataset(data, normal_classes=split_list(normal_classes), seed=seed, group_by=group_by)
    report = audit_dataset(dataset, input_size=input_size, resize_mode=resize, stride=heatmap_stride)
    if as_json:
        print_json(report)
    else:
        render_audit(report, console)


@data_app.command("split")
def data_split(
    data: Annotated[Path, typer.Argument(help="YOLO data.yaml or dataset folder; all its images are pooled.")],
    out: Annotated[Path, typer.Argument(help="New folder for the split dataset (links by default).")],
    val: Annotated[float, typer.Option("--val", help="Fraction of images for val.")] = 0.15,
    test: Annotated[float, typer.Option("--test", help="Fraction of images for test.")] = 0.15,
    group_by: Annotated[Optional[str], typer.Option("--group-by", help=GROUP_BY_HELP)] = None,
    max_group: Annotated[Optional[int], typer.Option("--max-group", help=MAX_GROUP_HELP)] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same split).")] = 0,
    normal_classes: Annotated[Optional[str], typer.Option(help="Comma-separated YOLO class names that mean OK.")] = None,
    copy: Annotated[bool, typer.Option("--copy", help="Copy the files instead of linking them.")] = False,
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
    out: Annotated[Path, typer.Argument(help="Folder to write the YOLO dataset to.")],
    n: Annotated[int, typer.Option("--n", help="Number of images (all splits).")] = 400,
    defect_ratio: Annotated[float, typer.Option(help="Fraction of images with a defect.")] = 0.3,
    size: Annotated[str, typer.Option(help="Image size HxW (tall, like sealant line frames).")] = "320x112",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same images).")] = 0,
    defect_scale: Annotated[float, typer.Option("--defect-scale", help="Multiply every defect's size (0.05-4): small values make small defects on a large frame.")] = 1.0,
) -> None:
    """Generate a procedural sealant-bead dataset in YOLO format (the embedded default)."""
    from edge_sealant.data.synth import synthesize

    summary = synthesize(out, n=n, defect_ratio=defect_ratio, size=parse_size(size), seed=seed, defect_scale=defect_scale)
    console.print(f"wrote {summary['images']} images to {out} ({summary['counts']})")
    area = summary["defect_area"]
    if area:
        console.print(
            f"defect boxes: median {area['median']:.3%} of the frame (smallest {area['min']:.3%}, largest {area['max']:.3%})",
            highlight=False,
        )


# ----------------------------------------------------------------------- audit rendering
def render_audit(report: dict[str, Any], console: Any) -> None:
    """Compact rich rendering of :func:`edge_sealant.data.audit.audit_dataset`'s report."""
    from rich.text import Text

    console.print(Text.assemble(("dataset ", "bold"), (report["root"], "cyan"), f"  ({report['format']})"))
    console.print(_split_table(report["splits"]))
    if report["boxes_per_class"] and _class_names(report):
        console.print(_class_table(report))
    console.print(_size_table(report["image_size"]))
    if report.get("defect_scale"):
        console.print(_defect_scale_line(report["defect_scale"]), highlight=False)
    _print_listing(console, "Unreadable images", report["unreadable"], "red")
    _print_listing(console, "Label problems", report["label_problems"], "yellow")
    for kind in ("exact", "near"):
        _print_duplicates(console, report["duplicates"], kind)
    _print_footer(console, report)


def _defect_scale_line(scale: dict[str, Any]) -> str:
    height, width = scale["input_size"]
    sides = scale["side_px"]
    return (
        f"defects at input {height}x{width} ({scale['resize_mode']}): {scale['regions']} regions, side (square of equal area) "
        f"p10 {sides['p10']:.0f} / median {sides['median']:.0f} / p90 {sides['p90']:.0f} px; "
        f"{scale['below_cell']:.0%} smaller than one {scale['stride']}x{scale['stride']}-px heatmap cell (by area)"
    )


def _table(title: str | None = None) -> Any:
    from rich.table import Table

    return Table(title=title, title_justify="left", show_edge=False, pad_edge=False)


def _split_table(splits: dict[str, dict[str, int]]) -> Any:
    table = _table("Images per split")
    for col in ("split", "images", "normal", "defect", "defect share"):
        table.add_column(col, justify="left" if col == "split" else "right")
    total_n = total_d = 0
    for split, c in splits.items():
        n = c["normal"] + c["defect"]
        total_n += c["normal"]
        total_d += c["defect"]
        table.add_row(split, str(n), str(c["normal"]), str(c["defect"]), f"{c['defect'] / n:.1%}" if n else "-")
    total = total_n + total_d
    table.add_row("all", str(total), str(total_n), str(total_d), f"{total_d / total:.1%}" if total else "-", style="bold")
    return table


def _class_names(report: dict[str, Any]) -> list[str]:
    boxes = report["boxes_per_class"]
    return list(report["class_names"]) + sorted({c for v in boxes.values() for c in v} - set(report["class_names"]))


def _class_table(report: dict[str, Any]) -> Any:
    boxes, imgs = report["boxes_per_class"], report["images_per_class"]
    table = _table("Boxes (images) per class")
    table.add_column("class")
    for split in boxes:
        table.add_column(split, justify="right")
    normal = set(report["normal_classes"])
    for name in _class_names(report):
        cells = [f"{boxes[s].get(name, 0)} ({imgs.get(s, {}).get(name, 0)})" for s in boxes]
        table.add_row(f"{name} [dim](normal)[/]" if name in normal else name, *cells)
    return table


def _size_table(image_size: dict[str, dict[str, Any]]) -> Any:
    table = _table("Image sizes")
    for col in ("split", "min HxW", "max HxW", "channels"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, s in image_size.items():
        fmt = lambda hw: f"{hw[0]}x{hw[1]}" if hw else "-"  # noqa: E731
        table.add_row(split, fmt(s["min_hw"]), fmt(s["max_hw"]), ",".join(map(str, s["channels"])) or "-")
    return table


def _count(items: list[Any]) -> int:
    """Length of a capped list whose last entry reads '... and N more'."""
    if items and isinstance(items[-1], str) and items[-1].startswith("... and "):
        return len(items) - 1 + int(items[-1].split()[2])
    return len(items)


def _print_listing(console: Any, title: str, items: list[str], style: str) -> None:
    from rich.text import Text

    if not items:
        return
    real = [i for i in items if not str(i).startswith("... and ")]
    console.print(Text(f"{title} ({_count(items)})", style=f"bold {style}"))
    for item in real[:10]:
        console.print(Text(f"  {item}", style=style))
    if _count(items) > 10:
        console.print(Text(f"  ... {_count(items) - 10} more (--json lists them)", style="dim"))


def _short(path: str) -> str:
    """Table display: 'images/train/x.jpg' -> 'train/x.jpg' (the JSON keeps the full path)."""
    return path[len("images/") :] if path.startswith("images/") else path


def _print_duplicates(console: Any, dup: dict[str, Any], kind: str) -> None:
    from rich.text import Text

    pairs = [p for p in dup[kind] if isinstance(p, dict)]
    cross = dup[f"cross_split_{kind}"]
    within = dup.get(f"within_split_{kind}", len(pairs) - cross)
    if not pairs:
        console.print(Text(f"{kind.capitalize()} duplicates: none", style="green"))
        return
    style = "red" if cross else "yellow"
    title = f"{kind.capitalize()} duplicates: {cross} cross-split pairs, {within} within a split"
    if kind == "near":
        title += f" (pHash distance <= {dup.get('near_max_distance', '?')})"
    console.print(Text(title, style=f"bold {style}"))
    table = _table()
    table.add_column("a", overflow="fold")
    table.add_column("b", overflow="fold")
    if kind == "near":
        table.add_column("dist", justify="right")
    for p in pairs[:10]:
        row = [_short(p["a"]), _short(p["b"])] + ([str(p["distance"])] if kind == "near" else [])
        table.add_row(*row, style=style if p["cross_split"] else "dim")
    if cross + within > 10:
        table.caption = f"first 10 of {cross + within} (--json lists them)"
        table.caption_justify = "left"
    console.print(table)


def _print_footer(console: Any, report: dict[str, Any]) -> None:
    from rich.text import Text

    grouping = report.get("grouping") or {}
    if grouping:
        group_by = f", --group-by {grouping['group_by']}" if grouping.get("group_by") else ""
        console.print(Text(
            f"split made here: {grouping['groups']} groups kept whole (largest {grouping['largest_group']}, "
            f"{grouping['multi_image_groups']} with several images; near duplicates within pHash distance "
            f"{grouping['near_max_distance']}{group_by})",
            style="green",
        ))
    for note in report["notes"]:
        console.print(Text(f"note: {note}", style="dim"))
    for warning in report["warnings"]:
        console.print(Text(f"warning: {warning}", style="bold red" if "inflated" in warning else "yellow"))
