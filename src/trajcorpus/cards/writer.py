"""``write_card(out)``: OUT/README.md (YAML metadata + sections) and the PNGs under OUT/card/.

Called by every run after the manifest, and by ``trajcorpus card OUT`` on an existing folder. The
same folder always gives the same bytes: inputs are read in sorted order, figures are
deterministic, and plots of a previous card that no longer apply are removed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from .. import fs
from .checks import config_checks, primary_files
from .decode import decode_example
from .inputs import CardInputs, ConfigInputs, load_inputs
from .metadata import card_metadata, dump_yaml, hub_config_entries
from .plots import example_png, returns_png, token_mix_png
from .render import CardModel, ConfigCard, render_body
from .shardio import first_example, scan_files, scan_selection

__all__ = ["CARD_DIR", "write_card", "build_card", "slug"]

CARD_DIR = "card"  # the plots, relative to OUT


def slug(name: str, taken: set[str]) -> str:
    """A file-name-safe form of a task or config name, unique within ``taken``."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "x"
    s = base if base not in taken else f"{base}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    taken.add(s)
    return s


def _text_decoder(out: str, cfg: ConfigInputs) -> tuple[Callable[[list[int]], str] | None, str]:
    """A SentencePiece decoder for the config's text model if the folder holds it (hash-checked)."""
    model = cfg.info.get("text_model")
    rel = model.get("path") if isinstance(model, dict) else None
    want = cfg.info.get("tokenizer_sha256")
    if want is None and isinstance(model, dict):
        want = model.get("sha256")
    if not isinstance(rel, str) or not rel:
        return None, "the text model is not stored in this folder, so text is shown as token ids"
    uri = rel if "://" in rel or rel.startswith("/") else fs.join(out, rel)
    if not fs.exists(uri):
        return None, f"the text model `{rel}` is missing, so text is shown as token ids"
    with fs.open_uri(uri, "rb") as f:
        proto = f.read()
    if want and hashlib.sha256(proto).hexdigest() != want:
        return None, (f"the text model `{rel}` does not match its recorded sha256, so text is "
                      "shown as token ids")
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=proto)
    return (lambda ids: sp.decode(ids)), f"text decoded with `{rel}` (sha256 checked)"


def _mu_law(cfg: ConfigInputs) -> tuple[bool, bool]:
    tok = cfg.entry.get("tokenize") or {}
    on = bool(tok.get("mu_law", True))
    exempt = {str(x) for x in tok.get("mu_law_exempt") or ()}
    return on, on and not ({"actions", "action"} & exempt)


def _example(out: str, cfg: ConfigInputs, files: list, rel: str
             ) -> tuple[bytes | None, dict[str, Any] | None, str]:
    ex = first_example(out, files)
    if ex is None:
        return None, None, "No example: this config has no stored sequences."
    decoder, note = _text_decoder(out, cfg)
    obs_mu, act_mu = _mu_law(cfg)
    seq = decode_example(ex, obs_mu_law=obs_mu, action_mu_law=act_mu, text_decoder=decoder)
    first = seq.meta.get("first_step")
    png = example_png(cfg.name, seq, int(first) if isinstance(first, (int, float)) else None)
    src = f"Drawn from `{files[0].path if files else '?'}`, example `{ex.get('__key__', '?')}`"
    has_text = any(len(s.text_tokens) for s in seq.steps)
    return png, seq.meta, src + (f"; {note}." if has_text else ".")


def _config_card(out: str, cfg: ConfigInputs, cfg_slug: str,
                 pngs: dict[str, bytes]) -> ConfigCard:
    prim = primary_files(cfg)
    scan = scan_files(out, scan_selection(prim), len(prim)) if prim else None
    taken: set[str] = {"tokens", "example"}
    return_plots = {}
    for task, audit in cfg.audit.items():
        eps = cfg.episodes.get(task)
        if eps is None or len(eps.returns) == 0:
            continue
        if not audit.filter_on and float(eps.returns.min()) == float(eps.returns.max()):
            continue  # nothing to see: unfiltered records with one constant return
        rel = f"{CARD_DIR}/{cfg_slug}/returns-{slug(task, taken)}.png"
        pngs[rel] = returns_png(cfg.name, audit, eps)
        return_plots[task] = rel
    token_rel = None
    if any(sum(a.tokens.values()) for a in cfg.audit.values()):
        token_rel = f"{CARD_DIR}/{cfg_slug}/tokens.png"
        pngs[token_rel] = token_mix_png(cfg.name, cfg.audit)
    example_rel = f"{CARD_DIR}/{cfg_slug}/example.png"
    png, meta, note = _example(out, cfg, prim, example_rel)
    if png is not None:
        pngs[example_rel] = png
    return ConfigCard(cfg=cfg, scan=scan, checks=config_checks(cfg, scan),
                      return_plots=return_plots, token_plot=token_rel,
                      example_plot=example_rel if png is not None else None, example_meta=meta,
                      example_note=note)


def build_card(out: str) -> tuple[str, dict[str, bytes]]:
    """The card text and its PNGs (relative path -> bytes), without writing anything."""
    inputs: CardInputs = load_inputs(out)
    pngs: dict[str, bytes] = {}
    taken: set[str] = set()
    cards = [_config_card(out, cfg, slug(cfg.name, taken), pngs)
             for cfg in inputs.configs.values()]
    hub = hub_config_entries(inputs)
    examples = sum(f.examples for c in inputs.configs.values() for f in primary_files(c))
    meta = card_metadata(inputs, examples, hub)
    feature_names = {f.get("name") for d in meta.get("dataset_info", [])
                     for f in d.get("features", [])}
    model = CardModel(inputs=inputs, configs=cards, hub_configs=hub, title=meta["pretty_name"],
                      flat_patches="patches_shape" in feature_names)
    return "---\n" + dump_yaml(meta) + "---\n\n" + render_body(model), pngs


def _write_atomic(uri: str, data: bytes) -> None:
    """Never a half-written file under the final name. Object stores (gs://) publish an object
    only when its upload completes, so they are written in place; a rename there is a copy plus
    a delete (and gcsfs first tries an API the emulator lacks, with ~30 s of retries)."""
    if not fs.is_local(uri):
        with fs.open_uri(uri, "wb") as f:
            f.write(data)
        return
    tmp = uri + ".tmp"
    with fs.open_uri(tmp, "wb") as f:
        f.write(data)
    fs.rename(tmp, uri)


def _remove_stale(out: str, keep: set[str]) -> None:
    root = fs.join(out, CARD_DIR)
    if not fs.exists(root):
        return
    prefix = fs.strip_scheme(root).rstrip("/") + "/"
    for uri in list(fs.walk_files(root)):
        rel = CARD_DIR + "/" + fs.strip_scheme(uri).split(prefix, 1)[-1]
        if rel.endswith(".png") and rel not in keep:
            fs.remove(uri)


def write_card(out: str) -> str:
    """Write OUT/README.md and OUT/card/*.png from the folder's manifest and audit; return the
    README's path."""
    text, pngs = build_card(out)
    for rel in sorted(pngs):
        folder = fs.join(out, rel.rsplit("/", 1)[0])
        fs.makedirs(folder)
        _write_atomic(fs.join(out, rel), pngs[rel])
    _remove_stale(out, set(pngs))
    readme = fs.join(out, "README.md")
    _write_atomic(readme, text.encode("utf-8"))
    return readme
