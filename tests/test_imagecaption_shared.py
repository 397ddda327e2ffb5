"""What the image-caption readers share (``sources/imagecaption.py``): caption checks, the bounded
image read, member-name safety, the record shape and the Rejected it builds; and
``imagecodec.decode_image``: every mode becomes the pixels PIL's own ``convert`` gives.

Written for the mutation run of docs/mutation-testing.md; ground truth is the arrays fed to PIL.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from trajcorpus.errors import SourceError
from trajcorpus.sources.imagecaption import (
    caption_episode,
    caption_text,
    load_image,
    read_bounded,
    rejected,
    safe_relative_name,
)
from trajcorpus.sources.imagecodec import decode_image


@pytest.mark.parametrize(("raw", "reason"), [
    ("a\udc80b", "caption is not valid UTF-8 (byte 0x80 at character 1)"),
    ("ab\udcff", "caption is not valid UTF-8 (byte 0xff at character 2)"),
    ("\udc7f", "caption is not valid UTF-8 (lone surrogate U+DC7F at character 0)"),
    ("x\udd00", "caption is not valid UTF-8 (lone surrogate U+DD00 at character 1)"),
    (b"ok \xc3", "caption is not valid UTF-8 (byte 0xc3 at byte 3: unexpected end of data)"),
    (5, "caption must be text, got int"),
    (None, "caption is missing"),
    (" \n", "empty caption"),
])
def test_bad_captions_name_the_file_field_and_reason(raw, reason):
    with pytest.raises(SourceError) as e:
        caption_text(raw, "gs://b/ann.json", "annotation 7")
    assert str(e.value) == f"gs://b/ann.json [annotation 7]: {reason}"


def test_captions_are_kept_exactly_as_stored():
    assert caption_text(" a café \n", "u", "k") == " a café \n"
    assert caption_text(memoryview(" a café".encode()), "u", "k") == " a café"


@pytest.mark.parametrize(("name", "safe"), [
    ("a/b.jpg", True), ("a/b:c.jpg", True), ("b.jpg", True),
    ("", False), ("/abs.jpg", False), ("\\abs.jpg", False), ("a\\b.jpg", False),
    ("C:x.jpg", False), ("c:/x.jpg", False), ("a//b.jpg", False), ("a/./b.jpg", False),
    ("./b.jpg", False), ("../b.jpg", False), ("a/..", False), ("a/", False),
])
def test_safe_relative_name(name, safe):
    assert safe_relative_name(name) is safe


def test_read_bounded_reads_up_to_the_limit_and_refuses_one_byte_more(tmp_path):
    (tmp_path / "exact").write_bytes(b"0123456789")
    (tmp_path / "over").write_bytes(b"0123456789A")
    assert read_bounded(str(tmp_path / "exact"), limit=10) == b"0123456789"
    with pytest.raises(SourceError) as e:
        read_bounded(str(tmp_path / "over"), limit=10)
    assert str(e.value) == f"{tmp_path}/over: image file larger than the limit of 10 bytes"
    with pytest.raises(SourceError) as e:
        read_bounded(str(tmp_path))
    assert str(e.value).startswith(f"{tmp_path}: cannot read image file: ")
    with pytest.raises(SourceError) as e:
        read_bounded(str(tmp_path / "absent"))
    assert str(e.value) == f"{tmp_path}/absent: image file not found"


def _encoded(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_grey_palette_and_rgba_images_become_rgb():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    assert np.array_equal(load_image(_encoded(Image.fromarray(grey)), "u"),
                          np.repeat(grey[..., None], 3, axis=2))
    palette = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    index = rng.integers(0, 4, (3, 4), dtype=np.uint8)
    p = Image.fromarray(index, mode="P")
    p.putpalette(palette.ravel().tolist())
    assert np.array_equal(load_image(_encoded(p), "u"), palette[index])
    rgba = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    assert np.array_equal(load_image(_encoded(Image.fromarray(rgba)), "u"), rgba[..., :3])


def test_a_caption_record_is_one_step_without_terminal_or_truncation():
    image = np.zeros((2, 3, 3), np.uint8)
    ep = caption_episode(dataset="d", task="t", agent="a", episode_id="e", order=(1, 2),
                         image=image, caption="a cat", source={"uri": "u"})
    assert ep.is_terminal is False and ep.is_truncated is False
    assert ep.observations["caption"].dtype == object
    assert ep.observations["caption"].tolist() == ["a cat"]
    assert ep.observations["image"].shape == (1, 2, 3, 3)


def test_rejected_takes_its_location_and_reason_from_the_error():
    err = SourceError("u", "bad", key="k")
    assert rejected("d", err, "t") == rejected("d", err, "t", kind="episode")
    r = rejected("d", err, "t", note="image 3")
    assert (r.dataset, r.location, r.reason, r.kind, r.task) == (
        "d", "u [k]", "bad (image 3)", "episode", "t")
    assert rejected("d", err, "t", kind="unit").kind == "unit"


# -- imagecodec.decode_image (every reader's image bytes) -----------------------------------------
def _file(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _modes() -> list[tuple[str, bytes, str]]:
    """(what, encoded file, the mode PIL's own convert must give) for every branch of decode."""
    rng = np.random.default_rng(1)
    palette = Image.fromarray(rng.integers(0, 4, (3, 4), dtype=np.uint8), mode="P")
    palette.putpalette(rng.integers(0, 256, 12, dtype=np.uint8).tolist())
    rgb = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8))
    la = Image.fromarray(rng.integers(0, 256, (3, 4, 2), dtype=np.uint8), mode="LA")
    i16 = Image.fromarray(rng.integers(0, 65536, (3, 4), dtype=np.uint16))
    return [
        ("P", _file(palette), "RGB"),
        ("P+transparency", _file(palette, transparency=2), "RGBA"),
        ("1", _file(Image.fromarray(rng.integers(0, 2, (3, 4)).astype(bool))), "RGB"),
        ("CMYK", _file(rgb.convert("CMYK"), "TIFF"), "RGB"),
        ("LAB", _file(rgb.convert("LAB"), "TIFF"), "RGB"),
        ("I;16", _file(i16), "L"),
        # a big-endian 16-bit TIFF (PIL opens it as I;16B; a little-endian one opens as I;16)
        ("I;16B", _file(Image.frombytes("I;16B", (4, 3), np.asarray(i16, dtype=">u2").tobytes()),
                        "TIFF"), "L"),
        # PIL's IM format keeps an explicitly little-endian 16-bit mode
        ("I;16L", _file(Image.frombytes("I;16L", (4, 3), np.asarray(i16, dtype="<u2").tobytes()),
                        "IM"), "L"),
        ("I", _file(i16.convert("I"), "TIFF"), "L"),
        ("F", _file(i16.convert("F"), "TIFF"), "L"),
        ("LA", _file(la), "RGBA"),
        ("L", _file(la.convert("L")), "L"),
        ("RGB", _file(rgb), "RGB"),
    ]


@pytest.mark.parametrize(("what", "data", "want"), _modes(), ids=[m[0] for m in _modes()])
def test_decode_converts_each_mode_as_pil_does(what, data, want):
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == what.split("+")[0]
        expected = np.asarray(img.convert(want), dtype=np.uint8)
    got = decode_image(data, "u")
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    with Image.open(io.BytesIO(data)) as img:
        assert np.array_equal(decode_image(data, "u", mode="RGB"),
                              np.asarray(img.convert("RGB")))


def test_decode_errors_name_where_and_why():
    with pytest.raises(SourceError) as e:
        decode_image(b"", "u", key="k", offset=3)
    assert str(e.value) == "u @ offset 3 [k]: empty image bytes"
    with pytest.raises(SourceError) as e:
        decode_image(b"not an image", "u", key="k")
    assert str(e.value).startswith("u [k]: cannot decode image: UnidentifiedImageError: ")
    data = _file(Image.new("RGB", (4, 3)))
    assert decode_image(data, "u", max_pixels=12).shape == (3, 4, 3)
    with pytest.raises(SourceError) as e:
        decode_image(data, "u", key="k", max_pixels=11)
    assert str(e.value) == "u [k]: image of 4x3 pixels exceeds the limit of 11 pixels"
    with pytest.raises(SourceError) as e:
        decode_image(_file(Image.new("RGB", (1, 12))), "u", max_pixels=11)
    assert str(e.value) == "u: image of 1x12 pixels exceeds the limit of 11 pixels"


def test_decode_refuses_a_decompression_bomb_from_its_header():
    """A PNG whose header claims 10000 x 9000 pixels (above PIL's own bomb warning threshold):
    refused from the header, before any pixel is decoded."""
    png = bytearray(_file(Image.new("L", (1, 1))))
    png[16:24] = (10000).to_bytes(4, "big") + (9000).to_bytes(4, "big")
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    with pytest.raises(SourceError) as e:
        decode_image(bytes(png), "u", max_pixels=10**9)
    assert str(e.value).startswith("u: decompression bomb refused: Image size (90000000 pixels) "
                                   "exceeds limit of ")
