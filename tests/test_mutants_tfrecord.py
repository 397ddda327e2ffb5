"""TFRecord framing and Example parsing of ``sources/tfrecord.py`` at their edges: records above
the 16 MiB read chunk, a length at the limit, a length with its top bit set, every framing
error's exact text (plain and gzip), recovered records, packed lists whose length needs three
varint bytes, empty int64 lists. Files are framed and Examples hand-encoded (protobuf's wire
format) by the test-side encoders of ``adversarial/make_corpus.py`` (framing, with
``google_crc32c``) and ``test_tfrecord.py`` (varints, fields); the ground truth is the
bytes and values written. Written for issue 22's mutation testing (survivors of the first run).
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from adversarial.make_corpus import frame, masked_crc
from test_tfrecord import field, varint
from trajcorpus.errors import SourceError
from trajcorpus.sources import tfrecord
from trajcorpus.sources.tfrecord import detect_compression, iter_records, parse_example


def header(length: int) -> bytes:
    """A record's 12-byte length header (length and its masked CRC) alone."""
    return frame(b"", length=length)[:12]


def put(tmp_path, data: bytes, gz: bool = False, name: str = "f.tfrecord") -> str:
    p = tmp_path / name
    p.write_bytes(gzip.compress(data) if gz else data)
    return str(p)


def ld(number: int, payload: bytes) -> bytes:  # a length-delimited field
    return field(number, 2, payload)


def example(key: bytes, feature: bytes) -> bytes:
    return ld(1, ld(1, ld(1, key) + ld(2, feature)))


@pytest.mark.parametrize("gz", [False, True])
def test_records_larger_than_the_read_chunk(tmp_path, gz):
    big = bytes(range(256)) * ((tfrecord._CHUNK + 300) // 256)  # 16 MiB + 256 bytes
    small = b"after"
    uri = put(tmp_path, frame(big) + frame(small), gz)
    recs = list(iter_records(uri))
    assert [r.data == d for r, d in zip(recs, (big, small), strict=True)] == [True, True]
    assert [(r.index, r.offset, r.error) for r in recs] == [(0, 0, None),
                                                            (1, 12 + len(big) + 4, None)]
    cut = put(tmp_path, frame(big)[:tfrecord._CHUNK + 100], False, "cut.tfrecord")
    with pytest.raises(SourceError) as e:
        list(iter_records(cut))
    assert str(e.value) == (f"{cut} @ offset 0: record 0: truncated record: declares {len(big)} "
                            f"data bytes + 4 CRC bytes, only {tfrecord._CHUNK + 88} present")


def test_a_record_cut_inside_its_crc_counts_every_byte_present(tmp_path):
    uri = put(tmp_path, frame(b"abcdef")[:-2])
    with pytest.raises(SourceError) as e:
        list(iter_records(uri))
    assert str(e.value) == (f"{uri} @ offset 0: record 0: truncated record: declares 6 data "
                            "bytes + 4 CRC bytes, only 8 present")


def test_a_length_at_the_limit_is_read_and_a_top_bit_length_refused(tmp_path):
    uri = put(tmp_path, frame(b"12345"))
    assert [r.data for r in iter_records(uri, max_record_bytes=5)] == [b"12345"]
    huge = (1 << 63) + 5
    uri = put(tmp_path, header(huge) + b"x" * 8, name="h.tfrecord")
    with pytest.raises(SourceError) as e:
        list(iter_records(uri))
    assert str(e.value) == (f"{uri} @ offset 0: record 0: declared length {huge} bytes too large "
                            f"(limit {tfrecord.DEFAULT_MAX_RECORD_BYTES})")


def test_bad_length_crc_text(tmp_path):
    head = struct.pack("<Q", 7) + b"\x01\x02\x03\x04"
    uri = put(tmp_path, head + b"z" * 11)
    with pytest.raises(SourceError) as e:
        list(iter_records(uri, compression="none"))
    assert str(e.value) == (f"{uri} @ offset 0: record 0: bad length CRC (stored 0x04030201, "
                            f"computed 0x{masked_crc(head[:8]):08x}): corrupt or not a TFRecord file")


@pytest.mark.parametrize("gz, tail", [(False, " (0 bytes)"), (True, " in its gzip stream")])
def test_an_empty_file_is_named(tmp_path, gz, tail):
    uri = put(tmp_path, b"", gz)
    with pytest.raises(SourceError) as e:
        list(iter_records(uri, compression="gzip" if gz else "none"))
    assert str(e.value) == f"{uri}: empty TFRecord file: no records{tail}"


@pytest.mark.parametrize("gz", [False, True])
def test_framing_errors_say_when_offsets_are_in_the_gunzipped_stream(tmp_path, gz):
    uri = put(tmp_path, frame(b"ok") + b"\x01\x02\x03", gz)
    with pytest.raises(SourceError) as e:
        list(iter_records(uri))
    where = " (offset in the gunzipped stream)" if gz else ""
    assert str(e.value) == (f"{uri} @ offset 18: record 1: truncated record header (3 of 12 "
                            f"bytes){where}")


def test_truncated_gzip_text(tmp_path):
    p = tmp_path / "t.tfrecord.gz"
    p.write_bytes(gzip.compress(frame(b"a" * 100) * 3)[:-30])
    with pytest.raises(SourceError) as e:
        list(iter_records(str(p)))
    assert str(e.value).endswith(": truncated gzip stream (ends before its end-of-stream marker)"
                                 " (offset in the gunzipped stream)")


def test_recover_on_a_plain_file_yields_the_bad_record_and_goes_on(tmp_path):
    bad = bytearray(frame(b"bad!"))
    bad[-1] ^= 0xFF
    uri = put(tmp_path, frame(b"one") + bytes(bad) + frame(b"three"))
    recs = list(iter_records(uri, compression="none", recover=True))
    assert [(r.index, r.data) for r in recs] == [(0, b"one"), (1, None), (2, b"three")]
    assert recs[0].error is None and recs[2].error is None
    assert str(recs[1].error).startswith(f"{uri} @ offset 19: record 1: bad data CRC")


def test_open_and_compression_errors_name_the_file(tmp_path):
    with pytest.raises(SourceError) as e:
        list(iter_records("f.tfrecord", compression="zstd"))
    assert str(e.value) == "f.tfrecord: unknown TFRecord compression 'zstd' (known: auto, none, gzip)"
    missing = str(tmp_path / "missing")
    with pytest.raises(SourceError) as e:
        list(iter_records(missing))
    assert str(e.value).startswith(f"{missing}: cannot open TFRecord file: FileNotFoundError: ")


def test_auto_detection_by_the_header_crc_whichever_its_top_bit():
    # plain lengths whose first bytes are gzip's magic: found with both halves of the CRC range
    seen = set()
    for k in range(64):
        head = header(0x8B1F + (k << 16))
        seen.add(struct.unpack("<I", head[8:])[0] >> 31)
        assert detect_compression(head) == "none"
    assert seen == {0, 1}
    assert detect_compression(b"\x1f\x8b" + b"\x00" * 10) == "gzip"


def test_packed_lists_whose_length_needs_three_varint_bytes():
    ints = np.arange(300, 300 + 9000, dtype=np.int64)  # two varint bytes each: 18,000 bytes
    payload = b"".join(varint(int(v)) for v in ints)
    out = parse_example(example(b"i", ld(3, ld(1, payload))))
    np.testing.assert_array_equal(out["i"], ints)
    floats = np.linspace(-1, 1, 5000, dtype=np.float32)  # 20,000 bytes
    out = parse_example(example(b"f", ld(2, ld(1, floats.astype("<f4").tobytes()))))
    assert out["f"].dtype == np.float32 and out["f"].flags.writeable
    np.testing.assert_array_equal(out["f"], floats)


def test_an_empty_int64_list_is_int64_and_the_default_location():
    out = parse_example(example(b"x", ld(3, b"")))
    assert out["x"].dtype == np.int64 and out["x"].shape == (0,)
    with pytest.raises(SourceError) as e:
        parse_example(b"\x0a\xff\xff\xff")
    assert str(e.value).startswith("<example>: not a valid tf.train.Example: ")


def test_varints_of_exactly_eleven_bytes_are_refused():
    with pytest.raises(ValueError, match="^varint longer than 10 bytes$"):
        tfrecord._decode_varints(memoryview(b"\x80" * 10 + b"\x01" + b"\x01" * 40))


def test_a_feature_key_that_is_not_utf8_is_not_a_valid_example():
    # feature.proto is proto3: string fields (the map's keys) must be UTF-8, as TensorFlow checks
    with pytest.raises(SourceError) as e:
        parse_example(example(b"\xffkey", ld(3, b"")), uri="f", offset=3)
    assert str(e.value).startswith("f @ offset 3: not a valid tf.train.Example: ")
