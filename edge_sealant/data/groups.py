"""Groups of images that must stay in one split, and stratified splits that respect them.

A group is a connected component of "the same part again" links:

* exact duplicates (identical bytes),
* near duplicates (perceptual-hash distance <= ``max_distance``, the audit's rule, so a split
  made here audits clean),
* an optional key from the file name (``group_by``: a regex whose first capture group, or
  whole match, names the part, tile or bead).

Near links chain: plain, uniform pictures sit a few bits from each other, and a chain of such
links can join unrelated images into one giant group that no split can hold in proportion.
Components larger than ``max_group_size`` are therefore re-linked with a tighter distance
(and tighter again) until every piece fits; exact and name links are never cut. What was cut
is reported, because those pairs may now land in different splits.

:func:`assign_groups` then deals whole groups to named shares (train/val/test, or K folds),
stratified by image label and spread over defect classes, seeded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from edge_sealant.data.fingerprint import NEAR_DUPLICATE_DISTANCE, fingerprints, near_pairs
from edge_sealant.data.types import DEFECT, NORMAL, Sample
from edge_sealant.errors import EdgeSealantError

MIN_GROUP_BOUND = 16
GROUP_BOUND_SHARE = 0.02  # default bound: 2% of the images, at least MIN_GROUP_BOUND


@dataclass
class Grouping:
    """Group id of every sample (ids 0..n_groups-1) and how the groups were made."""

    group_of: list[int]
    max_distance: int
    group_by: str | None
    max_group_size: int
    split_chains: list[dict[str, int]] = field(default_factory=list)  # oversized components cut apart
    cut_pairs: int = 0  # near pairs (<= max_distance) whose images ended in different groups

    @property
    def n_groups(self) -> int:
        return len(set(self.group_of))

    @property
    def members(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for index, group in enumerate(self.group_of):
            out.setdefault(group, []).append(index)
        return list(out.values())

    @property
    def largest(self) -> int:
        return max((len(m) for m in self.members), default=0)

    def summary(self) -> dict[str, Any]:
        """JSON-able description recorded in the audit, the split manifest and run.json."""
        return {
            "groups": self.n_groups,
            "largest_group": self.largest,
            "multi_image_groups": sum(len(m) > 1 for m in self.members),
            "near_max_distance": self.max_distance,
            "group_by": self.group_by,
            "max_group_size": self.max_group_size,
            "split_chains": list(self.split_chains),
            "cut_near_pairs": self.cut_pairs,
        }


class _UnionFind:
    def __init__(self, items: Sequence[int]):
        self.parent = {i: i for i in items}

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def components(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for item in self.parent:
            out.setdefault(self.find(item), []).append(item)
        return sorted(out.values(), key=lambda c: c[0])


def name_key_function(group_by: str | None):
    """Compile ``--group-by``: file name -> key (first capture group, else the whole match)."""
    if not group_by:
        return None
    try:
        pattern = re.compile(group_by)
    except re.error as exc:
        raise EdgeSealantError(f"--group-by {group_by!r} is not a regular expression ({exc})") from None

    def key(name: str) -> str | None:
        match = pattern.search(name)
        if match is None:
            return None
        return match.group(1) if pattern.groups else match.group(0)

    return key


def _hard_links(samples: Sequence[Sample], infos: Sequence[Any], group_by: str | None) -> list[tuple[int, int]]:
    """Links that are certain: identical bytes of decodable images, equal name keys."""
    links = []
    first_of: dict[tuple[str, str], int] = {}
    key_of = name_key_function(group_by)
    for index, (sample, info) in enumerate(zip(samples, infos)):
        keys = []
        if info.sha1 and not info.error:  # undecodable files are skipped later, never grouped
            keys.append(("sha1", info.sha1))
        if key_of is not None:
            name_key = key_of(sample.path.name)
            if name_key is not None:
                keys.append(("name", name_key))
        for key in keys:
            if key in first_of:
                links.append((first_of[key], index))
            else:
                first_of[key] = index
    return links


def _components(nodes: Sequence[int], hard: Sequence[tuple[int, int]], near: Sequence[tuple[int, int, int]], distance: int) -> list[list[int]]:
    members = set(nodes)
    uf = _UnionFind(nodes)
    for a, b in hard:
        if a in members and b in members:
            uf.union(a, b)
    for a, b, d in near:
        if d <= distance and a in members and b in members:
            uf.union(a, b)
    return uf.components()


def _bounded(component: list[int], hard, near, distance: int, bound: int, record: dict[str, int]) -> list[list[int]]:
    """Cut an oversized near-duplicate chain by tightening the distance until pieces fit."""
    if len(component) <= bound or distance < 0:
        return [component]
    record["distance"] = min(record.get("distance", distance), distance)
    out = []
    for piece in _components(component, hard, near, distance):
        out.extend(_bounded(piece, hard, near, distance - 1, bound, record))
    return out


def find_groups(
    samples: Sequence[Sample],
    max_distance: int = NEAR_DUPLICATE_DISTANCE,
    group_by: str | None = None,
    max_group_size: int | None = None,
    workers: int | None = None,
) -> Grouping:
    """Group ``samples`` by exact/near duplicates and an optional name key (see module doc).

    ``max_group_size`` bounds near-duplicate chains (default: 2% of the images, at least 16).
    """
    n = len(samples)
    if max_distance < 0 or max_distance > 64:
        raise EdgeSealantError(f"near-duplicate distance {max_distance} must be in [0, 64]")
    bound = max(MIN_GROUP_BOUND, math.ceil(GROUP_BOUND_SHARE * n)) if max_group_size is None else max_group_size
    if bound < 1:
        raise EdgeSealantError(f"--max-group {bound} must be >= 1")
    infos = fingerprints([s.path for s in samples], workers)
    hard = _hard_links(samples, infos, group_by)
    hashed = [k for k, info in enumerate(infos) if info.phash is not None]
    hashes = np.array([infos[k].phash for k in hashed], dtype=np.uint64)
    near = [(hashed[i], hashed[j], d) for i, j, d in near_pairs(hashes, max_distance)] if len(hashed) > 1 else []
    groups: list[list[int]] = []
    split_chains = []
    for component in _components(range(n), hard, near, max_distance):
        record: dict[str, int] = {}
        pieces = _bounded(component, hard, near, max_distance - 1, bound, record) if len(component) > bound else [component]
        if len(pieces) > 1:
            split_chains.append({"size": len(component), "pieces": len(pieces), "largest_piece": max(map(len, pieces)), "distance": record["distance"]})
        groups.extend(pieces)
    group_of = [0] * n
    for gid, members in enumerate(sorted(groups, key=lambda m: min(m))):
        for index in members:
            group_of[index] = gid
    cut = sum(group_of[a] != group_of[b] for a, b, _ in near)
    return Grouping(group_of, max_distance, group_by, bound, split_chains, cut)


# ------------------------------------------------------------------------------ assignment
def _quotas(count: int, shares: dict[str, float]) -> dict[str, int]:
    """Images of ``count`` per share, summing to ``count``.

    When the first share is the largest (train), the others are rounded half up and the
    first takes the rest: 10 defects at 15% give val and test 2 each, not 1, because a
    held-out split with one defect measures nothing. Otherwise (equal folds): largest remainder.
    """
    names = list(shares)
    if len(names) > 1 and all(shares[names[0]] > shares[n] for n in names[1:]):
        quotas = {n: int(math.floor(count * shares[n] + 0.5)) for n in names[1:]}
        if sum(quotas.values()) <= count:
            return {names[0]: count - sum(quotas.values()), **quotas}
    raw = {name: count * share for name, share in shares.items()}
    quotas = {name: int(math.floor(value)) for name, value in raw.items()}
    order = sorted(shares, key=lambda name: (-(raw[name] - quotas[name]), list(shares).index(name)))
    for name in order[: count - sum(quotas.values())]:
        quotas[name] += 1
    return quotas


def _stratum_quotas(sizes: dict[Any, int], label_quota: dict[str, int]) -> dict[Any, dict[str, int]]:
    """Round the strata x shares table so rows sum to stratum sizes and columns to the label's quotas.

    Controlled rounding: floors of the proportional counts, then the largest fractional parts
    in cells whose row and column are both still short.
    """
    total = sum(sizes.values())
    if not total:
        return {}
    expected = {st: {sh: n * label_quota[sh] / total for sh in label_quota} for st, n in sizes.items()}
    table = {st: {sh: int(math.floor(v)) for sh, v in row.items()} for st, row in expected.items()}
    row_short = {st: sizes[st] - sum(table[st].values()) for st in sizes}
    col_short = {sh: label_quota[sh] - sum(table[st][sh] for st in sizes) for sh in label_quota}
    cells = sorted(((expected[st][sh] - table[st][sh], i, st, sh) for i, st in enumerate(sizes) for sh in label_quota), key=lambda c: (-c[0], c[1]))
    for _, _, st, sh in cells + cells:  # the second pass fills what the fractional order could not
        if row_short[st] > 0 and col_short[sh] > 0:
            table[st][sh] += 1
            row_short[st] -= 1
            col_short[sh] -= 1
    return table


def assign_groups(
    samples: Sequence[Sample], grouping: Grouping, shares: dict[str, float], rng: np.random.Generator
) -> dict[str, list[int]]:
    """Deal whole groups to ``shares`` (fractions summing to 1): indices of samples per name.

    Stratified: each stratum (image label and defect classes of the group) gets its own
    quotas, and each group goes to the share furthest below its stratum's quota (relative to
    the quota), then below its label's quota; ties go to the larger share. So every class
    reaches every share in proportion and the label balance holds.
    """
    total = sum(shares.values())
    if any(share < 0 for share in shares.values()) or not math.isclose(total, 1.0, abs_tol=1e-9):
        raise EdgeSealantError(f"split shares {shares} must be >= 0 and sum to 1")
    labels = [s.label for s in samples]
    members = grouping.members
    keys = rng.random(len(members))
    strata: list[tuple[int, tuple[str, ...]]] = []
    for group in members:
        defects = sum(labels[i] for i in group)
        dominant = DEFECT if defects and 2 * defects >= len(group) else NORMAL
        strata.append((dominant, tuple(sorted({c for i in group for c in samples[i].defect_classes}))))
    # quotas per label (the headline balance) and per stratum of label and defect classes (the spread)
    quotas: dict[Any, dict[str, int]] = {label: _quotas(labels.count(label), shares) for label in (NORMAL, DEFECT)}
    for label in (NORMAL, DEFECT):
        sizes: dict[Any, int] = {}
        for group, stratum in zip(members, strata):
            if stratum[0] == label:
                sizes[stratum] = sizes.get(stratum, 0) + len(group)
        quotas.update(_stratum_quotas(sizes, quotas[label]))
    have: dict[Any, dict[str, int]] = {key: {name: 0 for name in shares} for key in quotas}
    rank = {name: i for i, name in enumerate(shares)}

    def need(key: Any, name: str) -> float:
        return (quotas[key][name] - have[key][name]) / max(1, quotas[key][name])

    out: dict[str, list[int]] = {name: [] for name in shares}
    for g in sorted(range(len(members)), key=lambda g: (strata[g], keys[g])):
        stratum, dominant = strata[g], strata[g][0]
        open_shares = [name for name in shares if quotas[dominant][name] > 0] or list(shares)
        target = max(open_shares, key=lambda name: (need(stratum, name), need(dominant, name), quotas[dominant][name], -rank[name]))
        out[target].extend(members[g])
        have[stratum][target] += len(members[g])
        for i in members[g]:
            have[labels[i]][target] += 1
    return {name: sorted(indices) for name, indices in out.items()}


def grouped_split(
    samples: Sequence[Sample],
    shares: dict[str, float],
    seed: int = 0,
    grouping: Grouping | None = None,
    **group_options: Any,
) -> tuple[dict[str, list[Sample]], Grouping]:
    """Samples per share name, no group crossing two shares (see :func:`assign_groups`)."""
    ordered = sorted(samples, key=lambda s: str(s.path))  # the result does not depend on input order
    grouping = grouping or find_groups(ordered, **group_options)
    indices = assign_groups(ordered, grouping, shares, np.random.default_rng(seed))
    return {name: [ordered[i] for i in idx] for name, idx in indices.items()}, grouping


def group_kfold(samples: Sequence[Sample], folds: int, seed: int = 0, **group_options: Any) -> tuple[list[list[Sample]], Grouping]:
    """``folds`` grouped, stratified folds of ``samples`` (each group in exactly one fold)."""
    if folds < 2:
        raise EdgeSealantError(f"--folds {folds} must be >= 2")
    if folds > len(samples):
        raise EdgeSealantError(f"--folds {folds} is more than the {len(samples)} images")
    shares = {f"fold{k}": 1.0 / folds for k in range(folds)}
    parts, grouping = grouped_split(samples, shares, seed=seed, **group_options)
    return [parts[f"fold{k}"] for k in range(folds)], grouping
