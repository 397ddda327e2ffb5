"""The card's sections about what came out and how to use it: tokens, an example, the files, how
to load and rebuild, the checks, uses and limitations, citations."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..tokenizers.scheme import NUM_BINS
from .checks import sequence_length
from .inputs import MODALITY_NAMES
from .markdown import _code, _pct, _table
from .metadata import files_for
from .shardio import ShardScan
from .snippets import loading_snippets

if TYPE_CHECKING:
    from .render import CardModel

__all__ = ["MAX_FILES_LISTED", "GATO_CITATION"]


MAX_FILES_LISTED = 40  # longer shard lists point at manifest.json instead


GATO_CITATION = ("Reed et al. A Generalist Agent. Transactions on Machine Learning Research, 2022. "
                 "arXiv:2205.06175")


# modalities that carry loss: Gato's text and actions; MGDT's return-to-go, action and reward
_TARGETS = ("text", "action", "return_to_go", "reward")


def _tokens(m: CardModel) -> str:
    parts = [
        "## Token statistics", "",
        "Tokens by modality are the audit's counts over the stored sequences (padding "
        "included). *Fill* is non-padding tokens / (sequences x L). *Target share* is the share "
        "of text and action tokens, the modalities that carry loss (Gato section 2.3); the "
        "*loss-masked share* and *prompt token share* are counted in the shards themselves "
        "(loss_mask and is_prompt are not in the audit) and the line under each table says how "
        "many shards were read for them.",
    ]
    for c in m.configs:
        length = sequence_length(c.cfg)
        rows = []
        # Gato's modality columns, plus any other scheme's codes the config has (MGDT's)
        names = list(dict.fromkeys([*MODALITY_NAMES, *(n for a in c.cfg.audit.values()
                                                        for n in a.tokens)]))
        for t, a in c.cfg.audit.items():
            total = sum(a.tokens.values())
            if not total and not a.sequences:
                continue  # e.g. "(unattributed)": rejected inputs only, see Filter evidence
            content = total - a.tokens.get("pad", 0)
            target = sum(a.tokens.get(n, 0) for n in _TARGETS)
            rows.append([f"`{t}`", *[a.tokens.get(n, 0) for n in names], total,
                         _pct(content, a.sequences * length) if length else "n/a",
                         _pct(target, total), a.sequences, a.prompted_sequences,
                         _pct(a.prompted_sequences, a.sequences)])
        parts += ["", f"### `{c.cfg.name}`", ""]
        if rows:
            parts.append(_table(["task", *names, "total", "fill", "target share",
                                 "sequences", "with prompt", "prompted share"], rows,
                                ["---"] + ["--:"] * (len(names) + 6)))
        parts += ["", _scan_line(c.scan, length)]
        if c.token_plot:
            parts += ["", f"![Token mix by modality for {c.cfg.name}]({c.token_plot})"]
    return "\n".join(parts)


def _scan_line(scan: ShardScan | None, length: int | None) -> str:
    if scan is None:
        return "Shard scan: no shards to read."
    scope = ("all shards" if scan.complete else
             f"the first {scan.files_scanned} of {scan.files_total} shards in manifest order "
             "(a sample: the rest were not read to keep card generation cheap)")
    loss_parts = ", ".join(f"{k} {v}" for k, v in scan.loss_by_modality.items() if v)
    return (f"Shard scan over {scope}: {scan.examples} examples, {scan.tokens} tokens; "
            f"loss-masked share {_pct(scan.loss_tokens, scan.tokens)} ({scan.loss_tokens} "
            f"tokens: {loss_parts or 'none'}); prompt token share "
            f"{_pct(scan.prompt_tokens, scan.tokens)} ({scan.prompt_tokens} tokens).")


def _example(m: CardModel) -> str:
    parts = ["## An example, decoded", "",
             "The first example of each config's first shard, turned back into frames, actions "
             "and captions with the public inverses (`decode_continuous`, patch grid positions), "
             "so a reader can see the tokens mean what they should."]
    for c in m.configs:
        parts += ["", f"### `{c.cfg.name}`", ""]
        if c.example_plot:
            meta = c.example_meta or {}
            parts += [_code(json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False),
                            "json"), "",
                      f"![An example sequence of {c.cfg.name} decoded]({c.example_plot})"]
        if c.example_note:
            parts += ["", c.example_note]
    return "\n".join(parts)


def _files(m: CardModel) -> str:
    parts = ["## Files and checksums", "",
             "Every file with its size and sha256 is in `manifest.json`; `trajcorpus verify OUT` "
             "re-hashes them all. `sha256sum` of a file must print the value below."]
    for c in m.configs:
        parts += ["", f"### `{c.cfg.name}`", ""]
        files = c.cfg.files
        rows = [[f"`{f.path}`", f.format, f.split, f.examples, f.bytes, f"`{f.sha256}`"]
                for f in files[:MAX_FILES_LISTED]]
        if rows:
            parts.append(_table(["file", "format", "split", "examples", "bytes", "sha256"], rows,
                                ["---", "---", "---", "--:", "--:", "---"]))
        if len(files) > MAX_FILES_LISTED:
            parts += ["", f"... {len(files) - MAX_FILES_LISTED} more files: see "
                      "[manifest.json](manifest.json)."]
        if not files:
            parts.append("No shard files recorded.")
    return "\n".join(parts)


def _loading(m: CardModel) -> str:
    names = [h.get("config_name") for h in m.hub_configs]
    first = names[0] if names else "CONFIG"
    listed = ", ".join(f"`{n}`" for n in names) or "none"
    fmts = {f.format for h in m.hub_configs for c in m.configs
            for group in files_for(h, c.cfg.files).values() for f in group}
    tar_configs = [c.cfg.name for c in m.configs
                   if any(f.format == "webdataset" for f in c.cfg.files)
                   and "webdataset" not in fmts]
    code = loading_snippets(first, tar_configs[0] if tar_configs else None, m.flat_patches)
    parts = [
        "## How to load", "",
        f"Configs: {listed}. The snippets run from inside this folder. With "
        "`datasets` (locally, or from the hub once uploaded with `trajcorpus publish OUT "
        "--repo ORG/NAME`):", "",
        _code(code["datasets"], "python"),
    ]
    if tar_configs:
        parts += ["", "The WebDataset (tar) shards of "
                  + ", ".join(f"`{n}`" for n in tar_configs)
                  + " load with the generic builder (`datasets` picks one builder per folder, "
                  "so the configs above point at the Parquet shards); pass "
                  "`features=webdataset_features()` so the types do not depend on the first "
                  "samples:", "", _code(code["webdataset"], "python")]
    parts += [
        "", "With PyTorch (needs `pip install torch`; shard-level split across nodes and "
        "DataLoader workers, seeded shuffle, resumable mid-epoch, sha256 checked against the "
        "manifest while reading):", "",
        _code(code["torch"], "python torch"), "",
        "With plain NumPy (e.g. JAX, one loader per host):", "",
        _code(code["numpy"], "python"), "",
        "Actions decode back to environment values with "
        "`trajcorpus.tokenizers.decode_continuous(tokens, mu_law=...)` (continuous; `mu_law` "
        "false for fields listed in `mu_law_exempt`) or as-is (discrete). `normalize=True` "
        "applies Gato's patch normalisation (x / 255 * 2 - 1, then / 4).",
    ]
    return "\n".join(parts)


def _rebuild(m: CardModel) -> str:
    parts = ["## How to rebuild", "",
             "Run the recorded command with the same code version, catalog entry (settings above) "
             "and input data; sequences, prompts and shard assignment are drawn from the seed and "
             "episode identities, so the shards come out byte-identical on any runner and worker "
             "count. Then compare with `trajcorpus verify OUT` (re-hashes every file against "
             "`manifest.json`). `trajcorpus card OUT` rewrites this card from the folder."]
    for c in m.configs:
        cmd = c.cfg.info.get("command")
        if isinstance(cmd, list):
            cmd = " ".join(str(x) for x in cmd)
        version = c.cfg.info.get("code_version")
        parts += ["", f"### `{c.cfg.name}`", "",
                  _code(cmd or f"# command not recorded; equivalent:\ntrajcorpus run --dataset "
                        f"{c.cfg.name} --seed {c.cfg.info.get('seed', 0)} "
                        "--output OUT", "bash"),
                  "", f"Code version: `{version or 'not recorded'}`."]
        if c.cfg.build:
            b = c.cfg.build
            parts += ["", f"Build cache: {b['reused_units']} of {b['units']} units reused (read "
                      "and tokenized by an earlier build with the same inputs, settings and code "
                      "version; the shards are the bytes a clean build writes)."]
    return "\n".join(parts)


def _checks(m: CardModel) -> str:
    parts = ["## Consistency checks", "",
             "Comparisons between the records (nothing is corrected; a failure means a record is "
             "wrong or the folder was changed after the run)."]
    for c in m.configs:
        parts += ["", f"### `{c.cfg.name}`", ""]
        for ch in c.checks:
            mark = "PASS" if ch.ok else "**FAIL**"
            parts.append(f"- {mark}: {ch.what}" + (f" ({ch.detail})" if ch.detail else ""))
        if not c.checks:
            parts.append("- no records to compare")
    return "\n".join(parts)


def _uses_limits(m: CardModel) -> str:
    notes = []
    for c in m.configs:
        small = [t for t, a in c.cfg.audit.items() if a.filter_on and a.window == 1]
        if small:
            notes.append(f"`{c.cfg.name}`: tasks {', '.join(f'`{t}`' for t in small)} have fewer "
                         "than 20 episodes, so the window is a single episode and the expert "
                         "return is simply the best episode's return.")
        if c.scan is not None and not c.scan.complete:
            notes.append(f"`{c.cfg.name}`: the loss-masked and prompt token shares are measured "
                         f"on {c.scan.files_scanned} of {c.scan.files_total} shards.")
        if any(g.count for g in c.cfg.rejects):
            notes.append(f"`{c.cfg.name}`: {sum(g.count for g in c.cfg.rejects)} inputs were "
                         "rejected and are not in the corpus (see Filter evidence).")
    return "\n".join([
        "## Uses", "",
        "Pretraining or fine-tuning sequence models on control and vision-language data in one "
        "token space (a generalist agent in the style of Gato). Sequences are next-token "
        "prediction examples: train on positions with `loss_mask == 1`. Prompt tokens "
        "(`is_prompt == 1`) come from another episode of the same task and agent and are "
        "conditioning only. Not suited for estimating the source agents' performance: the return "
        "filter deliberately keeps only near-expert episodes.", "",
        "## Known limitations", "",
        "- The filter keeps episodes relative to the best window of the *stored* returns; for "
        "Atari these are sums of clipped rewards (the DQN Replay Dataset stores clipped rewards), "
        "not game scores.",
        f"- Continuous values are quantised to {NUM_BINS} bins after mu-law companding: the "
        "decoded "
        "value is within half a bin of the original in the companded domain, not exact.",
        "- Images are resized to the configured size (sides multiples of 16) before patching; "
        "fine detail below that resolution is lost.",
        "- Sequences cut at whole timesteps, so the first timestep of a sequence may start "
        "mid-episode; `meta` records the first and last step.",
        "- Licences are those of the sources (listed per config above); this card does not "
        "relicense them.",
        *[f"- {n}" for n in notes],
        "",
        "## Maintenance", "",
        "This folder is rebuilt, never edited: change the catalog or the code, rerun "
        "`trajcorpus run`, and the card is regenerated. The lineage of every example (source URI "
        "and offsets) is in its `meta`.",
    ])


def _citations(m: CardModel) -> str:
    cites = sorted({str(c.cfg.entry.get("citation")) for c in m.configs
                    if c.cfg.entry.get("citation")})
    return "\n".join(["## Citation", "", "Sources:", "",
                      *[f"- {c}" for c in cites], *([] if cites else ["- none recorded"]), "",
                      "Method:", "", f"- {GATO_CITATION}"])

