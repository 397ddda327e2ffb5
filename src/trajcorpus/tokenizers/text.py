"""Text -> SentencePiece ids in [0, 32000) (SPEC section 4), and a deterministic trainer.

The model is a file (local, gs:// or memory:// through :mod:`trajcorpus.fs`); its sha256 goes into
the manifest, so a corpus names exactly the tokenizer it was built with. Training is made
byte-reproducible (same texts in the same order -> same model bytes): one thread, no shuffling,
every sentence used (no sampling) and a fixed random seed.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm

from .. import fs
from ..errors import TokenizeError
from .scheme import TEXT_VOCAB_SIZE

__all__ = ["TextTokenizer", "train_text_model", "MODEL_TYPES"]

MODEL_TYPES = ("unigram", "bpe", "char", "word")
_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


class TextTokenizer:
    """A loaded SentencePiece model: batch encode/decode, vocab size and the model's sha256.

    Picklable (it pickles the model bytes), so a Beam DoFn can carry it to workers.
    """

    def __init__(self, model_bytes: bytes, *, name: str = "<bytes>"):
        self._name = name
        self._bytes = bytes(model_bytes)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._bytes)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError for bad protos
            raise TokenizeError(name, f"not a SentencePiece model: {e}") from None
        n = self._sp.GetPieceSize()
        if n > TEXT_VOCAB_SIZE:
            raise TokenizeError(name, f"vocabulary of {n} pieces exceeds the text id range "
                                f"[0, {TEXT_VOCAB_SIZE})")
        self._sha256 = hashlib.sha256(self._bytes).hexdigest()

    @classmethod
    def load(cls, uri: str) -> TextTokenizer:
        """Read a .model file from a local path or URI."""
        try:
            with fs.open_uri(uri, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise TokenizeError(uri, "SentencePiece model file not found") from None
        return cls(data, name=uri)

    # pickling: the C++ processor is rebuilt from the bytes
    def __getstate__(self) -> dict:
        return {"name": self._name, "bytes": self._bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["bytes"], name=state["name"])

    @property
    def name(self) -> str:
        return self._name

    @property
    def vocab_size(self) -> int:
        return int(self._sp.GetPieceSize())

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def model_bytes(self) -> bytes:
        return self._bytes

    def save(self, uri: str) -> None:
        with fs.open_uri(uri, "wb") as f:
            f.write(self._bytes)

    def encode(self, text: str) -> np.ndarray:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One int32 id array per text (no BOS/EOS added)."""
        ids = self._sp.Encode(list(texts), out_type=int, num_threads=1)
        return [np.asarray(i, dtype=np.int32) for i in ids]

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All ids concatenated (int32 [N]) and the per-text counts (int64 [len(texts)])."""
        ids = self._sp.Encode(list(texts), out_type=int, num_threads=1)
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((t for i in ids for t in i), dtype=np.int32, count=int(lengths.sum()))
        return flat, lengths

    def decode(self, ids) -> str:
        return self._sp.Decode([int(i) for i in np.asarray(ids).reshape(-1)])

    def decode_batch(self, batch: Iterable) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def __repr__(self) -> str:
        return f"TextTokenizer({self._name!r}, vocab_size={self.vocab_size}, sha256={self._sha256[:12]})"


def _train(texts: list[str], vocab_size: int, options: dict) -> bytes:
    writer = io.BytesIO()
    spm.SentencePieceTrainer.Train(sentence_iterator=iter(texts), model_writer=writer,
                                   vocab_size=vocab_size, **options)
    return writer.getvalue()


def train_text_model(texts: Iterable[str], out_path: str | None, vocab_size: int = TEXT_VOCAB_SIZE,
                     *, model_type: str = "unigram", fit_vocab: bool = False,
                     character_coverage: float = 0.9995, byte_fallback: bool = False,
                     seed: int = 0) -> TextTokenizer:
    """Train a SentencePiece model on ``texts`` (in the order given) and write it to ``out_path``.

    Deterministic: the same texts in the same order give the same model bytes. A corpus too small
    for ``vocab_size`` is a TokenizeError stating the largest size it supports; with
    ``fit_vocab=True`` the model is trained again at that size instead. ``out_path=None`` only
    returns the tokenizer. The texts are held in memory (SentencePiece loads them all anyway); pass
    a deterministic sample for very large corpora.
    """
    if model_type not in MODEL_TYPES:
        raise TokenizeError("text model", f"unknown model_type {model_type!r} (known: {MODEL_TYPES})")
    if not 1 <= vocab_size <= TEXT_VOCAB_SIZE:
        raise TokenizeError("text model", f"vocab_size must be in [1, {TEXT_VOCAB_SIZE}], got "
                            f"{vocab_size}")
    corpus = [t for t in texts if t]
    if not corpus:
        raise TokenizeError("text model", "no non-empty text to train on")
    options = dict(
        model_type=model_type, character_coverage=character_coverage, byte_fallback=byte_fallback,
        num_threads=1, shuffle_input_sentence=False, input_sentence_size=0, minloglevel=2,
    )
    spm.set_random_generator_seed(seed)
    try:
        data = _train(corpus, vocab_size, options)
    except RuntimeError as e:
        high = _TOO_HIGH.search(str(e))
        if high and fit_vocab:
            supported = int(high.group(2))
            spm.set_random_generator_seed(seed)
            data = _train(corpus, supported, options)
        elif high:
            raise TokenizeError("text model", f"vocab_size {vocab_size} is too large for this "
                                f"corpus ({len(corpus)} texts): it supports at most "
                                f"{high.group(2)}; set text_model.vocab_size <= {high.group(2)} "
                                "or train with fit_vocab=True") from None
        elif (low := _TOO_LOW.search(str(e))) is not None:
            raise TokenizeError("text model", f"vocab_size {vocab_size} is smaller than the "
                                f"{low.group(2)} characters the corpus needs") from None
        else:
            raise TokenizeError("text model", f"SentencePiece training failed: {e}") from None
    tok = TextTokenizer(data, name=out_path or "<trained>")
    if out_path is not None:
        tok.save(out_path)
    return tok
