"""Image decoding and resizing shared by training, evaluation and the runtime.

One implementation, no torch: the dataset used for training calls :func:`load_for_model`
and so does ``edge_sealant.runtime.Inspector``. An exported model therefore sees exactly the
pixels the trained one saw (the most common complaint against comparable tools is an export
that silently resizes or normalises differently).

Speed matters because line-camera frames are large (about 2532x824): decoding such a JPEG
costs more than the INT8 network. When the target size allows it we let libjpeg decode at
1/2, 1/4 or 1/8 scale (``IMREAD_REDUCED_*``, DCT-domain scaling) and resize only what is
left: a whole-factor box filter, then bilinear below 2x (see ``_shrink_then_interpolate``).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from edge_sealant.errors import EdgeSealantError

ImageSource = Union[str, Path, bytes, bytearray, memoryview, np.ndarray]
BUFFER_TYPES = (bytes, bytearray, memoryview)

LETTERBOX_FILL = 114  # neutral grey, as in YOLO letterboxing
_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def jpeg_frame_header(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, colour components) from a JPEG's SOF marker, without decoding."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    size = len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 10 > size:
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return height, width, data[pos + 9]
        pos += 2 + length
    return None


def encoded_image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) read from a JPEG or PNG header without decoding, or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    header = jpeg_frame_header(data)
    return header[:2] if header else None


def fitted_size(src_hw: tuple[int, int], dst_hw: tuple[int, int], mode: str) -> tuple[int, int]:
    """Size the image content takes inside the model input (letterbox keeps aspect ratio)."""
    if mode == "stretch":
        return dst_hw
    scale = min(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    return max(1, round(src_hw[0] * scale)), max(1, round(src_hw[1] * scale))


def content_box(src_hw: tuple[int, int], dst_hw: tuple[int, int], mode: str) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the image content inside the model input.

    Stretch fills the input; letterbox centres the aspect-preserving resize on a grey canvas,
    exactly as :func:`resize` does. Label geometry and heatmap regions map through this box.
    """
    new_h, new_w = fitted_size(src_hw, dst_hw, mode)
    return (dst_hw[0] - new_h) // 2, (dst_hw[1] - new_w) // 2, new_h, new_w


def reduction_factor(src_hw: tuple[int, int], dst_hw: tuple[int, int], mode: str = "stretch") -> int:
    """Largest libjpeg scale (1, 2, 4, 8) that still leaves at least the target pixels."""
    want_h, want_w = fitted_size(src_hw, dst_hw, mode)
    for factor in (8, 4, 2):
        # libjpeg rounds reduced sizes up: ceil(src / factor).
        if -(-src_hw[0] // factor) >= want_h and -(-src_hw[1] // factor) >= want_w:
            return factor
    return 1


def decode(data: bytes, target_hw: tuple[int, int] | None = None, mode: str = "stretch", name: str = "image") -> np.ndarray:
    """Decode encoded bytes to BGR uint8 (grey and 16-bit images become 8-bit, 3 channels).

    With ``target_hw`` the decoder skips the resolution the resize would throw away.
    EXIF orientation is applied by OpenCV's decoder.
    """
    if not data:
        raise EdgeSealantError(f"{name}: empty file (0 bytes), not an image")
    factor = 1
    # Only JPEG gains: libjpeg scales in the DCT domain. For PNG and others OpenCV would decode
    # fully and then shrink with its own filter, i.e. pixels unlike our resize for no speed-up.
    if target_hw is not None and data[:2] == b"\xff\xd8":
        src = encoded_image_size(data)
        if src is not None:
            factor = reduction_factor(src, target_hw, mode)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, _REDUCED_FLAGS[factor])
        if image is not None and factor > 1 and target_hw is not None:
            # EXIF rotation can swap the axes the header promised; fall back to a full decode.
            want = fitted_size(image.shape[:2], target_hw, mode)
            if image.shape[0] < want[0] or image.shape[1] < want[1]:
                image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV asserts on some truncated or hostile files instead of returning None
        image = None
    if image is None or image.size == 0:
        raise EdgeSealantError(f"{name}: cannot decode image (corrupt or unsupported format)")
    return image


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise EdgeSealantError(f"{path}: cannot read ({exc.strerror or exc})") from None


def resize(image: np.ndarray, target_hw: tuple[int, int], mode: str = "stretch") -> np.ndarray:
    """Resize a HxWx3 uint8 image to ``target_hw`` by stretching or letterboxing."""
    dst_h, dst_w = target_hw
    src_h, src_w = image.shape[:2]
    new_h, new_w = fitted_size((src_h, src_w), target_hw, mode)
    if (new_h, new_w) != (src_h, src_w):
        image = _shrink_then_interpolate(image, new_h, new_w)
    if mode == "stretch":
        return image
    canvas = np.full((dst_h, dst_w, 3), LETTERBOX_FILL, dtype=np.uint8)
    top, left, _, _ = content_box((src_h, src_w), target_hw, mode)
    canvas[top : top + new_h, left : left + new_w] = image
    return canvas


def _shrink_then_interpolate(image: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """Box-filter by whole factors, then bilinear for the remaining factor (< 2).

    OpenCV's INTER_AREA is a fast box filter for whole-number factors but 3-10x slower for
    fractional ones (measured: 17 ms vs 6 ms on a 2532x824 frame). Averaging by the whole part
    first keeps thin defects from aliasing away; the last step, below 2x, is bilinear. The crop
    to a multiple of the factor drops at most factor-1 edge pixels.
    """
    src_h, src_w = image.shape[:2]
    factor_y, factor_x = max(1, src_h // new_h), max(1, src_w // new_w)
    if factor_y > 1 or factor_x > 1:
        height, width = src_h // factor_y * factor_y, src_w // factor_x * factor_x
        image = cv2.resize(
            image[:height, :width], (width // factor_x, height // factor_y), interpolation=cv2.INTER_AREA
        )
    if image.shape[:2] != (new_h, new_w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return image


def to_three_channels(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) uint8 to HxWx3 BGR; other shapes are refused."""
    shape = "x".join(map(str, image.shape))
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise EdgeSealantError(f"image array of shape {shape}: expected HxW (grey), HxWx3 (BGR) or HxWx4 (BGRA)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise EdgeSealantError(f"image array of shape {shape} is empty")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    return image


def load_for_model(
    source: ImageSource,
    target_hw: tuple[int, int],
    mode: str = "stretch",
    channel_order: str = "RGB",
) -> np.ndarray:
    """Decode (if needed), resize and reorder channels: the model's HxWx3 uint8 input.

    ``source`` is a path, encoded bytes (``bytes``, ``bytearray`` or ``memoryview``), or a
    decoded BGR (OpenCV convention) array. Every problem is one :class:`EdgeSealantError`.
    """
    return load_with_box(source, target_hw, mode, channel_order)[0]


def load_with_box(
    source: ImageSource,
    target_hw: tuple[int, int],
    mode: str = "stretch",
    channel_order: str = "RGB",
) -> tuple[np.ndarray, tuple[int, int, int, int], tuple[int, int]]:
    """:func:`load_for_model` plus where the image landed: its :func:`content_box` inside the
    input and the (height, width) of the source image, so label geometry maps in and heatmap
    regions map back to source pixels."""
    source_hw = None
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8:
            raise EdgeSealantError(f"image array must be uint8, got {source.dtype}")
        image = to_three_channels(source)
    elif isinstance(source, (*BUFFER_TYPES, str, Path)):
        name = "image bytes" if isinstance(source, BUFFER_TYPES) else str(source)
        data = bytes(source) if isinstance(source, BUFFER_TYPES) else read_bytes(source)
        image = decode(data, target_hw, mode, name=name)
        source_hw = encoded_image_size(data)  # the full size, before any reduced-scale decode
    else:
        raise EdgeSealantError(f"cannot read an image from {type(source).__name__}: give a path, encoded bytes or a uint8 array")
    source_hw = _oriented(source_hw, image.shape[:2])
    # A reduced JPEG decode keeps the aspect ratio (to a pixel), so the box is the same as
    # the full-size image's.
    box = content_box(image.shape[:2], target_hw, mode)
    image = resize(image, target_hw, mode)
    if channel_order == "RGB":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image), box, source_hw


def _oriented(header_hw: tuple[int, int] | None, decoded_hw: tuple[int, int]) -> tuple[int, int]:
    """The header's size, turned like the decoded image (EXIF rotation swaps the axes)."""
    if header_hw is None:
        return int(decoded_hw[0]), int(decoded_hw[1])
    if (header_hw[0] > header_hw[1]) != (decoded_hw[0] > decoded_hw[1]) and header_hw[0] != header_hw[1]:
        return int(header_hw[1]), int(header_hw[0])
    return int(header_hw[0]), int(header_hw[1])
