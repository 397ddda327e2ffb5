"""Every command and Python snippet of the README, docs/ and the generated dataset card runs, as
written, against a demo output (so they cannot drift from the code again).

Fenced blocks carry an info string: ``bash`` and ``python`` blocks are executed; ``text`` blocks
are diagrams, synopses or output; ``bash network`` / ``python network`` blocks need the network
(an upload, a Google Cloud project, pip) and say so in their first line, a ``#`` comment; they are
not executed here. Commands run in a workspace that looks like a clone of the repository (its
``catalog.yaml`` and ``tests/fixtures``) holding ``demo-out``, made once by the demo itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# docs/reliability.md, docs/security.md and docs/benchmarks.md document the test suite and the
# benchmarks themselves (their commands are pytest and bench/ runs); the user-facing docs are these
DOCS = ["README.md", "docs/architecture.md", "docs/dataset-card.md", "docs/output-format.md",
        "docs/running-on-dataflow.md", "docs/tokenization.md", "docs/vpt.md"]
DEMO_CONFIGS = ["demo-d4rl", "demo-rlds"]  # the configs the docs' snippets load
FENCE = re.compile(r"^(`{3,})([^\n`]*)\n(.*?)^\1[ \t]*$", re.M | re.S)
KINDS = {"bash", "python", "python torch", "text", "yaml", "json", "bash network",
         "python network"}
try:
    import torch  # noqa: F401  (the optional torch extra)
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="the `python torch` snippets need the "
                                 "optional torch extra: pip install -e '.[torch]'")
HANG_GUARD = 600


def blocks(text: str) -> list[tuple[str, str, int]]:
    """(info string, body, line number) of every fenced block."""
    return [(m.group(2).strip(), m.group(3), text.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("TRAJCORPUS_RUN_CHILD", None)
    return env


def execute(kind: str, body: str, cwd: Path, where: str) -> subprocess.CompletedProcess:
    if kind == "bash":
        argv = ["bash", "-euo", "pipefail", "-c", body]
    else:
        argv = [sys.executable, "-c", body]
    proc = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=HANG_GUARD)
    assert proc.returncode == 0, f"{where} failed:\n{body}\n--- stderr:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """A fresh-clone look-alike with ``demo-out`` written by the demo entry point."""
    ws = tmp_path_factory.mktemp("docs-run")
    for name in ("catalog.yaml", "tests", "pyproject.toml"):
        (ws / name).symlink_to(REPO / name)
    proc = subprocess.run(
        [sys.executable, "-m", "trajcorpus.pipelines.demo", "--output", "demo-out", "--only",
         *DEMO_CONFIGS, "--quiet", "--direct_num_workers=1", "--direct_running_mode=in_memory"],
        cwd=ws, env=_env(), capture_output=True, text=True, timeout=HANG_GUARD)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"datasets.load_dataset({str(ws / 'demo-out')!r}, 'demo-d4rl'" in proc.stdout
    return ws


def _doc_blocks() -> list:
    out = []
    for doc in DOCS:
        for kind, body, line in blocks((REPO / doc).read_text()):
            out.append(pytest.param(doc, kind, body, line, id=f"{doc}:{line}"))
    return out


@pytest.mark.parametrize(("doc", "kind", "body", "line"), _doc_blocks())
def test_every_block_is_marked(doc, kind, body, line):
    assert kind in KINDS, f"{doc}:{line}: fenced block with info string {kind!r}; use one of " \
        f"{sorted(KINDS)}"
    if kind.endswith("network"):
        first = body.lstrip().splitlines()[0]
        assert first.startswith("#") and "network" in first, \
            f"{doc}:{line}: a network block says why in its first line"


@pytest.mark.parametrize("doc", DOCS)
def test_doc_commands_and_snippets_run(workspace, doc):
    for kind, body, line in blocks((REPO / doc).read_text()):
        if kind in ("bash", "python"):
            execute(kind, body, workspace, f"{doc}:{line}")


@needs_torch
def test_doc_and_card_torch_snippets_run(workspace):
    found = [(f"{doc}:{line}", body) for doc in DOCS
             for kind, body, line in blocks((REPO / doc).read_text()) if kind == "python torch"]
    card = (workspace / "demo-out" / "README.md").read_text()
    found += [(f"card:{line}", body) for kind, body, line in blocks(card)
              if kind == "python torch"]
    assert len(found) >= 2
    for where, body in found:  # the card's snippets run from inside the folder
        execute("python", body, workspace / "demo-out" if where.startswith("card:")
                else workspace, where)


def test_docs_cite_only_files_in_the_repository():
    """Backticked paths that look like repository files exist (docs speak to a user of it)."""
    path = re.compile(r"`((?:\.\./|src/|docs/|tests/|tools/|bench/)[\w./{}*-]+)`")
    missing = []
    for doc in [*DOCS, "tests/fixtures/README.md"]:
        text = (REPO / doc).read_text()
        for m in path.finditer(text):
            rel = m.group(1).split("::")[0]
            if any(c in rel for c in "{}*"):
                continue
            base = (REPO / doc).parent if rel.startswith("..") else REPO
            if not (base / rel).exists():
                missing.append(f"{doc}: {rel}")
    assert missing == []


def test_generated_card_snippets_run(workspace):
    card = (workspace / "demo-out" / "README.md").read_text()
    found = blocks(card)
    assert {k for k, _, _ in found} <= KINDS
    ran = 0
    for kind, body, line in found:  # python from inside the folder, commands from the clone
        if kind in ("bash", "python"):
            cwd = workspace / "demo-out" if kind == "python" else workspace
            execute(kind, body, cwd, f"demo-out/README.md:{line}")
            ran += 1
    assert ran >= 4
    # the card's rebuild commands wrote OUT: byte for byte what the demo wrote
    demo = json.loads((workspace / "demo-out/manifest.json").read_text())
    rebuilt = json.loads((workspace / "OUT/manifest.json").read_text())
    assert {f["path"]: f["sha256"] for f in rebuilt["files"]} == \
        {f["path"]: f["sha256"] for f in demo["files"]}
    for f in rebuilt["files"]:
        data = (workspace / "OUT" / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]


# --- the card reads well ---------------------------------------------------------------------------

def test_card_opens_with_a_table_of_contents_summary_first(workspace):
    from trajcorpus.cards.render import anchor

    card = (workspace / "demo-out" / "README.md").read_text()
    body = card.split("\n---\n", 1)[1]  # after the YAML header
    sections = re.findall(r"^## (.+)$", body, re.M)
    assert sections[:2] == ["Contents", "Summary"]
    contents = body.split("## Contents", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"^( *)- \[(.+?)\]\(#([^)]+)\)$", contents, re.M)
    assert links[0][1:] == ("Summary", "summary")
    headings = {anchor(h) for h in re.findall(r"^#{2,3} (.+)$", body, re.M)}
    assert {a for _, _, a in links} <= headings  # every link lands on a heading
    assert [t for ind, t, _ in links if not ind] == sections[1:]  # every section, in order


def _returns_figure(returns, kept, threshold, window=None, start=None):
    from trajcorpus.cards.inputs import TaskAudit, TaskEpisodes
    from trajcorpus.cards.plots import returns_png

    n = len(returns)
    audit = TaskAudit(task="T", read=n, rejected=0, filtered=int(n - sum(kept)),
                      kept=int(sum(kept)), episodes_total=n, window=window,
                      best_window_start=start, expert_return=None, threshold=threshold,
                      sequences=0, prompted_sequences=0, tokens={})
    eps = TaskEpisodes(returns=np.asarray(returns, np.float64), kept=np.asarray(kept, bool))
    return returns_png.draw("cfg", audit, eps)


def test_returns_histogram_bars_have_edges_and_integer_axes_on_a_tiny_task():
    # three filtered episodes in three neighbouring bins (bins 2.5 wide) and two kept ones
    fig = _returns_figure([0.0, 2.5, 5.0, 10.0, 12.5], [False, False, False, True, True],
                          threshold=7.0, window=2, start=3)
    ax, hx = fig.axes[:2]
    bars = [p for p in hx.patches if p.get_height() > 0]
    lefts = sorted(round(b.get_x(), 6) for b in bars)
    assert len(bars) == 4 and lefts[:3] == [0.0, 2.5, 5.0]  # adjacent: they touch
    for bar in bars:  # drawn with a visible white edge, so adjacent bars stay apart
        assert bar.get_linewidth() > 0
        assert tuple(bar.get_edgecolor()[:3]) == (1.0, 1.0, 1.0)
    fig.canvas.draw()
    for axis in (ax.xaxis, hx.yaxis):  # episode index, episode count: whole numbers only
        ticks = [t for t in axis.get_ticklocs() if axis.get_view_interval()[0] <= t
                 <= axis.get_view_interval()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


@needs_torch
def test_torch_dataset_refuses_a_path_when_built_not_when_iterated():
    from trajcorpus.errors import ShardError
    from trajcorpus.shards import TorchShardDataset

    with pytest.raises(ShardError, match=r"'demo-out': TorchShardDataset reads a ShardDataset"):
        TorchShardDataset("demo-out", batch_size=4)
