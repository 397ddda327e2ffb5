"""Minari reader: which datasets and episodes are read (discovery under a root, the ``datasets``
option, HDF5 groups and Arrow episode folders that are not episodes, units of whole episodes),
the metadata that names them, and each dataset's reference scores; on datasets written here as
minari 0.5 lays them out, from arrays we choose (the ground truth).

Written for the mutation run of sources/minari.py's planning and metadata
(docs/mutation-testing.md)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from test_source_minari_layouts import (
    BOX_ACT,
    POS_SPACE,
    _arrow_cols,
    _h5_episode,
    _write_h5,
    read,
    write_arrow,
)
from trajcorpus.errors import SourceError
from trajcorpus.sources import open_source
from trajcorpus.sources.minari import minari_references
from trajcorpus.sources.minari_spaces import leaf_kind


def _units(uri, **options):
    return open_source("minari", str(uri), options=options).units()


def _error(uri, **options) -> str:
    with pytest.raises(SourceError) as e:
        _units(uri, **options)
    return str(e.value)


def test_arrow_files_that_are_not_episode_parts_are_passed_over(tmp_path):
    """A folder whose name is not an episode id (a backup ``0old/``, sorted between episodes 0 and
    1) is skipped, not the end of the listing; a stray ``part-1.arrowX`` is not a part."""
    cols = {eid: _arrow_cols(n) for eid, n in ((0, 2), (1, 3), (2, 4))}
    folder = write_arrow(tmp_path / "ds", {k: [v] for k, v in cols.items()}, POS_SPACE, BOX_ACT)
    (folder / "data/0old").mkdir()
    (folder / "data/0old/part-0.arrow").write_bytes((folder / "data/1/part-0.arrow").read_bytes())
    (folder / "data/2/part-1.arrowX").write_bytes(b"not a part")
    (unit,) = _units(folder)
    assert unit.param("episodes") == ((0, ("part-0.arrow",)), (1, ("part-0.arrow",)),
                                      (2, ("part-0.arrow",)))
    eps = read(folder)
    assert [(e.order, e.length) for e in eps] == [((0,), 2), ((1,), 3), ((2,), 4)]


def test_a_dataset_with_no_episode_names_its_folder(tmp_path):
    folder = tmp_path / "ds"
    _write_h5(folder, {})
    assert _error(folder) == f"{folder}: no Minari episodes found"
    with h5py.File(folder / "data/main_data.hdf5", "a") as f:
        f.create_group("episode_x")  # not an episode group: still none
        f.create_group("episodes_1")
    assert _error(folder) == f"{folder}: no Minari episodes found"


def test_hdf5_episodes_in_id_order_and_units_of_whole_episodes(tmp_path):
    eps_in = {eid: _h5_episode(n) for eid, n in ((10, 2), (2, 3), (1, 4), (0, 5), (9, 2))}
    folder = tmp_path / "ds"
    _write_h5(folder, eps_in)
    units = _units(folder, episodes_per_unit=2)
    assert [(u.key, u.uri, u.index, u.param("episodes")) for u in units] == [
        ("t/ds-v0/episodes 0-1", f"{folder}/data/main_data.hdf5", 0, (0, 1)),
        ("t/ds-v0/episodes 2-9", f"{folder}/data/main_data.hdf5", 1, (2, 9)),
        ("t/ds-v0/episodes 10-10", f"{folder}/data/main_data.hdf5", 2, (10,))]
    assert all(u.param("dataset_dir") == str(folder) and u.param("backend") == "hdf5"
               for u in units)
    eps = read(folder, episodes_per_unit=2)
    assert [(e.order, e.length) for e in eps] == [((0,), 5), ((1,), 4), ((2,), 3), ((9,), 2),
                                                  ((10,), 2)]
    for e in eps:
        assert np.array_equal(e.observations["pos"], eps_in[e.order[0]]["observations/pos"][:-1])


def _tree(root: Path, rel: str, n: int = 2, **meta) -> Path:
    folder = root / rel
    _write_h5(folder, {0: _h5_episode(n)})
    if meta:
        path = folder / "data/metadata.json"
        doc = json.loads(path.read_text())
        doc.update(meta)
        doc = {k: v for k, v in doc.items() if v is not _DROP}
        path.write_text(json.dumps(doc))
    return folder


def test_discovery_walks_five_levels_sorted_and_never_inside_a_dataset(tmp_path):
    root = tmp_path / "root"
    _tree(root, "bX/ds-v0", 2, dataset_id="b/ds-v0")
    _tree(root, "a/1/2/3/ds-v0", 3, dataset_id="deep5")  # data/ five levels below the root
    _tree(root, "a/1/2/3/4/ds-v0", 4, dataset_id="deep6")  # six: not searched
    inner = _tree(root, "c/ds-v0", 5, dataset_id="outer")
    _tree(inner / "data", "nested-v0", 6, dataset_id="inside-data")  # under data/: not a dataset
    _tree(inner, "x/nested-v0", 7, dataset_id="beside-data")  # beside data/: not searched
    (root / "bX/file.txt").write_text("a file, not a folder")
    units = _units(root)
    assert [(u.param("dataset_dir"), u.param("agent")) for u in units] == [
        (str(root / "a/1/2/3/ds-v0"), "deep5"), (str(root / "bX/ds-v0"), "b/ds-v0"),
        (str(root / "c/ds-v0"), "outer")]
    assert [e.length for e in read(root)] == [3, 2, 5]
    assert [u.param("agent") for u in _units(root / "a")] == ["deep6", "deep5"]


def _not_found_text() -> str:
    return ("no Minari dataset found (expected folders with data/ and data/metadata.json up to "
            "5 levels below)")


def test_a_root_without_datasets_and_a_root_that_does_not_exist(tmp_path):
    (tmp_path / "empty/a/b").mkdir(parents=True)
    assert _error(tmp_path / "empty") == f"{tmp_path}/empty: {_not_found_text()}"
    assert _error(tmp_path / "absent") == f"{tmp_path}/absent: not found"


def test_the_datasets_option_picks_folders_in_the_order_given(tmp_path):
    root = tmp_path / "root"
    _tree(root, "a/one-v0", 2, dataset_id="one")
    _tree(root, "b/two-v0", 3, dataset_id="two")
    _tree(root, "c/three-v0", 4, dataset_id="three")
    units = _units(root, datasets=["c/three-v0", "a/one-v0"])
    assert [(u.param("dataset_dir"), u.index) for u in units] == [
        (str(root / "c/three-v0"), 0), (str(root / "a/one-v0"), 1)]
    assert [e.agent for e in read(root, datasets=["c/three-v0", "a/one-v0"])] == ["three", "one"]
    missing = root / "d/none-v0/data/metadata.json"
    assert _error(root, datasets=["d/none-v0"]) == (
        f"{missing}: missing Minari metadata file data/metadata.json (it names the back-end and "
        "the observation/action spaces)")


def test_a_dataset_folder_is_recognised_by_its_metadata(tmp_path):
    folder = _tree(tmp_path, "ds-v0")
    source_class = type(open_source("minari", str(folder)))
    assert source_class.is_single_dataset(str(folder))
    assert not source_class.is_single_dataset(str(tmp_path))
    (folder / "data/metadata.json").unlink()
    assert not source_class.is_single_dataset(str(folder))


def test_the_backend_named_by_the_metadata_is_the_one_read(tmp_path):
    folder = write_arrow(tmp_path / "ds", {0: [_arrow_cols(3)]}, POS_SPACE, BOX_ACT)
    (unit,) = _units(folder)
    assert (unit.uri, unit.param("backend")) == (f"{folder}/data", "arrow")
    _write_h5(folder, {0: _h5_episode(5)})  # both back-ends' files; metadata says hdf5
    (unit,) = _units(folder)
    assert (unit.uri, unit.param("backend")) == (f"{folder}/data/main_data.hdf5", "hdf5")
    assert [e.length for e in read(folder)] == [5]
    meta = json.loads((folder / "data/metadata.json").read_text())
    del meta["data_format"]  # minari's default back-end
    (folder / "data/metadata.json").write_text(json.dumps(meta))
    assert [e.length for e in read(folder)] == [5]


def test_reference_scores_per_task_from_the_first_dataset_id_that_has_both(tmp_path):
    root = tmp_path / "root"
    spec = json.dumps({"id": "Toy-v1"})
    _tree(root, "a/x-v0", dataset_id="z/expert-v0", env_spec=spec, ref_min_score=-3,
          ref_max_score=7.5)
    _tree(root, "b/y-v0", dataset_id="m/medium-v0", env_spec=spec, ref_min_score=1.25,
          ref_max_score=2)
    _tree(root, "c/z-v0", dataset_id="a/simple-v0", env_spec=spec, ref_min_score=0)  # one end
    _tree(root, "d/w-v0", dataset_id="b/other-v0", ref_min_score="low", ref_max_score=1)
    _tree(root, "e/v-v0", dataset_id="c/alone-v0", ref_min_score=0.5, ref_max_score=4)
    _tree(root, "f/u-v0", dataset_id="x/copy-v0", env_spec=spec, ref_min_score=0,
          ref_max_score=1)
    units = _units(root)
    refs = {"Toy-v1": {"random": 1.25, "expert": 2.0, "expert_kind": "expert",
                       "source": "Minari dataset metadata ref_min_score/ref_max_score "
                                 "(m/medium-v0)"},
            "c/alone-v0": {"random": 0.5, "expert": 4.0, "expert_kind": "expert",
                           "source": "Minari dataset metadata ref_min_score/ref_max_score "
                                     "(c/alone-v0)"}}
    assert minari_references(units) == refs
    assert type(open_source("minari", str(root))).own_references(units) == refs
    assert all(type(v) is float for r in minari_references(units).values()
               for v in (r["random"], r["expert"]))
    (root / "a/x-v0/data/metadata.json").write_text("{not json")  # unreadable: passed over
    (root / "b/y-v0/data/metadata.json").unlink()
    assert minari_references(units) == {"Toy-v1": {
        "random": 0.0, "expert": 1.0, "expert_kind": "expert",
        "source": "Minari dataset metadata ref_min_score/ref_max_score (x/copy-v0)"},
        "c/alone-v0": refs["c/alone-v0"]}


def test_references_of_a_dataset_copied_twice_or_without_its_id(tmp_path):
    root = tmp_path / "root"
    spec = json.dumps({"id": "Toy-v1"})
    _tree(root, "a/copy-v0", dataset_id="f/copy-v0", env_spec=spec, ref_min_score=0,
          ref_max_score=1)
    _tree(root, "b/copy-v0", dataset_id="f/copy-v0", env_spec=spec, ref_min_score=0,
          ref_max_score=2)  # an edited copy: the first folder's is kept
    assert minari_references(_units(root)) == {"Toy-v1": {
        "random": 0.0, "expert": 1.0, "expert_kind": "expert",
        "source": "Minari dataset metadata ref_min_score/ref_max_score (f/copy-v0)"}}
    folder = _tree(tmp_path / "other", "no-id-v0", env_spec=spec, ref_min_score=2,
                   ref_max_score=3, dataset_id=_DROP)
    assert minari_references(_units(folder)) == {"Toy-v1": {
        "random": 2.0, "expert": 3.0, "expert_kind": "expert",
        "source": f"Minari dataset metadata ref_min_score/ref_max_score ({folder})"}}


# -- the metadata: names, spaces, env_spec ---------------------------------------------------------
def _with_meta(tmp_path: Path, **changes) -> Path:
    folder = tmp_path / "ds"
    _write_h5(folder, {0: _h5_episode(3)})
    path = folder / "data/metadata.json"
    doc = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DROP:
            del doc[key]
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))
    return folder


_DROP = object()
_TEMPLATE = "{task}|{agent}|{dataset_id}|{env_id}"


def _names(folder: Path) -> tuple[str, str]:
    src = open_source("minari", str(folder), task_template=_TEMPLATE, agent_template=_TEMPLATE)
    (e,) = src.episodes()
    return e.task, e.agent


@pytest.mark.parametrize(("env_spec", "env_id"), [
    (json.dumps({"id": "Toy-v1", "entry_point": "x:y"}), "Toy-v1"),
    ({"id": "Obj-v2"}, "Obj-v2"),  # an object instead of a JSON string
    (json.dumps({"entry_point": "x:y"}), ""), ("null", ""), ("", ""), (None, ""),
])
def test_names_and_template_fields_from_env_spec_and_dataset_id(tmp_path, env_spec, env_id):
    folder = _with_meta(tmp_path, env_spec=env_spec)
    task = env_id or "t/ds-v0"
    assert _names(folder) == (f"{task}|t/ds-v0|t/ds-v0|{env_id}",) * 2


def test_a_dataset_without_its_id_is_named_by_its_folder(tmp_path):
    folder = _with_meta(tmp_path, dataset_id=_DROP)
    assert _names(folder) == (f"{folder}|{folder}|{folder}|",) * 2
    (e,) = open_source("minari", str(folder)).episodes()
    assert e.episode_id == f"{folder}/episode_0"


def test_spaces_given_as_objects_and_bad_spaces_name_their_field(tmp_path):
    folder = _with_meta(tmp_path, observation_space=POS_SPACE, action_space=BOX_ACT)
    (e,) = open_source("minari", str(folder)).episodes()
    assert e.observation_kinds == {"pos": "continuous", "mission": "text"}
    cases = [
        ({"action_space": None}, "[action_space]: missing field"),
        ({"observation_space": '{"type": '}, "[observation_space]: not a JSON space "
         "description: Expecting value (line 1, column 10)"),
        ({"observation_space": '{"dtype": "float32"}'},
         "[observation_space.type]: Field required (got dict)"),
        ({"action_space": json.dumps({"type": "Tuple", "subspaces": [BOX_ACT]})},
         "[action_space]: Tuple action spaces are not supported"),
        ({"action_space": json.dumps({"type": "Box", "dtype": "float32"})},
         "[action_space]: a Box space needs dtype and shape"),
        ({"observation_space": json.dumps({"type": "Dict"})},
         "[observation_space/action_space]: malformed space description: KeyError: "
         "'subspaces'"),
    ]
    for change, message in cases:
        folder = _with_meta(tmp_path / str(len(message)), **change)
        path = folder / "data/metadata.json"
        assert _error(folder) == f"{path} {message}", change


@pytest.mark.parametrize(("space", "kind"), [
    ({"type": "Text"}, "text"), ({"type": "Discrete"}, "discrete"),
    ({"type": "Box", "dtype": "uint8", "shape": [4, 5]}, "image"),
    ({"type": "Box", "dtype": "uint8", "shape": [4, 5, 1]}, "image"),
    ({"type": "Box", "dtype": "uint8", "shape": [4, 5, 3]}, "image"),
    ({"type": "Box", "dtype": "uint8", "shape": [4, 5, 4]}, "image"),
    ({"type": "Box", "dtype": "uint8", "shape": [4, 5, 2]}, "discrete"),
    ({"type": "Box", "dtype": "uint8", "shape": [4, 5, 3, 1]}, "discrete"),
    ({"type": "Box", "dtype": "uint8", "shape": [20]}, "discrete"),
    ({"type": "Box", "dtype": "int8", "shape": [4, 5]}, "discrete"),
    ({"type": "Box", "dtype": "bool", "shape": [2]}, "discrete"),
    ({"type": "Box", "dtype": "uint16", "shape": [4, 5, 3]}, "discrete"),
    ({"type": "Box", "dtype": "float32", "shape": [4, 5, 3]}, "continuous"),
    ({"type": "Box", "dtype": "float64", "shape": []}, "continuous"),
])
def test_leaf_kind_of_each_space(space, kind):
    assert leaf_kind(space, "here") == kind


@pytest.mark.parametrize(("space", "reason"), [
    ({"type": "Box", "shape": [2]}, "a Box space needs dtype and shape"),
    ({"type": "Box", "dtype": "float32"}, "a Box space needs dtype and shape"),
    ({"type": "Box", "dtype": "complex64", "shape": [2]},
     'unsupported space {"type": "Box", "dtype": "complex64", "shape": [2]}'),
    ({"type": "MultiBinary", "n": 3}, 'unsupported space {"type": "MultiBinary", "n": 3}'),
    ({"type": "Graph", "pad": "x" * 300},
     'unsupported space ' + json.dumps({"type": "Graph", "pad": "x" * 300})[:200]),
    ({"type": "Box", "dtype": "float64", "shape": [1 << 20, 1 << 20]},
     "declared shape [1048576, 1048576] of 8-byte values needs 8796093022208 bytes"),
])
def test_leaf_kind_refusals_name_the_space(space, reason):
    with pytest.raises(SourceError) as e:
        leaf_kind(space, "here")
    assert str(e.value).startswith(f"here{' [shape]' if 'declared' in reason else ''}: {reason}")
    if "declared" not in reason:
        assert str(e.value) == f"here: {reason}"


def test_a_dataset_without_its_id_picked_with_a_trailing_slash(tmp_path):
    folder = _tree(tmp_path / "root", "dsX", dataset_id=_DROP)
    (unit,) = _units(tmp_path / "root", datasets=["dsX/"])
    assert unit.param("agent") == str(folder)
    (e,) = read(tmp_path / "root", datasets=["dsX/"])
    assert (e.agent, e.episode_id) == (str(folder), f"{folder}/episode_0")


def test_an_oversized_metadata_file_names_itself(tmp_path):
    folder = _tree(tmp_path, "ds-v0")
    meta = folder / "data/metadata.json"
    with meta.open("wb") as f:  # sparse: 64 MiB + 1 without writing them
        f.truncate(64 * 1024 * 1024 + 1)
    assert _error(folder) == f"{meta}: larger than the limit of 67108864 bytes for Minari metadata"
