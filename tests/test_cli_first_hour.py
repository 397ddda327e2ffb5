"""The first hour of a new user, through the real ``trajcorpus`` command in a subprocess.

Each test pins one trap a new user hit (issue 13): bad input or arguments give ONE line on stderr
and exit status 2; Ctrl-C gives one line and 130; a closed pipe never hangs the job; unknown
options are refused; reruns and foreign folders need ``--overwrite``; no empty shard; nothing
published names the builder's own folders.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOG = str(REPO / "catalog.yaml")
FIX = REPO / "tests" / "fixtures"
ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
HANG_GUARD = 300  # seconds: a guard against a hang, not a speed assertion


def cli(*argv: str, cwd: Path | str | None = None, env: dict | None = None,
        timeout: float = HANG_GUARD) -> subprocess.CompletedProcess:
    """``trajcorpus ARGV`` as a user runs it (console entry point: ``main()`` without argv)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    full_env.pop("TRAJCORPUS_RUN_CHILD", None)
    return subprocess.run([sys.executable, "-m", "trajcorpus", *argv], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_exit_2(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("trajcorpus: error: ")
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished output of demo-d4rl, written by the CLI with its defaults."""
    out = tmp_path_factory.mktemp("first-hour") / "out"
    proc = cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one unit of work: no worker process to start, the job runs in its own (runners.py)
    assert "1 unit(s) of work" in proc.stderr
    assert "running on DirectRunner (1 worker(s), in_memory)" in proc.stderr
    return out


# --- arguments -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "hint"), [
    ("--bogus", "trajcorpus run --help"),
    ("--shard_byte=100", "did you mean --shard_bytes?"),
    ("--direct_num_worker=1", "did you mean --direct_num_workers?"),
    ("--temp_locaton=gs://b/t", "did you mean --temp_location?"),
])
def test_unknown_run_options_are_refused_with_a_hint(tmp_path, flag, hint):
    proc = cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--output",
               str(tmp_path / "o"), flag)
    one_line_exit_2(proc, flag, hint)
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_other_commands_refuse_unknown_options_too(finished):
    one_line_exit_2(cli("verify", str(finished), "--bogus"), "unrecognized arguments: --bogus")


def test_run_help_lists_the_tool_options_with_defaults_and_how_beam_options_pass():
    proc = cli("run", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for option, default in [("--shard_bytes", "268435456"), ("--min_shards", "16"),
                            ("--direct_num_workers", "the number of cores"),
                            ("--format", "both"), ("--seed", "0"), ("--runner", "DirectRunner")]:
        assert option in text and default in text, option
    for option in ("--overwrite", "--input", "--option", "--output", "--catalog", "--quiet"):
        assert option in text
    assert "Apache Beam pipeline option" in text and "--dry_run=True" in text


def test_output_that_is_a_file_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_exit_2(cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--output",
                        str(afile)), str(afile), "is a file")


def test_catalog_outside_the_repo_names_the_file_and_how_to_pass_one(tmp_path):
    line = one_line_exit_2(cli("catalog", "list", cwd=tmp_path), str(tmp_path / "catalog.yaml"),
                           "--catalog FILE")
    assert "no catalog file here" in line
    proc = cli("catalog", "list", "--catalog", CATALOG, cwd=tmp_path)
    assert proc.returncode == 0 and "demo-minari" in proc.stdout


def test_a_missing_input_gives_one_message_from_run_and_episodes(tmp_path):
    missing = str(tmp_path / "nowhere")
    a = one_line_exit_2(cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--input",
                            missing, "--output", str(tmp_path / "o")))
    b = one_line_exit_2(cli("episodes", "--kind", "d4rl", "--input", missing))
    assert a == b == f"trajcorpus: error: {missing}: no such file or folder (the input does not exist)"


# --- remote inputs -------------------------------------------------------------------------------

def test_placeholder_uris_are_refused_before_any_request(tmp_path):
    # the catalog's coco-captions entry points at gs://YOUR-BUCKET/coco2017 until the user copies
    # COCO; the emulator address is a dead port, so any request would fail differently
    env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"}
    one_line_exit_2(cli("run", "--catalog", CATALOG, "--dataset", "coco-captions", "--output",
                        str(tmp_path / "o"), env=env),
                    "gs://YOUR-BUCKET/coco2017", "placeholder", "--input")
    one_line_exit_2(cli("episodes", "--kind", "d4rl", "--input", "gs://MY-BUCKET/x.hdf5",
                        env=env), "'MY-BUCKET' is a placeholder")
    one_line_exit_2(cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--output",
                        "gs://YOUR-BUCKET/out", env=env), "gs://YOUR-BUCKET/out", "placeholder")


def test_an_unreachable_host_is_one_line_naming_the_uri(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}/hopper-mixed-v2.hdf5"
    one_line_exit_2(cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--input", uri,
                        "--output", str(tmp_path / "o")), uri, "cannot reach")
    one_line_exit_2(cli("episodes", "--kind", "d4rl", "--input", uri), uri, "cannot reach")


def test_a_missing_bucket_on_gcs_is_one_line(gcs, tmp_path):
    proc = cli("episodes", "--kind", "d4rl", "--input", "gs://no-such-bucket-here/x.hdf5",
               env={"STORAGE_EMULATOR_HOST": gcs.host})
    one_line_exit_2(proc, "gs://no-such-bucket-here/x.hdf5")


def test_publish_checks_the_repo_id_first_and_is_one_line_offline(finished):
    one_line_exit_2(cli("publish", str(finished), "--repo", "not a repo!"), "--repo",
                    "not a valid Hugging Face repo id")
    dead = {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HUB_ETAG_TIMEOUT": "2",
            "HF_TOKEN": "hf_test_not_a_token", "HF_HUB_DISABLE_TELEMETRY": "1"}
    one_line_exit_2(cli("publish", str(finished), "--repo", "someone/something", env=dead),
                    "someone/something")


# --- the job as a process ------------------------------------------------------------------------

def _popen_run(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("TRAJCORPUS_RUN_CHILD", None)
    return subprocess.Popen(
        [sys.executable, "-m", "trajcorpus", "run", "--catalog", CATALOG, "--dataset",
         "demo-d4rl", "--output", str(out), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        # as a terminal starts it: a suite launched in the background (`make test &` from a
        # script) runs with SIGINT ignored, which its children would inherit
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_stops_the_job_with_one_line_and_status_130(tmp_path):
    out = tmp_path / "o"
    proc = _popen_run(out, *ONE_WORKER)
    assert proc.stdout is not None
    seen = []
    for raw in proc.stdout:  # wait until the job is really running
        seen.append(raw.decode())
        if "running on DirectRunner" in seen[-1]:
            break
    assert "running on DirectRunner" in seen[-1], seen  # else the job ended before it ran
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    rest = proc.stdout.read().decode()
    assert proc.wait(timeout=HANG_GUARD) == 130, (seen, rest)  # both, to tell why if not
    lines = [ln for ln in rest.splitlines() if ln.strip()]
    staging = f"{out}/.trajcorpus-tmp/demo-d4rl"
    assert [ln for ln in lines if not ln.startswith("[trajcorpus demo-d4rl]")] == [
        f"trajcorpus: interrupted: the job was stopped; its staging folder {staging} was left "
        f"and the next run of demo-d4rl into {out} cleans it"], rest
    assert Path(staging).is_dir() and not (out / "manifest.json").exists()
    with pytest.raises(ProcessLookupError):  # the whole job group is gone
        os.killpg(proc.pid, 0)
    # ... and the next run cleans it (the folder holds only what a run leaves: no --overwrite)
    again = cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--output", str(out),
                "--quiet", *ONE_WORKER)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not (out / ".trajcorpus-tmp").exists() and (out / "manifest.json").exists()


def test_a_closed_pipe_never_hangs_the_job(tmp_path):
    # `trajcorpus run ... 2>&1 | head -3`: read three lines, then close the pipe
    out = tmp_path / "o"
    proc = _popen_run(out, *ONE_WORKER)
    assert proc.stdout is not None
    head = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    assert all(head)
    assert proc.wait(timeout=HANG_GUARD) == 0  # it finished, quietly
    assert (out / "manifest.json").exists()


# --- the output folder ---------------------------------------------------------------------------

def test_a_finished_output_is_replaced_only_with_overwrite(finished, tmp_path):
    out = tmp_path / "o"
    shutil.copytree(finished, out)
    before = json.loads((out / "manifest.json").read_text())
    one_line_exit_2(cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--output",
                        str(out), "--format", "parquet"), "already holds a finished demo-d4rl",
                    "--overwrite")
    assert json.loads((out / "manifest.json").read_text()) == before  # untouched
    assert any(p.name.endswith(".tar.gz") for p in (out / "data/demo-d4rl").iterdir())
    proc = cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--output", str(out),
               "--format", "parquet", "--overwrite", "--quiet", *ONE_WORKER)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.suffix for p in (out / "data/demo-d4rl").iterdir()} == {".parquet"}


def test_a_folder_of_unrelated_files_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8")
    one_line_exit_2(cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--output",
                        str(out)), "not a trajcorpus output", "'holiday.jpg'", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]


def test_no_empty_shard_under_a_tiny_shard_size(tmp_path):
    out = tmp_path / "o"
    proc = cli("run", "--catalog", CATALOG, "--dataset", "demo-coco-captions", "--output",
               str(out), "--shard_bytes=1000", "--quiet", *ONE_WORKER)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    sequences = json.loads((out / "audit/demo-coco-captions.json").read_text())
    n_seq = sum(a["sequences"] for a in sequences.values())
    for fmt in ("parquet", "webdataset"):
        files = [f for f in manifest["files"] if f["format"] == fmt]
        assert files and all(f["examples"] >= 1 for f in files)
        assert len(files) <= n_seq and sum(f["examples"] for f in files) == n_seq
        names = sorted(f["path"].rsplit("/", 1)[1].split(".")[0] for f in files)
        assert names == [f"train-{i:05d}-of-{len(files):05d}" for i in range(len(files))]
    on_disk = sorted(p.name for p in (out / "data/demo-coco-captions").iterdir())
    assert on_disk == sorted(f["path"].rsplit("/", 1)[1] for f in manifest["files"])
    assert manifest["configs"]["demo-coco-captions"]["info"]["num_shards"] == len(on_disk) // 2
    assert cli("verify", str(out)).returncode == 0


def test_input_that_is_one_minari_dataset_is_read_as_such(tmp_path):
    one = FIX / "mujoco/minari/trajcorpus-fixtures/hopper/mixed-v0"
    out = tmp_path / "o"
    proc = cli("run", "--catalog", CATALOG, "--dataset", "demo-minari", "--input", str(one),
               "--output", str(out), "--option", "episodes_per_unit=20", *ONE_WORKER)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"trajcorpus: note: {one} is one minari dataset: read as such; the catalog entry's " \
           "options.datasets" in proc.stderr
    assert "2 unit(s) of work" in proc.stderr  # --option episodes_per_unit=20 over 40 episodes
    audit = json.loads((out / "audit/demo-minari.json").read_text())
    assert list(audit) == ["Hopper-v5"] and audit["Hopper-v5"]["read"] == 40


# --- what is published ---------------------------------------------------------------------------

def _published_text(out: Path) -> dict[str, str]:
    """Every text a user of the output sees: card, plots' names, audit, manifest, each
    example's meta (decoded from both shard formats)."""
    texts: dict[str, str] = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if not p.is_file():
            continue
        if p.name.endswith(".tar.gz"):
            with tarfile.open(fileobj=gzip.open(p)) as tar:
                texts[rel] = "".join(tar.extractfile(m).read().decode("latin-1")
                                     for m in tar.getmembers() if m.isfile())
        elif p.suffix == ".parquet":
            table = pq.read_table(p)  # a shard's meta, or every value of the episode index
            values = (table.column("meta").to_pylist() if "meta" in table.column_names
                      else [str(v) for col in table.columns for v in col.to_pylist()])
            texts[rel] = "\n".join(values)
        elif p.suffix in (".md", ".json", ".jsonl", ".svg"):
            texts[rel] = p.read_text()
    return texts


def test_lineage_is_relative_and_the_builder_paths_stay_home(finished):
    texts = _published_text(finished)
    metas = [json.loads(m) for m in texts[next(k for k in texts if k.endswith(".parquet") and not k.startswith("index/"))]
             .splitlines()]
    assert metas and {m["lineage"]["uri"] for m in metas} == {"hopper-mixed-v2.hdf5"}
    home = str(REPO)
    leaks = [rel for rel, text in texts.items() if home in text and rel != "manifest.json"]
    assert leaks == []
    info = json.loads(texts["manifest.json"])["configs"]["demo-d4rl"]["info"]
    # the input location once, as the user gave it (here: the catalog's own relative uri)
    assert info["input"] == "tests/fixtures/mujoco/d4rl/hopper-mixed-v2.hdf5"
    assert info["catalog_entry"]["uri"] == info["input"]


def test_publish_uploads_local_inputs_as_a_marker(finished, tmp_path):
    from trajcorpus.shards.hub import upload_files

    out = tmp_path / "o"
    shutil.copytree(finished, out)
    abs_input = str(FIX / "mujoco/d4rl/hopper-mixed-v2.hdf5")
    proc = cli("run", "--catalog", CATALOG, "--dataset", "demo-d4rl", "--input", abs_input,
               "--output", str(out), "--overwrite", "--quiet", *ONE_WORKER)
    assert proc.returncode == 0, proc.stderr[-2000:]
    local = json.loads((out / "manifest.json").read_text())["configs"]["demo-d4rl"]["info"]
    assert local["input"] == abs_input  # the local manifest keeps it, as given
    files = dict(upload_files(str(out)))
    assert "manifest.json" in files and "README.md" in files
    assert not any(".trajcorpus-tmp" in rel for rel in files)
    public = json.loads(files["manifest.json"])
    info = public["configs"]["demo-d4rl"]["info"]
    assert info["input"] == "<local>/hopper-mixed-v2.hdf5"
    assert "--input '<local>/hopper-mixed-v2.hdf5'" in info["command"]
    assert str(REPO) not in files["manifest.json"].decode()
    assert str(REPO) not in (out / "README.md").read_text()


@pytest.mark.parametrize(("dataset", "sub", "dropped"), [
    ("dqn-replay-atari", "atari_dqn_replay/Pong/1", ["games", "runs"]),
    ("dqn-replay-atari", "atari_dqn_replay/Pong/1/replay_logs", ["games", "runs"]),
    ("demo-minari", "mujoco/minari/trajcorpus-fixtures/halfcheetah/mixed-v0", ["datasets"]),
])
def test_selection_options_are_dropped_for_one_dataset_only(capsys, dataset, sub, dropped):
    from trajcorpus.pipelines.inputs import reader_options
    from trajcorpus.schemas.catalog import load_catalog

    entry = load_catalog(CATALOG).get(dataset)
    one = str(FIX / sub)
    options = reader_options(entry, one, True, {"episodes_per_unit": 5})
    assert not set(dropped) & set(options) and options["episodes_per_unit"] == 5
    err = capsys.readouterr().err
    assert f"{one} is one {entry.kind} dataset: read as such" in err
    assert all(f"options.{k}" in err for k in dropped)
    # a root keeps them, as does an input named by the catalog itself
    root = str(FIX / sub.split("/")[0])
    assert set(dropped) <= set(reader_options(entry, root, True, None))
    assert set(dropped) <= set(reader_options(entry, one, False, None))
    assert capsys.readouterr().err == ""
