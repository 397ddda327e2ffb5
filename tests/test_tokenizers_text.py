"""SentencePiece wrapper and trainer: ids in [0, 32000), sha256, byte-reproducible training."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from trajcorpus import fs
from trajcorpus.errors import TokenizeError
from trajcorpus.tokenizers import TEXT_VOCAB_SIZE, TextTokenizer, train_text_model

FIXTURES = Path(__file__).parent / "fixtures"
COCO = FIXTURES / "image_caption" / "coco"


@pytest.fixture(scope="module")
def captions() -> list[str]:
    ann = json.loads((COCO / "annotations" / "captions_train2017.json").read_text())
    truth = json.loads((COCO / "ground_truth.json").read_text())
    caps = [a["caption"] for a in ann["annotations"]]
    # the ground truth (recorded independently of the JSON) lists the same captions
    assert sorted(caps) == sorted(c for rec in truth for c in rec["captions"])
    return caps


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, captions) -> Path:
    out = tmp_path_factory.mktemp("spm") / "coco.model"
    train_text_model(captions, str(out), 150)
    return out


def test_trained_model_is_written_and_loads(model_path, captions):
    tok = TextTokenizer.load(str(model_path))
    assert tok.vocab_size == 150
    assert tok.sha256 == hashlib.sha256(model_path.read_bytes()).hexdigest()
    ids = tok.encode_batch(captions)
    assert all(i.dtype == np.int32 for i in ids)
    flat = np.concatenate(ids)
    assert flat.min() >= 0 and flat.max() < min(tok.vocab_size, TEXT_VOCAB_SIZE)
    # plain ASCII captions survive SentencePiece's normalisation unchanged
    assert tok.decode_batch(ids) == captions


def test_encode_flat_matches_encode_batch(model_path, captions):
    tok = TextTokenizer.load(str(model_path))
    flat, lengths = tok.encode_flat(captions[:5] + [""])
    ids = tok.encode_batch(captions[:5] + [""])
    assert lengths.tolist() == [len(i) for i in ids] and lengths[-1] == 0
    assert (flat == np.concatenate(ids)).all()
    assert (tok.encode(captions[0]) == ids[0]).all()


def test_training_is_byte_reproducible(captions, tmp_path):
    a = train_text_model(captions, str(tmp_path / "a.model"), 120)
    b = train_text_model(captions, str(tmp_path / "b.model"), 120)
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    assert a.sha256 == b.sha256
    # and in a fresh interpreter (no shared process state)
    code = ("import json,sys; from trajcorpus.tokenizers import train_text_model; "
            "print(train_text_model(json.loads(sys.argv[1]), None, 120).sha256)")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(captions)], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == a.sha256


def test_different_texts_give_a_different_model(captions):
    assert (train_text_model(captions, None, 120).sha256
            != train_text_model(captions[::-1][:20], None, 120).sha256)


def test_vocab_too_large_reports_what_the_corpus_supports(captions):
    with pytest.raises(TokenizeError) as err:
        train_text_model(captions, None, 32000)
    msg = str(err.value)
    assert "32000" in msg and "at most" in msg and "fit_vocab" in msg
    supported = int(msg.split("at most ")[1].split(";")[0])
    tok = train_text_model(captions, None, 32000, fit_vocab=True)
    assert tok.vocab_size == supported < 32000


def test_vocab_too_small_and_bad_arguments(captions):
    with pytest.raises(TokenizeError, match="characters"):
        train_text_model(captions, None, 10)
    with pytest.raises(TokenizeError, match="vocab_size"):
        train_text_model(captions, None, 32001)
    with pytest.raises(TokenizeError, match="model_type"):
        train_text_model(captions, None, 100, model_type="wordpiece")
    with pytest.raises(TokenizeError, match="no non-empty text"):
        train_text_model(["", ""], None, 100)


@pytest.mark.parametrize("model_type", ["bpe", "char", "word"])
def test_other_model_types_train(captions, model_type):
    tok = train_text_model(captions, None, 32000, model_type=model_type, fit_vocab=True)
    ids = np.concatenate(tok.encode_batch(captions))
    assert ids.max() < tok.vocab_size <= TEXT_VOCAB_SIZE


def test_load_from_memory_and_gcs_gives_the_same_model(model_path, gcs):
    data = model_path.read_bytes()
    with fs.open_uri("memory://tok-test/coco.model", "wb") as f:
        f.write(data)
    uri = gcs.upload(model_path, "tok-test/coco.model")
    assert uri.startswith("gs://")
    shas = {TextTokenizer.load(u).sha256 for u in (str(model_path), "memory://tok-test/coco.model",
                                                    uri)}
    assert shas == {hashlib.sha256(data).hexdigest()}


def test_save_round_trips(model_path, tmp_path):
    tok = TextTokenizer.load(str(model_path))
    tok.save(str(tmp_path / "copy.model"))
    assert (tmp_path / "copy.model").read_bytes() == model_path.read_bytes()


def test_bad_model_files_are_errors(tmp_path):
    with pytest.raises(TokenizeError, match="not found"):
        TextTokenizer.load(str(tmp_path / "missing.model"))
    (tmp_path / "junk.model").write_bytes(b"\x00\x01 not a model")
    with pytest.raises(TokenizeError, match="junk.model.*not a SentencePiece model"):
        TextTokenizer.load(str(tmp_path / "junk.model"))


def test_a_vocabulary_beyond_32000_is_refused():
    # a char model over 32,100 distinct CJK characters has more pieces than the text range holds
    chars = [chr(0x4E00 + i) for i in range(32100)]
    texts = ["".join(chars[i:i + 100]) for i in range(0, len(chars), 100)]
    import io

    w = io.BytesIO()
    spm.SentencePieceTrainer.Train(sentence_iterator=iter(texts), model_writer=w,
                                   model_type="char", vocab_size=32103, character_coverage=1.0,
                                   num_threads=1, minloglevel=2)
    with pytest.raises(TokenizeError, match="exceeds the text id range"):
        TextTokenizer(w.getvalue(), name="big.model")


def test_pickle_round_trip(model_path, captions):
    tok = TextTokenizer.load(str(model_path))
    back = pickle.loads(pickle.dumps(tok))
    assert back.sha256 == tok.sha256 and back.name == tok.name
    assert all((a == b).all() for a, b in zip(back.encode_batch(captions),
                                              tok.encode_batch(captions), strict=True))
