"""Every command and Python snippet of the README, docs/ and the generated dataset card runs, as
written, against a demo output (so they cannot drift from the code again).

Fenced blocks carry an info string: ``bash`` and ``python`` blocks are executed; a
``python continued`` block continues the python block before it (they run together, in one
process, as a reader pastes them); ``text`` blocks are diagrams, synopses or output; ``bash
network`` / ``python network`` blocks need the network (an upload, a Google Cloud project, pip)
and ``bash by-hand`` / ``python by-hand`` blocks need what a test cannot have (a SLURM or
Kubernetes cluster, minutes of benchmark or training, the suite itself); both say why in their
first line, a ``#`` comment, and are not executed here. Commands run in a workspace that looks
like a clone of the repository (its ``catalog.yaml``, ``tests/fixtures`` and ``.venv``) holding
``demo-out``, made once per session by the demo itself (conftest's ``demo_workspace``).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import child_env

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]
# python snippets that a reader runs on an output of their own (placeholders OUT, CONFIG, ...):
# the named test runs them, in order and in one namespace, with the placeholders set
RUN_ELSEWHERE = {"docs/training.md": "tests/test_train_example.py::"
                 "test_the_training_doc_snippets_run"}
# what a snippet prints, where its comment says so
PRINTS = {"docs/statistics-and-semantics.md": ["['HalfCheetah-v5', 'Hopper-v5']",
                                               "thigh_joint torque",
                                               # the Mixture's tasks
                                               "['HalfCheetah-v5', 'Hopper-v5', 'hopper-mixed-v2']"]}
FENCE = re.compile(r"^(`{3,})([^\n`]*)\n(.*?)^\1[ \t]*$", re.M | re.S)
KINDS = {"bash", "python", "python continued", "python torch", "text", "yaml", "json",
         "bash network", "python network", "bash by-hand", "python by-hand"}
WHY = {"network": re.compile(r"#.*\bnetwork\b"), "by-hand": re.compile(r"# by hand\b\W+\w")}
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


def execute(kind: str, body: str, cwd: Path, where: str) -> subprocess.CompletedProcess:
    if kind == "bash":
        argv = ["bash", "-euo", "pipefail", "-c", body]
    else:
        argv = [sys.executable, "-c", body]
    proc = subprocess.run(argv, cwd=cwd, env=child_env(), capture_output=True, text=True,
                          timeout=HANG_GUARD)
    assert proc.returncode == 0, f"{where} failed:\n{body}\n--- stderr:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def workspace(demo_workspace) -> Path:
    """A fresh-clone look-alike with ``demo-out`` written by the demo entry point (which says
    how to load it)."""
    assert f"datasets.load_dataset({str(demo_workspace.out)!r}, " in demo_workspace.stdout
    return demo_workspace.path


def units(doc: str) -> list[tuple[str, str, str]]:
    """(kind, code, where) of what runs: each bash or python block, a python block together
    with the ``python continued`` blocks after it."""
    out: list[list] = []
    for kind, body, line in blocks((REPO / doc).read_text()):
        if kind == "python continued":
            assert out and out[-1][0] == "python", \
                f"{doc}:{line}: a `python continued` block follows a python block"
            out[-1][1] += body
            out[-1][3] = line
        elif kind in ("bash", "python"):
            out.append([kind, body, line, line])
    return [(k, code, f"{doc}:{a}" if a == b else f"{doc}:{a}-{b}") for k, code, a, b in out]


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
    why = kind.split()[-1]
    if why in WHY:  # not executed here: the block itself says why, in its first line
        first = body.lstrip().splitlines()[0]
        assert WHY[why].match(first), f"{doc}:{line}: a {kind} block says why in its first " \
            f"line, a comment ({WHY[why].pattern!r}); it has {first!r}"


def test_fence_kinds_and_reasons_are_parsed():
    text = ("```bash by-hand\n# by hand: 20 minutes\nx\n```\n```python\na = 1\n```\n"
            "```python continued\nassert a == 1\n```\n")
    assert [k for k, _, _ in blocks(text)] == ["bash by-hand", "python", "python continued"]
    assert WHY["by-hand"].match("# by hand: 20 minutes")
    assert not WHY["by-hand"].match("# by hand")  # a reason, not just the mark
    assert not WHY["by-hand"].match("x = 1  # by hand: 2 min")
    assert WHY["network"].match("# needs the network (pip)")


def test_every_doc_is_under_test():
    assert {"README.md", "docs/running-on-dask.md", "docs/training.md"} <= set(DOCS)
    for doc, test in RUN_ELSEWHERE.items():  # the test that runs them exists and reads the doc
        path, name = test.split("::")
        src = (REPO / path).read_text()
        assert f"def {name}(" in src and doc in src


@pytest.mark.parametrize("doc", DOCS)
def test_doc_commands_and_snippets_run(workspace, doc):
    printed = ""
    for kind, code, where in units(doc):
        if kind == "python" and doc in RUN_ELSEWHERE:
            continue
        printed += execute(kind, code, workspace, where).stdout
    for text in PRINTS.get(doc, []):
        assert text in printed, f"{doc} prints {text!r}"


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
            if not (base / rel).resolve().is_relative_to(REPO):
                continue  # not a file of the repository (security.md's `../../escape` inputs)
            if not (base / rel).exists():
                missing.append(f"{doc}: {rel}")
    assert missing == []


# The card's rebuild commands run for these configs (one without text, one that trains a text
# model); the other configs' commands are the same one with another --dataset and --input (the
# demo run the suite already has), so they are checked for that form, not run again.
REBUILD = ("demo-d4rl", "demo-rlds")
REBUILD_FORM = re.compile(r"trajcorpus run --catalog catalog\.yaml --dataset (\S+) --input "
                          r"tests/fixtures/\S+ --output OUT --seed 0 --format both "
                          r"--shard_bytes=\d+ --min_shards=\d+\n")


def test_generated_card_snippets_run(workspace):
    card = (workspace / "demo-out" / "README.md").read_text()
    found = blocks(card)
    assert {k for k, _, _ in found} <= KINDS
    ran, rebuilt_configs = 0, []
    for kind, body, line in found:  # python from inside the folder, commands from the clone
        if kind == "bash" and (m := REBUILD_FORM.fullmatch(body)):
            rebuilt_configs.append(m.group(1))
            if m.group(1) not in REBUILD:
                continue
        if kind in ("bash", "python"):
            cwd = workspace / "demo-out" if kind == "python" else workspace
            execute(kind, body, cwd, f"demo-out/README.md:{line}")
            ran += 1
    assert ran >= 4
    demo = json.loads((workspace / "demo-out/manifest.json").read_text())
    assert sorted(rebuilt_configs) == sorted(demo["configs"])  # one command per config
    # the card's rebuild commands wrote OUT: byte for byte what the demo wrote
    rebuilt = json.loads((workspace / "OUT/manifest.json").read_text())
    assert sorted(rebuilt["configs"]) == sorted(REBUILD)
    assert {f["path"]: f["sha256"] for f in rebuilt["files"]} == \
        {f["path"]: f["sha256"] for f in demo["files"] if f["config"] in REBUILD}
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


def _texts_inside_and_legends_off_the_axes(fig) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    drawn = fig.get_tightbbox(renderer)  # inches: everything drawn, texts included
    assert drawn.x0 >= 0 and drawn.y0 >= 0, drawn
    assert drawn.x1 <= width / fig.dpi and drawn.y1 <= height / fig.dpi, drawn
    boxes = [a.get_window_extent(renderer) for a in fig.axes]
    legends = [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend())]
    assert legends
    for legend in legends:
        assert not any(legend.get_window_extent(renderer).overlaps(b) for b in boxes)
    for k, a in enumerate(fig.axes):  # the tick labels drawn stay out of the other axes
        ticks = a.yaxis.get_tightbbox(renderer)
        assert not any(ticks.overlaps(b) for i, b in enumerate(boxes) if i != k)


@pytest.mark.parametrize("returns", [
    [-123456.5, -2.0, 7.25e5, 1.0e6, 999999.0],  # wide tick labels on both axes
    [0.0, 2.5, 5.0, 10.0, 12.5],
])
def test_returns_figure_keeps_its_labels_inside_and_legends_off_the_plots(returns):
    """The card's figures are laid out by hand (cheaper than matplotlib's layout engine): the
    margins are sized from the labels, so wide tick labels must still fit."""
    fig = _returns_figure(returns, [False, False, True, True, False], threshold=0.5, window=2,
                          start=2)
    _texts_inside_and_legends_off_the_axes(fig)


def test_token_mix_figure_keeps_long_task_names_inside():
    from trajcorpus.cards.inputs import TaskAudit
    from trajcorpus.cards.plots import token_mix_png

    audits = {}
    for k, name in enumerate(["Pong", "dmc_jaco_stack_2_bricks_vision_with_a_very_long_name_x",
                              "W" * 60]):
        audits[name] = TaskAudit(task=name, read=1, rejected=0, filtered=0, kept=1,
                                 episodes_total=1, window=None, best_window_start=None,
                                 expert_return=None, threshold=None, sequences=1,
                                 prompted_sequences=0,
                                 tokens={"pad": 10 + k, "image": 50, "action": 40})
    _texts_inside_and_legends_off_the_axes(token_mix_png.draw("cfg", audits))


@needs_torch
def test_torch_dataset_refuses_a_path_when_built_not_when_iterated():
    from trajcorpus.errors import ShardError
    from trajcorpus.shards import TorchShardDataset

    with pytest.raises(ShardError, match=r"'demo-out': TorchShardDataset reads a ShardDataset"):
        TorchShardDataset("demo-out", batch_size=4)
