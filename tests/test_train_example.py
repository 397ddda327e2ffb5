"""Issue 17: the reference trainer runs a few steps and prints both held-out comparisons; the
snippets of docs/training.md run. (The learning check itself is by hand: docs/training.md.)"""

from __future__ import annotations

import importlib.util
import json
import math
import re

import pytest

from conftest import REPO
from test_episode_index import build, corpus_examples

pytest.importorskip("torch", reason="the reference trainer is PyTorch: the optional torch extra (make test TORCH=1)")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    build(root, corpus_examples(seed=4))
    return root


def _trainer():
    spec = importlib.util.spec_from_file_location("train_tiny_gato",
                                                  REPO / "examples/train_tiny_gato.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_trainer_runs_a_few_steps_and_prints_both_numbers(out, capsys):
    r = _trainer().main(["--data", str(out), "--max-steps", "3", "--minutes", "2",
                         "--batch", "4", "--context", "32", "--d-model", "16", "--layers", "1",
                         "--heads", "2", "--threads", "1"])
    text = capsys.readouterr().out
    loss = re.search(r"held-out masked next-token loss: ([\d.]+) nats \(unigram baseline "
                     r"([\d.]+)", text)
    acc = re.search(r"held-out action-token accuracy: ([\d.]+) \(majority-class baseline "
                    r"([\d.]+)\)", text)
    assert loss and acc, text
    assert "trained 3 steps" in text
    assert r["targets"] > r["actions"] > 0
    assert all(math.isfinite(r[k]) for k in ("loss", "unigram", "acc", "majority"))
    assert 0 <= r["acc"] <= 1 and 0 < r["majority"] <= 1
    assert float(loss.group(1)) == pytest.approx(r["loss"], abs=1e-3)


def test_the_training_doc_snippets_run(out):
    text = (REPO / "docs/training.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    first = json.loads((out / "manifest.json").read_text())
    assert "c" in first["configs"]
    examples = corpus_examples(seed=4)
    meta = json.loads(examples[0]["meta"])
    env = {"OUT": str(out), "CONFIG": "c", "EPISODE": meta["episode_id"], "TASK": meta["task"]}
    for block in blocks:  # in order, in one namespace, as a reader would paste them
        exec(compile(block, "docs/training.md", "exec"), env)
