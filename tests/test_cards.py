"""The dataset card: counts match the audit record, the YAML is what the hub and `datasets` read,
every plot exists and is a PNG, the bytes are stable, and the decoded example means what it should.

The output folder is built by ``test_cards_synth.build_out`` with the real shard writers and an audit
computed independently (SPEC section 3 written out plainly) from known returns.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from test_cards_synth import (
    CAPTIONS,
    L_ATARI,
    atari_example,
    build_out,
    color_image,
    continuous_tokens,
    mujoco_example,
    pong_frames,
    vl_example,
)
from trajcorpus.cards import write_card
from trajcorpus.cards.decode import assemble_images, decode_example
from trajcorpus.cards.metadata import glob_regex, license_id, size_category
from trajcorpus.errors import ShardError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cardout") / "OUT"
    expected = build_out(root)
    readme = write_card(str(root))
    return root, expected, Path(readme).read_text(encoding="utf-8")


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _config_block(section: str, config: str) -> str:
    start = section.index(f"### `{config}`")
    end = section.find("\n### ", start + 1)
    return section[start:end if end != -1 else None]


def _table_rows(block: str) -> dict[str, list[str]]:
    """First cell -> cells of each row of the block's first Markdown table (header and rule
    excluded)."""
    rows: dict[str, list[str]] = {}
    lines: list[str] = []
    for ln in block.splitlines():
        if ln.startswith("|"):
            lines.append(ln)
        elif lines:
            break
    for ln in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
        rows[cells[0].strip("`")] = cells
    return rows


# --- counts --------------------------------------------------------------------------------------

def test_filter_evidence_matches_the_audit_record(out_dir):
    root, expected, text = out_dir
    section = _section(text, "Filter evidence")
    for config in ("demo-atari", "demo-mujoco", "demo-captions"):
        on_disk = json.loads((root / "audit" / f"{config}.json").read_text())
        assert on_disk == expected[config]["audit"]
        rows = _table_rows(_config_block(section, config))
        assert set(rows) == set(on_disk)
        for task, a in on_disk.items():
            r = rows[task]
            assert int(r[1]) == a["episodes_total"]
            if a["window"] is None:
                assert r[2] == "off" and r[3] == r[4] == r[5] == ""
            else:
                assert int(r[2]) == a["window"]
                assert int(r[3]) == a["best_window_start"]
                assert float(r[4]) == a["expert_return"]  # exact: printed with repr
                assert float(r[5]) == a["threshold"]
            assert [int(x) for x in r[6:10]] == [a["read"], a["rejected"], a["filtered"],
                                                 a["kept"]]


def test_summary_totals_match_the_audit_and_manifest(out_dir):
    root, expected, text = out_dir
    rows = _table_rows(_section(text, "Summary"))
    manifest = json.loads((root / "manifest.json").read_text())
    for config in ("demo-atari", "demo-mujoco", "demo-captions"):
        a = expected[config]["audit"].values()
        r = rows[config]
        assert [int(x) for x in r[3:9]] == [
            sum(x["read"] for x in a), sum(x["rejected"] for x in a),
            sum(x["filtered"] for x in a), sum(x["kept"] for x in a),
            sum(x["sequences"] for x in a), sum(sum(x["tokens"].values()) for x in a)]
        files = [f for f in manifest["files"] if f["config"] == config]
        assert int(r[9]) == len(files)
        assert f"({sum(f['bytes'] for f in files)} B)" in r[10]


def test_token_statistics_match_the_audit_and_the_shards(out_dir):
    _, expected, text = out_dir
    section = _section(text, "Token statistics")
    block = _config_block(section, "demo-atari")
    rows = _table_rows(block)
    audit = expected["demo-atari"]["audit"]
    assert "(unattributed)" not in rows  # rejected inputs only: no tokens to show
    for task in ("Pong", "Breakout"):
        tokens = audit[task]["tokens"]
        r = rows[task]
        names = ["pad", "text", "image", "discrete", "continuous", "separator", "action"]
        assert [int(x) for x in r[1:8]] == [tokens[n] for n in names]
        assert int(r[8]) == sum(tokens.values())
        fill = 100 * (sum(tokens.values()) - tokens["pad"]) / (audit[task]["sequences"] * L_ATARI)
        assert r[9] == f"{fill:.2f}%"
        assert int(r[11]) == audit[task]["sequences"]
        assert int(r[12]) == audit[task]["prompted_sequences"]
    # loss-masked and prompt shares are counted on the examples themselves
    exs = expected["demo-atari"]["examples"]
    loss = sum(int(ex["loss_mask"].sum()) for ex in exs)
    prompt = sum(int(ex["is_prompt"].sum()) for ex in exs)
    total = sum(len(ex["tokens"]) for ex in exs)
    assert f"Shard scan over all shards: {len(exs)} examples, {total} tokens" in block
    assert f"loss-masked share {100 * loss / total:.2f}% ({loss} tokens: action {loss})" in block
    assert f"prompt token share {100 * prompt / total:.2f}% ({prompt} tokens)" in block


def test_rejected_inputs_are_grouped_by_reason(out_dir):
    _, expected, text = out_dir
    block = _config_block(_section(text, "Filter evidence"), "demo-atari")
    assert "**Rejected inputs:** 4, grouped by reason" in block
    table = block[block.index("| task | kind | reason |"):]
    lines = [ln for ln in table.splitlines() if ln.startswith("| `")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]
    got = {(c[0].strip("`"), c[1], c[2].replace("\\|", "|"), int(c[3])) for c in cells}
    assert got == {
        ("(unattributed)", "SourceError", "unreadable checkpoint", 1),
        ("Pong", "SourceError", "truncated gzip member", 2),
        ("Pong", "EpisodeError", "field 'rewards': non-finite | NaN", 1),
    }
    assert "`Pong/1/replay_logs/$store$_reward_ckpt.2.gz @ offset 44`" in block
    assert "**Rejected inputs:** none" in _config_block(_section(text, "Filter evidence"),
                                                        "demo-captions")


def test_files_list_sizes_and_sha256_of_every_shard(out_dir):
    root, _, text = out_dir
    section = _section(text, "Files and checksums")
    manifest = json.loads((root / "manifest.json").read_text())
    for f in manifest["files"]:
        data = (root / f["path"]).read_bytes()
        row = _table_rows(_config_block(section, f["config"]))[f["path"]]
        assert row[5].strip("`") == hashlib.sha256(data).hexdigest() == f["sha256"]
        assert int(row[4]) == len(data) and int(row[3]) == f["examples"]


def test_settings_sources_and_rebuild_command_are_recorded(out_dir):
    _, _, text = out_dir
    src = _config_block(_section(text, "Sources"), "demo-atari")
    assert "`tests/fixtures/atari_dqn_replay`" in src and "CC-BY-4.0" in src
    assert "An Optimistic Perspective on Offline Reinforcement Learning" in src
    settings = _config_block(_section(text, "Processing settings"), "demo-atari")
    parsed = yaml.safe_load(settings.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert parsed["filter"] == {"enabled": True, "fraction": 0.8, "window_fraction": 0.1,
                                "max_window": 1000}
    assert parsed["sequence"]["length"] == L_ATARI and parsed["run"]["seed"] == 3
    assert parsed["run"]["code_version"] == "0.1.0"
    rebuild = _config_block(_section(text, "How to rebuild"), "demo-atari")
    assert ("trajcorpus run --catalog catalog.yaml --dataset demo-atari --output OUT --seed 3 "
            "--format both") in rebuild
    captions = _config_block(_section(text, "Processing settings"), "demo-captions")
    model = (out_dir[0] / "tokenizer" / "demo-captions.model").read_bytes()
    assert hashlib.sha256(model).hexdigest() in captions


def test_consistency_checks_pass_on_a_consistent_folder(out_dir):
    _, _, text = out_dir
    checks = _section(text, "Consistency checks")
    assert "**FAIL**" not in checks
    assert checks.count("PASS: tokens by modality counted in the shards = the audit's") == 3
    assert "PASS: the best window's mean return" in checks


def test_consistency_checks_report_a_tampered_record(out_dir, tmp_path):
    root = tmp_path / "OUT"
    shutil.copytree(out_dir[0], root)
    path = root / "audit" / "demo-atari.json"
    audit = json.loads(path.read_text())
    audit["Pong"]["kept"] += 1  # read no longer adds up; kept no longer matches episodes.jsonl
    audit["Pong"]["expert_return"] += 0.5
    path.write_text(json.dumps(audit))
    text = Path(write_card(str(root))).read_text()
    block = _config_block(_section(text, "Consistency checks"), "demo-atari")
    assert "**FAIL**: read = rejected + filtered + kept for every task (fails for Pong)" in block
    assert "**FAIL**: episodes marked kept in episodes.jsonl = the audit's kept count (Pong)" \
        in block
    assert re.search(r"\*\*FAIL\*\*: the best window's mean return .* \(Pong\)", block)
    # the card shows the record as it is, never a corrected number
    row = _table_rows(_config_block(_section(text, "Filter evidence"), "demo-atari"))["Pong"]
    assert int(row[9]) == audit["Pong"]["kept"]


# --- YAML metadata -------------------------------------------------------------------------------

def test_yaml_metadata_is_what_the_hub_reads(out_dir):
    from huggingface_hub import DatasetCard

    root, expected, text = out_dir
    card = DatasetCard(text)
    data = card.data.to_dict()
    assert data["license"] == ["cc-by-4.0", "cc0-1.0"]
    assert data["task_categories"] == ["image-to-text", "reinforcement-learning"]
    assert data["size_categories"] == ["n<1K"]
    assert {"trajcorpus", "atari", "mujoco", "image-captioning"} <= set(data["tags"])
    from trajcorpus.shards import hub_configs, read_manifest

    assert data["configs"] == hub_configs(read_manifest(str(root)))
    infos = {d["config_name"]: d for d in data["dataset_info"]}
    for config in ("demo-atari", "demo-mujoco", "demo-captions"):
        split = infos[config]["splits"][0]
        assert split["name"] == "train"
        assert split["num_examples"] == len(expected[config]["examples"])
        names = [f["name"] for f in infos[config]["features"]]
        assert {"tokens", "modality", "loss_mask", "local_position", "is_prompt", "patches",
                "patch_position", "meta"} <= set(names)


def test_datasets_parses_the_card_and_loads_every_config(out_dir, tmp_path):
    from datasets import load_dataset
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    root, expected, text = out_dir
    data = DatasetCard(text).data
    configs = MetadataConfigs.from_dataset_card_data(data)
    assert set(configs) == {"demo-atari", "demo-mujoco", "demo-captions"}
    infos = DatasetInfosDict.from_dataset_card_data(data)
    assert infos["demo-atari"].splits["train"].num_examples == 7
    assert infos["demo-atari"].features["tokens"].feature.dtype == "int32"
    for config, exs in ((c, expected[c]["examples"]) for c in configs):
        ds = load_dataset(str(root), config, split="train", streaming=True)
        got = next(iter(ds))
        first = min(exs, key=lambda e: e["__key__"])
        np.testing.assert_array_equal(np.asarray(got["tokens"], np.int32), first["tokens"])
        assert json.loads(got["meta"]) == json.loads(first["meta"])
    # a full (non-streaming) load verifies num_examples against the card's dataset_info
    full = load_dataset(str(root), "demo-mujoco", split="train", cache_dir=str(tmp_path))
    assert full.num_rows == len(expected["demo-mujoco"]["examples"])


def test_the_cards_loading_snippets_run(out_dir):
    root, expected, text = out_dir
    # datasets, webdataset tar, numpy ("python torch" blocks: tests/test_docs_run.py)
    blocks = re.findall(r"```python\n(.*?)```", _section(text, "How to load"), re.S)
    assert len(blocks) == 3 and "```python torch\n" in text
    for code in blocks:
        scope: dict = {}
        here = 'OUT = os.path.abspath(".")'
        assert here in code  # this folder: the snippets run from inside it
        exec(code.replace(here, f"OUT = {str(root)!r}")
             .replace("    ...", "    break"), scope)
    # the snippet shuffles: compare with the input example of the same key
    by_key = {e["__key__"]: e for e in expected["demo-atari"]["examples"]}
    first = by_key[scope["batch"]["__key__"][0]]
    np.testing.assert_array_equal(scope["batch"]["tokens"][0], first["tokens"])


# --- plots ---------------------------------------------------------------------------------------

def _links(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def test_every_linked_plot_exists_and_is_a_png(out_dir):
    from PIL import Image

    root, _, text = out_dir
    links = _links(text)
    assert sorted(links) == sorted([
        "card/demo-atari/returns-Breakout.png", "card/demo-atari/returns-Pong.png",
        "card/demo-atari/tokens.png", "card/demo-atari/example.png",
        "card/demo-captions/tokens.png", "card/demo-captions/example.png",
        "card/demo-mujoco/returns-Hopper-v5.png", "card/demo-mujoco/tokens.png",
        "card/demo-mujoco/example.png"])
    for rel in links:
        data = (root / rel).read_bytes()
        assert data.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 150
            assert "Software" not in im.info  # no tool/version text in the bytes
    on_disk = sorted(str(p.relative_to(root)) for p in (root / "card").rglob("*") if p.is_file())
    assert on_disk == sorted(links)


def test_returns_plot_draws_threshold_lines_and_kept_points(out_dir):
    """A dashed red threshold across the returns axes (one pixel row), another down the
    histogram (one pixel column), and kept episodes in blue."""
    root, _, _ = out_dir
    from PIL import Image

    im = np.asarray(Image.open(root / "card/demo-atari/returns-Pong.png").convert("RGB"))
    im = im.astype(int)
    reddish = (im[..., 0] > 150) & (im[..., 1] < 130) & (im[..., 2] < 130)
    assert reddish.sum(axis=1).max() > 300  # horizontal dashes over most of the left axes
    assert reddish.sum(axis=0).max() > 100  # vertical dashes across the histogram
    kept_blue = np.abs(im - [0x1F, 0x77, 0xB4]).sum(-1) < 40
    assert kept_blue.sum() > 50


# --- determinism ---------------------------------------------------------------------------------

def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and (p.name == "README.md" or "card" in p.parts)}


def test_same_folder_gives_identical_bytes(out_dir, tmp_path):
    root, _, _ = out_dir
    before = _tree(root)
    write_card(str(root))
    assert _tree(root) == before
    copy = tmp_path / "elsewhere"
    shutil.copytree(root, copy)
    shutil.rmtree(copy / "card")
    (copy / "README.md").unlink()
    (copy / "card").mkdir()
    (copy / "card" / "stale.png").write_bytes(PNG_MAGIC)  # from an older card: removed
    write_card(str(copy))
    assert _tree(copy) == before


def test_plots_do_not_depend_on_the_users_matplotlibrc(out_dir, tmp_path):
    root, _, _ = out_dir
    rc = tmp_path / "mplrc"
    rc.mkdir()
    (rc / "matplotlibrc").write_text("font.size: 20\nlines.linewidth: 5\naxes.facecolor: black\n"
                                     "savefig.dpi: 300\n")
    copy = tmp_path / "OUT"
    shutil.copytree(root, copy)
    code = f"from trajcorpus.cards import write_card; write_card({str(copy)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={"MPLCONFIGDIR": str(rc), "PATH": "/usr/bin:/bin",
                        "HOME": str(tmp_path), "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert _tree(copy) == _tree(root)


# --- the decoded example -------------------------------------------------------------------------

def test_decoded_atari_example_gives_back_frames_and_actions():
    ex = atari_example("k", "Pong-004", "Pong", 7, [2, 5], prompt=True)
    seq = decode_example(ex)
    assert [s.is_prompt for s in seq.steps] == [True, False, False]
    np.testing.assert_array_equal(seq.steps[0].images[0][..., 0], pong_frames(0, 1)[0])
    np.testing.assert_array_equal(np.stack([s.images[0][..., 0] for s in seq.steps[1:]]),
                                  pong_frames(7, 2))
    assert [s.actions.tolist() for s in seq.steps] == [[0], [2], [5]]
    assert all(s.action_kind == "discrete" for s in seq.steps)
    assert seq.pad == L_ATARI - 81 and seq.meta["first_step"] == 7


def test_decoded_continuous_values_are_within_half_a_bin():
    rng = np.random.default_rng(3)
    obs, act = rng.uniform(-1, 1, (2, 11)), rng.uniform(-1, 1, (2, 3))
    seq = decode_example(mujoco_example("m", obs, act), obs_mu_law=False, action_mu_law=False)
    half_bin = 1.0 / 1024
    for k, s in enumerate(seq.steps):
        assert np.abs(s.continuous_obs - obs[k]).max() <= half_bin + 1e-6
        assert np.abs(s.actions - act[k]).max() <= half_bin + 1e-6
        assert s.action_kind == "continuous"
    np.testing.assert_array_equal(continuous_tokens(seq.steps[0].actions), continuous_tokens(
        act[0]))


def test_decoded_captions_and_images_of_image_caption_pairs(tmp_path):
    import sentencepiece as spm

    from test_cards_synth import _text_model

    sp = spm.SentencePieceProcessor(model_proto=_text_model(CAPTIONS))
    images = [color_image(1), color_image(4)]
    ex = vl_example("v", images, [sp.encode(CAPTIONS[0]), sp.encode(CAPTIONS[3])])
    seq = decode_example(ex, text_decoder=sp.decode)
    assert [s.text for s in seq.steps] == [CAPTIONS[0], CAPTIONS[3]]
    for s, img in zip(seq.steps, images, strict=True):
        np.testing.assert_array_equal(s.images[0], img)
        assert s.action_kind == "none"


def test_assemble_images_splits_two_cameras_and_keeps_raster_order():
    a, b = np.arange(32 * 48, dtype=np.uint8).reshape(32, 48), np.full((16, 16), 9, np.uint8)
    from test_cards_synth import patchify

    pa_, qa = patchify(a)
    pb, qb = patchify(b)
    imgs = assemble_images(np.concatenate([pa_, pb]), np.concatenate([qa, qb]))
    assert len(imgs) == 2
    np.testing.assert_array_equal(imgs[0][..., 0], a)
    np.testing.assert_array_equal(imgs[1][..., 0], b)


# --- small pieces and errors ---------------------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("CC-BY-4.0", "cc-by-4.0"), ("Apache-2.0 (generated with dm_control)", "apache-2.0"),
    ("CC0-1.0 and public domain (see PROVENANCE.md)", "cc0-1.0"),
    ("other (Google CC3M terms; image rights with their owners)", "other"),
    ("Proprietary", "other"), ("", "unknown")])
def test_license_ids(text, want):
    assert license_id(text) == want


def test_size_categories_and_globs():
    assert [size_category(n) for n in (0, 999, 1000, 123_456, 10**12)] == [
        "n<1K", "n<1K", "1K<n<10K", "100K<n<1M", "n>1T"]
    rx = glob_regex("data/demo-atari/train-*.parquet")
    assert rx.match("data/demo-atari/train-00000-of-00002.parquet")
    assert not rx.match("data/demo-atari/sub/train-0.parquet")
    assert not rx.match("data/demo-atari/train-00000-of-00001.tar.gz")


def test_a_folder_without_manifest_is_refused(tmp_path):
    with pytest.raises(ShardError, match="manifest.json: no manifest: the folder is not a finished"):
        write_card(str(tmp_path))
    assert not (tmp_path / "README.md").exists()


def test_cli_card_writes_the_card_and_fails_cleanly(out_dir, tmp_path):
    from trajcorpus.cli import main

    root = tmp_path / "OUT"
    shutil.copytree(out_dir[0], root)
    (root / "README.md").unlink()
    assert main(["card", str(root)]) == 0
    assert (root / "README.md").read_bytes() == (out_dir[0] / "README.md").read_bytes()
    assert main(["card", str(tmp_path / "nothing")]) == 2


def test_card_on_gcs_equals_the_local_card(out_dir, gcs):
    from trajcorpus import fs

    root = out_dir[0]
    uri = gcs.upload(str(root), "cards/OUT")
    for p in list(fs.walk_files(fs.join(uri, "card"))) + [fs.join(uri, "README.md")]:
        fs.remove(p)
    readme = write_card(uri)
    with fs.open_uri(readme, "rb") as f:
        assert f.read() == (root / "README.md").read_bytes()
    with fs.open_uri(fs.join(uri, "card/demo-atari/example.png"), "rb") as f:
        assert f.read() == (root / "card/demo-atari/example.png").read_bytes()


# --- a real run of the Beam job ------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_run(demo_workspace):
    """The session's demo output (conftest), which holds demo-rlds among other configs."""
    return demo_workspace.out


def test_card_of_a_real_demo_run(demo_run, fixtures):
    """The RLDS demo through the real job: the card's filter evidence agrees with the fixture's
    independently computed returns, every check passes (of every config of the demo output), and
    the decoded example gives back the fixture's language instruction."""
    import sentencepiece as spm

    from trajcorpus.cards.inputs import load_inputs
    from trajcorpus.cards.shardio import first_example
    from trajcorpus.cards.writer import _mu_law

    out = demo_run
    text = (out / "README.md").read_text()
    truth = json.loads((fixtures / "robot_stacking/rlds/ground_truth.json").read_text())
    audit = json.loads((out / "audit/demo-rlds.json").read_text())
    (task, a), = audit.items()
    row = _table_rows(_config_block(_section(text, "Filter evidence"), "demo-rlds"))[task]
    returns = [e["return"] for e in truth["episodes"]]
    assert int(row[1]) == a["episodes_total"] == truth["num_episodes"] == len(returns)
    w = max(1, min(1000, len(returns) // 10))
    best = max(sum(returns[j:j + w]) / w for j in range(len(returns) - w + 1))
    assert int(row[2]) == w
    assert float(row[4]) == a["expert_return"] == pytest.approx(best, rel=1e-6)
    assert int(row[9]) == a["kept"] == sum(r >= a["threshold"] for r in returns)
    assert "**FAIL**" not in _section(text, "Consistency checks")
    for rel in _links(text):
        assert (out / rel).read_bytes().startswith(PNG_MAGIC)
    assert f"card/demo-rlds/returns-{task}.png" in _links(text)
    assert "text decoded with `tokenizer/demo-rlds.model` (sha256 checked)" in text

    cfg = load_inputs(str(out)).configs["demo-rlds"]
    from trajcorpus.cards.checks import primary_files

    ex = first_example(str(out), primary_files(cfg))
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer/demo-rlds.model"))
    obs_mu, act_mu = _mu_law(cfg)
    seq = decode_example(ex, obs_mu_law=obs_mu, action_mu_law=act_mu, text_decoder=sp.decode)
    meta = json.loads(ex["meta"])
    index = int(meta["episode_id"].rsplit(":", 1)[1])  # "{file}:{record}" of the RLDS reader
    episode = next(e for e in truth["episodes"] if e["episode_id"] == index)
    # this run's first example starts at its episode's first step, where the instruction is
    assert meta["first_step"] == 0 and not seq.steps[0].is_prompt
    assert seq.steps[0].text == episode["instruction"]
    assert all(len(s.images) >= 1 and s.images[0].shape[:2] == (80, 80) for s in seq.steps)

    before = _tree(out)
    write_card(str(out))
    assert _tree(out) == before


def test_rejection_groups_are_bounded(tmp_path, monkeypatch):
    from trajcorpus.cards import inputs

    monkeypatch.setattr(inputs, "MAX_REJECT_GROUPS", 2)
    (tmp_path / "audit").mkdir()
    rows = [{"task": "T", "kind": "SourceError", "reason": f"bad byte at offset {i}",
             "location": f"f @ {i}"} for i in range(5)]
    (tmp_path / "audit" / "c.rejected.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    groups = inputs._load_rejects(str(tmp_path), "c")
    assert sum(g.count for g in groups) == 5 and len(groups) == 3
    pooled = next(g for g in groups if g.reason == inputs.OTHER_REASONS)
    assert pooled.count == 3 and pooled.locations == ["f @ 2", "f @ 3", "f @ 4"]
