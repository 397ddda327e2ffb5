"""How the suite is laid out for `make test`'s pytest-xdist workers (tests/conftest.py): whole
modules per worker, the shared demo output's builder first and its readers last with the build's
time in their hang guard, and that build made once for all workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BUILDER, pytest_collection_modifyitems
from support.once import built_once, session_base

REPO = Path(__file__).resolve().parents[1]


class _Item:
    def __init__(self, nodeid: str, *fixtures: str):
        self.nodeid, self.fixturenames, self.marks = nodeid, list(fixtures), []

    def add_marker(self, mark) -> None:
        self.marks.append(mark.mark)


def test_builder_first_readers_last_each_module_whole_and_in_order():
    items = [_Item("tests/test_a.py::t1"), _Item("tests/test_r.py::t1"),
             _Item("tests/test_r.py::t2", "tmp_path", "demo_workspace"),
             _Item("tests/test_b.py::t1"), _Item(f"{BUILDER}::covers"),
             _Item(f"{BUILDER}::identical", "demo_workspace"), _Item("tests/test_b.py::t2")]
    pytest_collection_modifyitems(items)
    assert [i.nodeid for i in items] == [
        f"{BUILDER}::covers", f"{BUILDER}::identical", "tests/test_a.py::t1",
        "tests/test_b.py::t1", "tests/test_b.py::t2", "tests/test_r.py::t1", "tests/test_r.py::t2"]
    guards = {i.nodeid: [(m.name, m.args) for m in i.marks] for i in items if i.marks}
    assert guards == {f"{BUILDER}::identical": [("timeout", (1800,))],
                      "tests/test_r.py::t2": [("timeout", (1800,))]}


def test_make_test_runs_whole_modules_on_two_workers(tmp_path):
    addopts = re.search(r'^addopts = "(.*)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert "--dist loadfile --no-loadscope-reorder" in addopts.group(1)
    venv = tmp_path / "v"
    for extra, want in (((), "-m pytest -q -n 2"), (("TEST_WORKERS=0",), "-m pytest -q -n 0")):
        proc = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "-n", "test",
                               f"PYTHON={sys.executable}", f"VENV={venv}", *extra],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and want in proc.stdout, proc.stdout + proc.stderr


def test_the_shared_build_runs_once_for_every_process_and_keeps_a_failure(tmp_path, monkeypatch):
    calls = []

    def build(path: Path) -> dict:
        calls.append(path)
        path.mkdir()
        return {"stdout": "built", "pid": os.getpid()}

    assert built_once(tmp_path, "ws", build) == {"stdout": "built", "pid": os.getpid()}
    assert built_once(tmp_path, "ws", build)["stdout"] == "built" and calls == [tmp_path / "ws"]
    # another process (another xdist worker) reads the result instead of building again
    code = ("import sys; from pathlib import Path; from support.once import built_once; "
            "print(built_once(Path(sys.argv[1]), 'ws', lambda p: 1/0)['pid'])")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, cwd=REPO / "tests")
    assert proc.returncode == 0 and proc.stdout.strip() == str(os.getpid()), proc.stderr
    failed = built_once(tmp_path, "bad", lambda p: {"error": "why"})
    assert built_once(tmp_path, "bad", lambda p: pytest.fail("built twice")) == failed

    def dies(path: Path) -> dict:  # a build whose test timed out: folder made, no result kept
        path.mkdir()
        raise TimeoutError

    with pytest.raises(TimeoutError):
        built_once(tmp_path, "cut", dies)
    later = built_once(tmp_path, "cut", lambda p: pytest.fail("built again"))
    assert later == {"error": f"{tmp_path / 'cut'}: the shared build did not finish (the first "
                              "test that asked for it failed or timed out)"}
    # the workers of one session share the folder above their own basetemp; a plain run its own
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert session_base(tmp_path / "popen-gw1") == tmp_path
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert session_base(tmp_path) == tmp_path
    assert json.loads((tmp_path / "ws.json").read_text())["stdout"] == "built"
