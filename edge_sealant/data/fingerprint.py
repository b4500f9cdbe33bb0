"""Image fingerprints: SHA-1 of the bytes and a 64-bit perceptual hash of the picture.

The audit (leakage report), the grouped splitter and the leak-free metrics all ask the same
question, "is this the same part photographed again?", so they share one decode and one
hash per file. Reduced grey decodes (libjpeg DCT scaling) keep it cheap, sizes come from the
JPEG/PNG header where possible, and a small thread pool overlaps the work (cv2 releases the
GIL). Results are cached per process by (path, size, mtime), so ``evaluate`` loading a
dataset and then checking leakage decodes each file once.
"""

from __future__ import annotations

import hashlib
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edge_sealant.preprocess import jpeg_frame_header

# Bits of 64 in which two pHashes may differ and still be "the same picture". Four keeps the
# exposures of one magnetic tile together without chaining unrelated plain tiles (at 8, one
# chain of near links held 163 of 1344 images).
NEAR_DUPLICATE_DISTANCE = 4
_CACHE_LIMIT = 200_000


@dataclass(frozen=True)
class ImageInfo:
    """What one file is: its bytes' SHA-1, pHash, size and channels, or why it cannot be read."""

    sha1: str | None = None
    phash: int | None = None
    hw: tuple[int, int] | None = None
    channels: int | None = None
    error: str | None = None


def header_info(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, channels as IMREAD_UNCHANGED gives them) from a JPEG/PNG header, or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 26:
        width, height = struct.unpack(">II", data[16:24])
        color_type = data[25]
        channels = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}.get(color_type)  # OpenCV turns grey+alpha into BGRA
        if channels == 3 and color_type == 3 and b"tRNS" in data[: data.find(b"IDAT")]:
            channels = 4  # palette with transparency decodes as BGRA
        return (height, width, channels) if channels else None
    jpeg = jpeg_frame_header(data)
    if jpeg is None:
        return None
    height, width, components = jpeg
    return height, width, 1 if components == 1 else 3  # CMYK/YCCK decode to BGR


def perceptual_hash(grey: np.ndarray) -> int:
    """64-bit pHash: low 8x8 DCT frequencies of a 32x32 thumbnail against their median."""
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def _grey_of_unknown_header(buffer: np.ndarray) -> tuple[np.ndarray | None, tuple[int, int] | None, int | None]:
    full = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if full is None:
        return None, None, None
    hw, channels = full.shape[:2], 1 if full.ndim == 2 else full.shape[2]
    if full.dtype != np.uint8:
        full = cv2.normalize(full, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if full.ndim == 2:
        return full, hw, channels
    if full.shape[2] >= 3:
        return cv2.cvtColor(np.ascontiguousarray(full[:, :, :3]), cv2.COLOR_BGR2GRAY), hw, channels
    return np.ascontiguousarray(full[:, :, 0]), hw, channels


def inspect_file(path: Path) -> ImageInfo:
    """Hash and decode one file; never raises (the reason goes to ``error``)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return ImageInfo(error=f"cannot read ({exc.strerror or exc})")
    sha1 = hashlib.sha1(data).hexdigest()
    if not data:
        return ImageInfo(sha1=sha1, error="empty file")
    buffer = np.frombuffer(data, dtype=np.uint8)
    header = header_info(data)
    hw = channels = None
    try:
        if header is not None:
            hw, channels = (header[0], header[1]), header[2]
            short = min(header[0], header[1])
            flag = cv2.IMREAD_REDUCED_GRAYSCALE_4 if short >= 256 else cv2.IMREAD_REDUCED_GRAYSCALE_2 if short >= 128 else cv2.IMREAD_GRAYSCALE
            grey = cv2.imdecode(buffer, flag)
        else:
            grey, hw, channels = _grey_of_unknown_header(buffer)
    except cv2.error:
        grey = None
    if grey is None or grey.size == 0:
        return ImageInfo(sha1=sha1, error="cannot decode")
    return ImageInfo(sha1=sha1, phash=perceptual_hash(grey), hw=hw, channels=channels)


_cache: dict[tuple[str, int, int], ImageInfo] = {}


def _cached_inspect(path: Path) -> ImageInfo:
    try:
        stat = os.stat(path)
    except OSError:
        return inspect_file(path)
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    info = _cache.get(key)
    if info is None:
        info = inspect_file(path)
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[key] = info
    return info


def fingerprints(paths: Sequence[Path], workers: int | None = None) -> list[ImageInfo]:
    """:class:`ImageInfo` of every path, in order (decoded in a small thread pool, cached)."""
    if not paths:
        return []
    workers = workers or max(2, min(4, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_cached_inspect, paths, chunksize=16))


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[values.view(np.uint8)].reshape(*values.shape, 8).sum(axis=-1)


def near_pairs(hashes: np.ndarray, max_distance: int, block: int = 512) -> list[tuple[int, int, int]]:
    """Pairs (i, j, distance), i < j, whose 64-bit hashes differ in <= max_distance bits."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    out: list[tuple[int, int, int]] = []
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block]
        dist = popcount(rows[:, None] ^ hashes[None, start:])
        ii, jj = np.nonzero(dist <= max_distance)
        keep = jj > ii  # columns start at `start`, so jj > ii means j > i
        for i, j in zip(ii[keep].tolist(), jj[keep].tolist()):
            out.append((start + i, start + j, int(dist[i, j])))
    return out
