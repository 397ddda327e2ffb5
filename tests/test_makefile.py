"""The README's two commands: the Makefile checks the interpreter before it makes a venv, rebuilds a
venv another Python made, and `make demo` installs the runtime dependencies only, visibly.

Interpreters are stand-ins (tiny shell scripts that answer the version queries), so these tests
need no other Python; the real install is what `make demo` / `make test` do on a fresh clone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args],
                          capture_output=True, text=True, timeout=120)


def fake_python(path: Path, version: str) -> Path:
    """An 'interpreter' that answers every query with ``version``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def test_an_unsupported_python_is_refused_before_any_venv(tmp_path):
    venv = tmp_path / "venv"
    proc = make("demo", f"PYTHON={fake_python(tmp_path / 'py39', '3.9')}", f"VENV={venv}")
    assert proc.returncode != 0
    assert "is Python 3.9: trajcorpus needs Python 3.10 3.11 3.12 3.13 3.14" in proc.stderr
    assert "PYTHON=/path/to/python3.X" in proc.stderr
    assert not venv.exists()
    proc = make("check-python", f"PYTHON={tmp_path / 'nothing-here'}", f"VENV={venv}")
    assert proc.returncode != 0 and "is not a working Python" in proc.stderr


def test_a_venv_made_by_another_python_is_rebuilt(tmp_path):
    venv = tmp_path / "venv"
    fake_python(venv / "bin" / "python", "3.12.1")
    (venv / ".runtime-stamp").write_text("")
    proc = make("check-python", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert proc.returncode == 0, proc.stderr
    want = ".".join(map(str, sys.version_info[:3]))
    assert f"{venv} was made by Python 3.12.1, PYTHON is {want}: rebuilding {venv}" in proc.stdout
    assert not venv.exists()


def test_a_broken_venv_is_rebuilt(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".runtime-stamp").write_text("")  # a failed install left this, but no interpreter
    proc = make("check-python", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert proc.returncode == 0 and "is broken" in proc.stdout and not venv.exists()


def test_demo_installs_runtime_dependencies_only_with_progress(tmp_path):
    proc = make("-n", "demo", f"PYTHON={sys.executable}", f"VENV={tmp_path / 'v'}")
    assert proc.returncode == 0, proc.stderr
    installs = [ln for ln in proc.stdout.splitlines() if "pip install" in ln]
    assert any(ln.endswith("pip install --no-compile --progress-bar on -e .") for ln in installs), \
        installs
    assert not any("dev" in ln or "--quiet" in ln or " -q" in ln for ln in installs), installs
    assert "trajcorpus.pipelines.demo --output demo-out --overwrite" in proc.stdout


def test_test_installs_the_dev_extra_and_torch_only_when_at_hand(tmp_path):
    proc = make("-n", "test", f"PYTHON={sys.executable}", f"VENV={tmp_path / 'v'}")
    assert proc.returncode == 0, proc.stderr
    assert "pip install --no-compile --progress-bar on -e '.[dev]'" in proc.stdout
    assert "pip install --no-compile --progress-bar on --no-index --no-deps torch" in proc.stdout  # TORCH=auto: no download
    assert "ruff check src tests bench" in proc.stdout and "-m pytest -q" in proc.stdout


def test_the_commands_write_bytecode_even_where_the_environment_forbids_it(tmp_path):
    """pip compiles nothing (`--no-compile` above), so the demo and the tests must save what they
    compile: otherwise each of the suite's processes compiles every module it imports again."""
    venv = tmp_path / "venv"
    py = tmp_path / "py"
    py.write_text('#!/bin/sh\necho "3.11-${PYTHONDONTWRITEBYTECODE:-unset}"\n')
    py.chmod(0o755)
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "check-python",
                           f"PYTHON={py}", f"VENV={venv}"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert "is Python 3.11-unset:" in proc.stderr, proc.stderr
