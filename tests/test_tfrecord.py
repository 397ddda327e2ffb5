"""TFRecord framing and tf.train.Example parsing without TensorFlow, against TF-written fixtures."""

from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trajcorpus.errors import SourceError
from trajcorpus.sources import tfrecord
from trajcorpus.sources.tfrecord import (
    Example,
    detect_compression,
    frame_record,
    iter_records,
    masked_crc32c,
    parse_example,
    read_records,
)

RLU_EPISODES = "rlu_atari_episodes/Pong/run_1-00000-of-00001"
RLU_TRANSITIONS = "rlu_atari/Pong/run_1-00000-of-00002"
RLDS_SHARD = ("robot_stacking/rlds/dmc_jaco_stack_2_bricks_vision/1.0.0/"
              "dmc_jaco_stack_2_bricks_vision-train.tfrecord-00000")


# -- hand-written encoders (test side only) for forms our own serializer never emits -------------

def varint(x: int) -> bytes:
    x &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        out.append(b | (0x80 if x else 0))
        if not x:
            return bytes(out)


def field(number: int, wire: int, payload: bytes) -> bytes:
    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def unpacked_example(ints: list[int], floats: list[float], blobs: list[bytes]) -> bytes:
    """Example{features{feature{"i": int64_list, "f": float_list, "b": bytes_list}}}, unpacked."""
    i_list = b"".join(field(1, 0, varint(v)) for v in ints)
    f_list = b"".join(field(1, 5, struct.pack("<f", v)) for v in floats)
    b_list = b"".join(field(1, 2, v) for v in blobs)
    entries = (field(1, 2, field(1, 2, b"i") + field(2, 2, field(3, 2, i_list)))
               + field(1, 2, field(1, 2, b"f") + field(2, 2, field(2, 2, f_list)))
               + field(1, 2, field(1, 2, b"b") + field(2, 2, field(1, 2, b_list))))
    return field(1, 2, entries)


def example_bytes(**features) -> bytes:
    ex = Example()
    for key, values in features.items():
        feat = ex.features.feature[key]
        if isinstance(values, list) and values and isinstance(values[0], bytes):
            feat.bytes_list.value.extend(values)
        elif np.asarray(values).dtype.kind == "f":
            feat.float_list.value.extend(np.asarray(values, np.float32).tolist())
        else:
            feat.int64_list.value.extend(int(v) for v in values)
    return ex.SerializeToString()


def write(path, records, compress=False) -> str:
    data = b"".join(frame_record(r) for r in records)
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


# -- framing --------------------------------------------------------------------------------------

def test_masked_crc_matches_the_castagnoli_check_value():
    crc = 0xE3069283  # CRC-32C("123456789"), the standard check value
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_with_offsets(tmp_path, compress):
    payloads = [b"", b"x", bytes(range(256)) * 70, b"last"]
    uri = write(tmp_path / "f.tfrecord", payloads, compress)
    recs = list(iter_records(uri))
    assert [r.data for r in recs] == payloads
    sizes = [16 + len(p) for p in payloads]
    assert [r.offset for r in recs] == [sum(sizes[:i]) for i in range(len(payloads))]
    declared = "gzip" if compress else "none"
    assert list(read_records(uri, compression=declared)) == payloads


def test_plain_file_whose_length_starts_like_gzip_is_not_taken_for_gzip(tmp_path):
    payload = b"z" * 0x8B1F  # its uint64 LE length starts with the gzip magic 1f 8b
    uri = write(tmp_path / "f", [payload])
    with open(uri, "rb") as f:
        head = f.read(12)
    assert head[:2] == b"\x1f\x8b"
    assert detect_compression(head) == "none"
    assert list(read_records(uri)) == [payload]


def test_reads_tensorflow_written_gzip_and_plain_fixtures(fixtures):
    # Record counts from the fixtures' ground truth (TF's TFRecordWriter wrote them).
    assert sum(1 for _ in read_records(str(fixtures / RLU_TRANSITIONS))) == 1904
    assert sum(1 for _ in read_records(str(fixtures / RLU_EPISODES))) == 3
    assert sum(1 for _ in read_records(str(fixtures / RLDS_SHARD), compression="none")) == 4


def _corrupt(fixtures, tmp_path, rel, mutate, compress):
    """Copy a fixture file (gunzipped) and apply ``mutate`` to its record stream."""
    src = fixtures / rel
    data = bytearray(gzip.decompress(src.read_bytes()) if compress else src.read_bytes())
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    data = mutate(data, offsets)
    out = tmp_path / src.name
    out.write_bytes(gzip.compress(bytes(data)) if compress else bytes(data))
    return str(out), offsets


def test_bad_length_crc_names_file_offset_and_reason(fixtures, tmp_path):
    def mutate(d, offs):
        d[offs[2] + 9] ^= 0xFF
        return d
    uri, offs = _corrupt(fixtures, tmp_path, RLDS_SHARD, mutate, False)
    with pytest.raises(SourceError) as e:
        list(read_records(uri))
    assert e.value.uri == uri and e.value.offset == offs[2]
    assert f"@ offset {offs[2]}" in str(e.value) and "bad length CRC" in str(e.value)


def test_bad_data_crc_raises_or_is_recovered(fixtures, tmp_path):
    def mutate(d, offs):
        d[offs[1] + 500] ^= 0x01
        return d
    uri, offs = _corrupt(fixtures, tmp_path, RLU_EPISODES, mutate, True)
    with pytest.raises(SourceError, match="record 1: bad data CRC") as e:
        list(read_records(uri))
    assert e.value.offset == offs[1] and uri in str(e.value)
    recs = list(iter_records(uri, recover=True))
    assert [r.data is None for r in recs] == [False, True, False]
    assert "bad data CRC" in str(recs[1].error) and recs[2].offset == offs[2]


def test_truncated_record(fixtures, tmp_path):
    uri, offs = _corrupt(fixtures, tmp_path, RLDS_SHARD, lambda d, o: d[:o[3] + 1000], False)
    with pytest.raises(SourceError, match="record 3: truncated record") as e:
        list(read_records(uri))
    assert e.value.offset == offs[3]
    uri, _ = _corrupt(fixtures, tmp_path, RLDS_SHARD, lambda d, o: d[:o[1] + 5], False)
    with pytest.raises(SourceError, match=r"truncated record header \(5 of 12 bytes\)"):
        list(read_records(uri))


def test_truncated_gzip(fixtures, tmp_path):
    src = fixtures / RLU_EPISODES
    cut = tmp_path / src.name
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(SourceError, match="truncated gzip stream") as e:
        list(read_records(str(cut)))
    assert str(cut) in str(e.value) and e.value.offset is not None


def test_corrupt_gzip(fixtures, tmp_path):
    data = bytearray((fixtures / RLU_EPISODES).read_bytes())
    data[-6] ^= 0xFF  # the gzip trailer's CRC-32 of the whole stream
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="corrupt gzip stream: BadGzipFile: CRC check failed"
                       ) as e:
        list(read_records(str(bad)))
    assert str(bad) in str(e.value) and "record 3" in str(e.value)


def test_huge_declared_length_is_refused_before_any_allocation(tmp_path):
    length = struct.pack("<Q", 1 << 50)
    head = length + struct.pack("<I", masked_crc32c(length))
    path = tmp_path / "huge"
    path.write_bytes(frame_record(b"ok") + head + b"tiny")
    with pytest.raises(SourceError, match=r"declared length 1125899906842624 bytes too large") as e:
        list(read_records(str(path)))
    assert e.value.offset == 18 and "record 1" in str(e.value)
    # under the limit but lying about the size: read in chunks, reported as truncated
    with pytest.raises(SourceError, match="truncated record"):
        list(read_records(str(path), max_record_bytes=1 << 51))


def test_missing_file_and_bad_compression_are_source_errors(tmp_path):
    with pytest.raises(SourceError, match="cannot open"):
        list(read_records(str(tmp_path / "nope")))
    with pytest.raises(SourceError, match="unknown TFRecord compression 'zstd'"):
        list(read_records(str(tmp_path / "nope"), compression="zstd"))


def test_same_records_through_gcs(fixtures, gcs):
    uri = gcs.upload(fixtures / RLU_EPISODES, "tfrecord/run_1-00000-of-00001")
    assert list(read_records(uri)) == list(read_records(str(fixtures / RLU_EPISODES)))


# -- tf.train.Example -----------------------------------------------------------------------------

def test_message_classes_are_built_without_tensorflow():
    assert Example.DESCRIPTOR.full_name == "tensorflow.Example"
    assert "tensorflow" not in sys.modules


def test_parse_fixture_examples(fixtures):
    ex = parse_example(next(read_records(str(fixtures / RLU_EPISODES))))
    # rlu_atari_episodes ground truth: episode 0 has 900 steps, first actions 0,3,3,1,...
    assert ex["actions"].dtype == np.int64 and ex["actions"][:4].tolist() == [0, 3, 3, 1]
    assert ex["unclipped_rewards"].dtype == np.float32 and ex["unclipped_rewards"].shape == (900,)
    assert len(ex["observations"]) == 900 and ex["observations"][0][:8] == b"\x89PNG\r\n\x1a\n"
    assert ex["checkpoint_idx"].tolist() == [0] and ex["episode_idx"].tolist() == [0]
    ids = {int(parse_example(r)["episode_id"][0]) for r in read_records(
        str(fixtures / RLU_TRANSITIONS))}
    # ground truth: episode 24's id is negative as int64
    assert ids == {103277036177483907, 8764350082263115858, -1806530405790104957}


def test_unpacked_lists_parse_like_packed():
    ints = [0, 1, -1, 2**63 - 1, -(2**63), 300]
    floats = [0.5, -2.25, 1048576.0]
    ex = parse_example(unpacked_example(ints, floats, [b"a", b""]))
    assert ex["i"].tolist() == ints and ex["i"].dtype == np.int64
    assert ex["f"].tolist() == floats and ex["f"].dtype == np.float32
    assert ex["b"] == [b"a", b""]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=300),
       st.lists(st.floats(width=32, allow_nan=False), max_size=300))
def test_vectorised_decoding_equals_protobuf_values(ints, floats):
    data = example_bytes(i=np.array(ints, np.int64), f=np.array(floats, np.float32).reshape(-1))
    ex = parse_example(data)
    ref = Example.FromString(data).features.feature
    assert ex["i"].tolist() == list(ref["i"].int64_list.value) == ints
    assert ex["f"].tolist() == list(ref["f"].float_list.value)


def test_feature_without_a_list_is_empty():
    ex = Example()
    ex.features.feature["empty"].SetInParent()
    assert parse_example(ex.SerializeToString()) == {"empty": []}


def test_malformed_example_names_file_and_offset():
    with pytest.raises(SourceError, match=r"f\.tfrecord @ offset 42: not a valid tf\.train\.Example"):
        parse_example(b"\x0a\xff\xff\xff", uri="f.tfrecord", offset=42)


def test_varint_decoder_rejects_overlong_varints():
    with pytest.raises(ValueError, match="longer than 10 bytes"):
        tfrecord._decode_varints(memoryview(b"\x80" * 11 + b"\x01" + b"\x01" * 40))


def test_fixture_copy_helper_keeps_bytes(fixtures, tmp_path):
    # guards the corruption helper above: an identity mutation reads back unchanged
    uri, offs = _corrupt(fixtures, tmp_path, RLU_EPISODES, lambda d, o: d, True)
    assert len(offs) == 3 and list(read_records(uri)) == list(
        read_records(str(fixtures / RLU_EPISODES)))
