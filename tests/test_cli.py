"""The CLI's contract: readable output, one-line errors with exit status 2, tracebacks only with --debug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trajcorpus.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_catalog_list_shows_every_entry(capsys):
    code, out, _ = run(capsys, "catalog", "list", "--catalog", str(REPO / "catalog.yaml"))
    assert code == 0
    lines = out.strip().splitlines()
    assert any(line.startswith("demo-dqn-replay ") and " demo " in line for line in lines)
    assert any(line.startswith("dqn-replay-atari ") for line in lines)


def test_catalog_show_resolves_uri(capsys):
    code, out, _ = run(capsys, "catalog", "show", "demo-minari", "--catalog",
                       str(REPO / "catalog.yaml"))
    assert code == 0
    assert "kind: minari" in out
    assert f"uri: {REPO / 'tests/fixtures/mujoco/minari/trajcorpus-fixtures'}" in out


def test_catalog_validate_ok(capsys):
    code, out, _ = run(capsys, "catalog", "validate", str(REPO / "catalog.yaml"))
    assert code == 0 and "OK" in out


def test_catalog_validate_bad_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("version: 1\ndatasets:\n  - id: x\n    kind: nope\n    uri: u\n    license: L\n")
    code, out, err = run(capsys, "catalog", "validate", str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert f"{bad}:4: entry 'x' field 'kind'" in err


def test_unknown_dataset_is_exit_2(capsys):
    code, _, err = run(capsys, "catalog", "show", "nope", "--catalog", str(REPO / "catalog.yaml"))
    assert code == 2 and "no dataset 'nope'" in err


def test_bad_arguments_exit_2_without_usage_dump(capsys):
    code, _, err = run(capsys, "catalog", "frobnicate")
    assert code == 2 and err.startswith("trajcorpus: error:") and err.count("\n") == 1
    code, _, err = run(capsys, "verify")
    assert code == 2 and "required" in err


def test_unknown_source_kind_is_exit_2(capsys):
    code, _, err = run(capsys, "episodes", "--kind", "tape-drive", "--input", "/nowhere")
    assert code == 2 and "unknown source kind 'tape-drive'" in err


def test_debug_shows_traceback(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("datasets: [1\n")
    proc = subprocess.run([sys.executable, "-m", "trajcorpus", "--debug", "catalog", "validate",
                           str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "trajcorpus", "catalog", "validate", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("cmd", [["verify", "/definitely/not/here"], ["card", "/definitely/not"]])
def test_missing_output_folder_is_exit_2(capsys, cmd):
    code, _, err = run(capsys, *cmd)
    assert code == 2 and "/definitely/not" in err


FIX = REPO / "tests" / "fixtures"


@pytest.mark.parametrize(
    ("kind", "uri", "n", "text"),
    [
        ("dqn-replay", FIX / "atari_dqn_replay" / "Breakout", None, False),
        ("coco-captions", FIX / "image_caption" / "coco", 26, True),
        ("rlds", FIX / "robot_stacking/rlds/dmc_jaco_stack_2_bricks_vision/1.0.0", 12, True),
        ("d4rl", FIX / "mujoco/d4rl/hopper-mixed-v2.hdf5", 40, False),
    ],
)
def test_episodes_json_lines_have_the_spec_fields(capsys, kind, uri, n, text):
    import json

    code, out, _ = run(capsys, "episodes", "--kind", kind, "--input", str(uri), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    if n is not None:
        assert len(rows) == n
    for row in rows:
        assert {"episode_id", "task", "agent", "length", "return", "observations"} <= set(row)
        for spec in row["observations"].values():
            assert {"shape", "dtype"} <= set(spec)
        assert ("text" in row) == text
    assert len({r["episode_id"] for r in rows}) == len(rows)


def test_episodes_plain_lists_one_line_per_episode_and_reports_skips(capsys):
    code, out, err = run(capsys, "episodes", "--kind", "img2dataset", "--input",
                         str(FIX / "image_caption/img2dataset/output"))
    assert code == 0
    assert len(out.splitlines()) == 20
    assert "skipped" in err and "[0000005]" in err and "404" in err


def test_episodes_bad_input_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "x.hdf5"
    bad.write_bytes(b"not hdf5 at all")
    code, out, err = run(capsys, "episodes", "--kind", "d4rl", "--input", str(bad))
    assert code == 2 and str(bad) in err and err.count("\n") == 1


_PARENT = """
import sys
from trajcorpus import cli, supervise
def fake(argv, output, dataset, env):
    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pyarrow', 'apache_beam',
                                                               'fsspec', 'matplotlib'})
    print(output, dataset, env, heavy, list(argv) == sys.argv[1:])
    return 7
supervise.supervise_run = fake
sys.exit(cli.main())
"""


@pytest.mark.parametrize("argv, supervised", [
    (["run", "--dataset", "demo-d4rl", "--output=o", "--bogus=1"], "o demo-d4rl"),
    (["--debug", "run", "--output", "o", "--dataset=x"], "o x"),
    (["run", "--dataset", "demo-d4rl"], None),  # no --output: the full parser says so, here
    (["run", "--dataset", "demo-d4rl", "--output", "o", "--help"], None),
    (["catalog", "list"], None),
])
def test_the_console_run_is_supervised_by_a_process_that_imports_no_pipeline(argv, supervised):
    """The supervising process only relays the job's output (the child parses and checks
    everything): it imports neither the pipelines nor Beam (they cost every run ~1 CPU s)."""
    r = subprocess.run([sys.executable, "-c", _PARENT, *argv], capture_output=True, text=True,
                       timeout=120)
    if supervised:
        assert r.returncode == 7, r.stderr
        assert r.stdout.split() == [*supervised.split(), "TRAJCORPUS_RUN_CHILD", "[]", "True"]
    else:
        assert "TRAJCORPUS_RUN_CHILD" not in r.stdout
        assert r.returncode in (0, 2), r.stderr
