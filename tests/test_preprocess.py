"""The one preprocessing function shared by training, evaluation and the runtime."""

import os

import cv2
import numpy as np
import pytest

from edge_sealant.card import ModelCard, parse_size
from edge_sealant.errors import EdgeSealantError
from edge_sealant.preprocess import (
    LETTERBOX_FILL,
    decode,
    encoded_image_size,
    load_for_model,
    reduction_factor,
    resize,
)


def smooth_frame(height, width, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def jpeg(image, quality=95):
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def test_header_sizes_without_decoding():
    image = smooth_frame(300, 100)
    assert encoded_image_size(jpeg(image)) == (300, 100)
    assert encoded_image_size(cv2.imencode(".png", image)[1].tobytes()) == (300, 100)
    assert encoded_image_size(b"not an image") is None


@pytest.mark.parametrize(
    "src, dst, mode, factor",
    [
        ((2532, 824), (512, 192), "stretch", 4),  # the customer frame at the default size
        ((2532, 824), (512, 208), "stretch", 2),  # 824 / 4 = 206 < 208
        ((2532, 824), (256, 96), "stretch", 8),
        ((300, 100), (512, 192), "stretch", 1),  # never decode below the target
        ((2532, 824), (512, 512), "letterbox", 4),  # content is only 512x167 inside the square
    ],
)
def test_reduction_factor(src, dst, mode, factor):
    assert reduction_factor(src, dst, mode) == factor


def test_reduced_decode_matches_full_decode_closely():
    frame = smooth_frame(1024, 352)
    data = jpeg(frame)
    fast = load_for_model(data, (256, 96), channel_order="BGR")
    slow = resize(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), (256, 96))
    assert fast.shape == (256, 96, 3)
    # DCT-domain scaling and pixel-domain averaging differ by about 1% of the range.
    assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 4.0


def test_png_path_bytes_and_array_agree(tmp_path):
    frame = smooth_frame(400, 160)
    path = tmp_path / "f.png"  # lossless, so the decoded array equals the frame
    cv2.imwrite(str(path), frame)
    from_path = load_for_model(path, (128, 48))
    from_bytes = load_for_model(path.read_bytes(), (128, 48))
    from_array = load_for_model(frame, (128, 48))
    assert np.array_equal(from_path, from_bytes)
    assert np.array_equal(from_path, from_array)


def test_channel_order_and_grey_input():
    bgr = np.zeros((64, 32, 3), np.uint8)
    bgr[..., 0] = 200  # blue
    rgb = load_for_model(bgr, (32, 16), channel_order="RGB")
    assert rgb[..., 2].min() == 200 and rgb[..., 0].max() == 0
    grey = load_for_model(np.full((64, 32), 77, np.uint8), (32, 16))
    assert grey.shape == (32, 16, 3) and (grey == 77).all()


def test_letterbox_keeps_aspect_and_pads():
    out = resize(np.full((100, 400, 3), 255, np.uint8), (200, 200), mode="letterbox")
    assert out.shape == (200, 200, 3)
    assert (out[100, :, 0] == 255).all()  # content row spans the width
    assert (out[0, :, 0] == LETTERBOX_FILL).all()  # padding above
    assert (out[:, 100] == 255).sum() // 3 == 50  # 100x400 -> 50x200 content


def test_thin_dark_line_survives_shrinking():
    """A 2-px defect line in a 2532-px frame must not alias away at 1/5 scale."""
    frame = np.full((2532, 824, 3), 200, np.uint8)
    frame[1000:1002, :] = 0
    small = resize(frame, (512, 192))
    assert small[:, :, 0].min() < 160


def test_corrupt_bytes_raise_one_line():
    with pytest.raises(EdgeSealantError, match="cannot decode"):
        decode(b"\xff\xd8garbage", name="bad.jpg")
    with pytest.raises(EdgeSealantError, match="cannot read"):
        load_for_model("/nonexistent/x.jpg", (32, 16))


def test_exif_orientation_is_applied(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    tall = np.zeros((80, 40, 3), np.uint8)
    tall[:10] = 255  # white band at the top
    image = pil.fromarray(tall)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    decoded = decode(path.read_bytes())
    assert decoded.shape[:2] == (40, 80)  # displayed upright: the frame became wide


def test_card_round_trips_through_metadata_and_json(tmp_path):
    card = ModelCard(model="efficientnet_lite0", input_size=(512, 192), threshold=0.37, defect_classes=["gap"])
    again = ModelCard.from_metadata(card.to_metadata())
    assert again == card
    card.save(tmp_path)
    assert ModelCard.load(tmp_path) == card
    with pytest.raises(EdgeSealantError, match="outside"):
        card.replace(threshold=1.5)
    with pytest.raises(EdgeSealantError, match="no edge-sealant metadata"):
        ModelCard.from_metadata({"producer": "someone else"})


@pytest.mark.parametrize("text, size", [("512x192", (512, 192)), ("224", (224, 224)), ("64,32", (64, 32))])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["big", "4x4", "1x2x3"])
def test_parse_size_rejects(text):
    with pytest.raises(EdgeSealantError, match="HxW"):
        parse_size(text)


# ------------------------------------------------------------------------------ bad input, one error type
@pytest.mark.parametrize(
    "source, message",
    [
        (b"", "empty file"),
        (bytearray(b"not an image"), "cannot decode"),
        (memoryview(b"\xff\xd8\xff\xe0 truncated"), "cannot decode"),
        (np.zeros((4, 4, 2), np.uint8), "expected HxW"),
        (np.zeros((4, 4, 3, 1), np.uint8), "expected HxW"),
        (np.zeros((0, 4, 3), np.uint8), "is empty"),
        (np.zeros((4, 4, 3), np.float32), "must be uint8"),
        (12345, "cannot read an image from int"),
    ],
)
def test_bad_sources_raise_one_line_errors(source, message):
    from edge_sealant.errors import EdgeSealantError
    from edge_sealant.preprocess import load_for_model

    with pytest.raises(EdgeSealantError, match=message) as caught:
        load_for_model(source, (32, 16))
    assert "\n" not in str(caught.value)


def test_zero_byte_file_and_buffer_types(tmp_path):
    import cv2

    from edge_sealant.errors import EdgeSealantError
    from edge_sealant.preprocess import load_for_model

    empty = tmp_path / "camera_wrote_nothing.jpg"
    empty.write_bytes(b"")
    with pytest.raises(EdgeSealantError, match="camera_wrote_nothing.jpg: empty file"):
        load_for_model(empty, (32, 16))
    ok, encoded = cv2.imencode(".png", np.full((20, 10, 3), 90, np.uint8))
    as_bytes = load_for_model(encoded.tobytes(), (32, 16))
    for buffer in (bytearray(encoded.tobytes()), memoryview(encoded.tobytes())):
        assert np.array_equal(load_for_model(buffer, (32, 16)), as_bytes)


def test_atomic_writes_keep_normal_permissions(tmp_path):
    """A model server running as another user must be able to read what we write."""
    from edge_sealant.card import atomic_write_text

    old = os.umask(0o022)
    try:
        fresh = tmp_path / "run.json"
        atomic_write_text(fresh, "{}")
        assert fresh.stat().st_mode & 0o777 == 0o644
        shared = tmp_path / "model.xml"
        shared.write_text("<net/>")
        shared.chmod(0o664)
        atomic_write_text(shared, "<net version='2'/>")  # e.g. set-threshold rewriting an IR
        assert shared.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)
