"""catalog.yaml validation: the real file passes; each kind of bad catalog names entry, field, line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from trajcorpus.errors import CatalogError
from trajcorpus.schemas.catalog import load_catalog, parse_catalog
from trajcorpus.sources import registered_kinds

REPO = Path(__file__).resolve().parents[1]

GOOD_ENTRY = """\
version: 1
datasets:
  - id: a
    kind: minari
    uri: somewhere
    license: CC-BY-4.0
"""


def _parse(text: str) -> None:
    parse_catalog(textwrap.dedent(text), "cat.yaml")


def test_repo_catalog_is_valid_and_has_a_demo_per_kind():
    cat = load_catalog(str(REPO / "catalog.yaml"))
    ids = cat.ids()
    for kind in registered_kinds():
        assert f"demo-{kind}" in ids, f"missing demo entry for {kind}"
        entry = cat.get(f"demo-{kind}")
        assert entry.kind == kind and entry.demo
        assert Path(cat.uri_of(entry)).exists(), f"demo-{kind} points at a missing fixture"
    # the real public corpora named in issue 2 are catalogued with licences and citations
    kinds_real = {d.kind for d in cat if not d.demo}
    assert {"dqn-replay", "minari", "coco-captions", "rlds"} <= kinds_real
    assert all(d.license for d in cat)


def test_good_minimal_entry_gets_spec_defaults():
    cat = parse_catalog(GOOD_ENTRY)
    e = cat.get("a")
    assert e.filter.enabled and e.filter.fraction == 0.8
    assert e.filter.window_fraction == 0.1 and e.filter.max_window == 1000
    assert e.sequence.length == 1024 and e.sequence.prompt_probability == 0.25
    assert e.tokenize.text_model.vocab_size == 32000


@pytest.mark.parametrize(
    ("text", "line", "entry", "field", "reason"),
    [
        # unknown key inside an entry
        (GOOD_ENTRY + "    colour: blue\n", 7, "a", "colour", "unknown key"),
        # unknown nested key
        (GOOD_ENTRY + "    filter: {enabld: false}\n", 7, "a", "filter.enabld", "unknown key"),
        # missing required field (license)
        ("version: 1\ndatasets:\n  - id: b\n    kind: d4rl\n    uri: x\n", 3, "b", None,
         "missing required field"),
        # bad type
        (GOOD_ENTRY + "    mixture_weight: heavy\n", 7, "a", "mixture_weight", "number"),
        # a kind no reader registers
        (GOOD_ENTRY.replace("kind: minari", "kind: parquetish"), 4, "a", "kind",
         "unknown source kind 'parquetish' (known: coco-captions, d4rl,"),
        # a misspelt reader option: the reader's own Options model refuses it at catalog time
        (GOOD_ENTRY + "    options: {episodes_per_unit: 10, datasts: [x]}\n", 7, "a",
         "options.datasts", "unknown minari option 'datasts' (known: ['datasets', "),
        # a bad option value, named with its own line
        (GOOD_ENTRY + "    options:\n      datasets: [x]\n      episodes_per_unit: 0\n", 9, "a",
         "options.episodes_per_unit", "minari option 'episodes_per_unit': Input should be "
         "greater than or equal to 1"),
        # image size not a multiple of 16
        (GOOD_ENTRY + "    tokenize: {image_size: [84, 84]}\n", 7, "a", "tokenize.image_size",
         "multiples of 16"),
        # filter fraction out of range
        (GOOD_ENTRY + "    filter: {fraction: 1.5}\n", 7, "a", "filter.fraction", "less than"),
    ],
)
def test_bad_entries_name_entry_field_and_line(text, line, entry, field, reason):
    with pytest.raises(CatalogError) as info:
        _parse(text)
    err = info.value
    assert err.line == line, str(err)
    assert err.entry == entry, str(err)
    if field is not None:
        assert err.field == field, str(err)
    assert reason in str(err)
    assert str(err).startswith(f"cat.yaml:{line}: entry {entry!r}")


def test_duplicate_id_names_both_lines():
    text = GOOD_ENTRY + "  - id: a\n    kind: d4rl\n    uri: y\n    license: MIT\n"
    with pytest.raises(CatalogError) as info:
        _parse(text)
    assert info.value.line == 7 and info.value.entry == "a" and info.value.field == "id"
    assert "duplicate id (first defined at line 3)" in str(info.value)


def test_duplicate_key_in_mapping():
    with pytest.raises(CatalogError) as info:
        _parse(GOOD_ENTRY + "    uri: again\n")
    assert info.value.line == 7 and "duplicate key 'uri'" in str(info.value)


def test_invalid_yaml_names_line():
    with pytest.raises(CatalogError) as info:
        _parse(GOOD_ENTRY + "    description: a: b\n")
    assert info.value.line == 7 and "not valid YAML" in str(info.value)


def test_unknown_top_level_key():
    with pytest.raises(CatalogError) as info:
        _parse(GOOD_ENTRY + "extras: 1\n")
    assert info.value.field == "extras" and info.value.line == 7


def test_alias_bomb_is_refused_without_expanding():
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i-1}"] * 10) + "]")
    lines.append("datasets: *a8")
    with pytest.raises(CatalogError) as info:
        _parse("\n".join(lines))
    assert "alias bomb" in str(info.value)


def test_empty_and_non_mapping_catalogs():
    with pytest.raises(CatalogError, match="empty catalog"):
        _parse("")
    with pytest.raises(CatalogError, match="top level must be a mapping"):
        _parse("- 1\n- 2\n")


def test_python_tags_are_not_constructed(tmp_path):
    # yaml.safe_load only: a python/object tag is a YAML error, never executed.
    with pytest.raises(CatalogError, match="not valid YAML|could not determine a constructor"):
        _parse(GOOD_ENTRY + "    options: !!python/object/apply:os.system ['echo pwned']\n")


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(CatalogError, match="file not found"):
        load_catalog(str(tmp_path / "nope.yaml"))
    p = tmp_path / "bad.yaml"
    p.write_bytes(GOOD_ENTRY.encode() + b"# \xff\xfe\n")
    with pytest.raises(CatalogError, match="not UTF-8 at byte"):
        load_catalog(str(p))


def test_relative_uri_resolves_against_catalog_folder(tmp_path):
    p = tmp_path / "sub" / "cat.yaml"
    p.parent.mkdir()
    p.write_text(GOOD_ENTRY)
    cat = load_catalog(str(p))
    assert cat.uri_of(cat.get("a")) == str(tmp_path / "sub" / "somewhere")


def test_every_registered_kind_declares_its_facts_and_refuses_unknown_options():
    """The facts the manifest and card take from a kind (sources.base.Source) are all set, and
    every reader's Options model forbids an unknown key when the source is built."""
    from trajcorpus.errors import SourceError
    from trajcorpus.sources import get_source

    assert {"dqn-replay", "rlu-atari", "minari", "d4rl", "coco-captions", "img2dataset",
            "hf-image-parquet", "rlds"} <= set(registered_kinds())
    for kind in registered_kinds():
        cls = get_source(kind)
        assert cls.description and cls.task_categories and cls.tags, kind
        assert cls.Options.model_config.get("extra") == "forbid", kind
        with pytest.raises(SourceError, match=f"unknown {kind} option 'no_such_option'"):
            cls("x", options={"no_such_option": 1})
