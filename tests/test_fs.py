"""The URI table: local paths, memory:// and gs:// (a real emulator) behave alike."""

from __future__ import annotations

import pytest

from trajcorpus import fs


@pytest.fixture
def trees(tmp_path, gcs):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.bin").write_bytes(b"A" * 10)
    (tmp_path / "d" / "sub" / "b.bin").write_bytes(b"B" * 3)
    local = str(tmp_path / "d")
    gs = gcs.upload(local, "fs-test/d")
    mem = "memory://fs-test/d"
    for rel, data in (("a.bin", b"A" * 10), ("sub/b.bin", b"B" * 3)):
        with fs.open_uri(f"{mem}/{rel}", "wb") as f:
            f.write(data)
    return {"local": local, "gs": gs, "memory": mem}


@pytest.mark.parametrize("scheme", ["local", "gs", "memory"])
def test_same_behaviour_across_schemes(trees, scheme):
    root = trees[scheme]
    assert fs.exists(fs.join(root, "a.bin"))
    assert not fs.exists(fs.join(root, "zzz"))
    assert fs.size(fs.join(root, "a.bin")) == 10
    with fs.open_uri(fs.join(root, "sub/b.bin")) as f:
        assert f.read() == b"BBB"
    # listings give back full URIs in the root's own spelling (scheme and all), each one openable
    assert fs.listdir(root) == [fs.join(root, "a.bin"), fs.join(root, "sub")]
    files = list(fs.walk_files(root))
    assert files == [fs.join(root, "a.bin"), fs.join(root, "sub/b.bin")]
    for u, data in zip(files, [b"A" * 10, b"B" * 3], strict=True):
        with fs.open_uri(u) as f:
            assert f.read() == data
    assert fs.glob(fs.join(root, "*.bin")) == [fs.join(root, "a.bin")]


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported URI scheme 'tape'"):
        fs.open_uri("tape://x/y")


def test_rename_and_remove_local(tmp_path):
    src = tmp_path / "x.tmp"
    src.write_text("1")
    fs.rename(str(src), str(tmp_path / "x"))
    assert (tmp_path / "x").read_text() == "1" and not src.exists()
    fs.remove(str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_rename_on_gcs_is_copy_and_delete(gcs):
    src = "gs://trajcorpus-test/fs-test/r.tmp"
    with fs.open_uri(src, "wb") as f:
        f.write(b"payload")
    fs.rename(src, "gs://trajcorpus-test/fs-test/r")
    assert not fs.exists(src)
    with fs.open_uri("gs://trajcorpus-test/fs-test/r") as f:
        assert f.read() == b"payload"
