"""The corpus's text model: whether the corpus has text at all (a kind that cannot carry text is
not read for it), a catalog-given SentencePiece model copied into OUT, or one trained on the
corpus's distinct texts."""

from __future__ import annotations

from collections.abc import Sequence

from .. import fs
from ..schemas.episode import Rejected
from ..sources.base import Unit, get_source
from .stages import JobSpec, say

__all__ = ["probe_has_text", "install_text_model", "train_text_model"]


def probe_has_text(spec: JobSpec, units: Sequence[Unit], limit: int = 3) -> bool:
    """Whether the corpus has text to tokenize: looks at the first episode found in the first
    few units (image-caption and instruction datasets have text in every record). Formats that
    cannot hold text (``Source.carries_text``) are not read here at all."""
    if not get_source(spec.kind).carries_text:
        return False
    source = spec.open_source()
    for unit in units[:limit]:
        for item in source.read_unit_safely(unit):
            if isinstance(item, Rejected):
                continue
            names = [n for n, k in item.observation_kinds.items() if k == "text"]
            if spec.tokenize.text_fields is not None:
                names = [n for n in names if n in spec.tokenize.text_fields]
            return bool(names)
    return False


def _text_model_uri(spec: JobSpec) -> str:
    return fs.join(spec.output, "tokenizer", f"{spec.config}.model")


def install_text_model(spec: JobSpec, src: str) -> dict:
    """Copy a catalog-given SentencePiece model into OUT (so the output decodes on its own)."""
    from ..tokenizers import TextTokenizer

    tok = TextTokenizer.load(src)
    dst = _text_model_uri(spec)
    fs.makedirs(fs.join(spec.output, "tokenizer"))
    tok.save(dst)
    return {"uri": dst, "path": f"tokenizer/{spec.config}.model", "sha256": tok.sha256,
            "vocab_size": tok.vocab_size, "trained": False, "source": src}


def train_text_model(spec: JobSpec, texts: list[str]) -> dict | None:
    """Train the corpus's SentencePiece model from its distinct texts, sorted (deterministic).

    The vocabulary is the catalog's size, or the largest the corpus supports when smaller.
    """
    from ..tokenizers import train_text_model as train

    texts = sorted(set(texts))
    if not texts:
        return None
    dst = _text_model_uri(spec)
    fs.makedirs(fs.join(spec.output, "tokenizer"))
    settings = spec.tokenize.text_model
    tok = train(texts, dst, vocab_size=settings.vocab_size,
                           model_type=settings.model_type, fit_vocab=True)
    say(spec, f"trained the text model ({tok.vocab_size} pieces) on {len(texts)} distinct "
        f"texts -> {dst}")
    return {"uri": dst, "path": f"tokenizer/{spec.config}.model", "sha256": tok.sha256,
            "vocab_size": tok.vocab_size, "trained": True, "texts": len(texts)}

