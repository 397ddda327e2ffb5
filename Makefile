# The README's two commands: `make demo` and `make test`. Both create $(VENV) on first use.
#
#   make demo                       runtime dependencies only, then the job on every bundled corpus
#   make test                       + the dev tools (pytest, ruff, ...), then ruff and the tests
#   make test PYTHON=python3.13 VENV=.venv313     another interpreter, in its own venv
#
# TEST_WORKERS: pytest-xdist worker processes for `make test`, each taking whole test modules
# (tests/conftest.py says how they share the demo output); 0 runs the suite in this process.
#
# TORCH (for `make test`): auto = install torch only from a wheel already on this machine (pip's
# find-links), else its tests are skipped and say so; 1 = install the `torch` extra (pip may
# download it: the PyPI Linux wheel is the CUDA build, several GB); 0 = never.
PYTHON ?= python3
VENV ?= .venv
DEMO_OUT ?= demo-out
TORCH ?= auto
TEST_WORKERS ?= 2
PY := $(VENV)/bin/python
# Bytecode: pip would compile every module it installs (16,000 files, ~55 CPU s of a fresh
# venv's set-up, on one core), while a job imports about 2,300 of them. So pip compiles nothing,
# and the commands below save the bytecode of what they import, once, even where
# PYTHONDONTWRITEBYTECODE is set (as on this build machine): into $(VENV) and the checkout's
# git-ignored __pycache__ folders. With that variable set, every process (the suite starts
# hundreds: jobs, Beam and Dask workers, CLI runs) compiled each module it imported again.
unexport PYTHONDONTWRITEBYTECODE
PIP := $(VENV)/bin/python -m pip install --no-compile --progress-bar on
SUPPORTED := 3.10 3.11 3.12 3.13 3.14
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp

.PHONY: venv demo test lint check-python clean

# The interpreter must be one apache-beam ships wheels for; a venv made by another one is rebuilt.
check-python:
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	case " $(SUPPORTED) " in \
	  *" $$v "*) ;; \
	  *) if [ -n "$$v" ]; then what="Python $$v"; else what="not a working Python"; fi; \
	     echo "$(PYTHON) is $$what: trajcorpus needs Python $(SUPPORTED) (pass PYTHON=/path/to/python3.X)" >&2; exit 1 ;; \
	esac
	@want=$$($(PYTHON) -c 'import sys; print(sys.version.split()[0])'); \
	have=$$($(PY) -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || true); \
	if [ -n "$$have" ] && [ "$$have" != "$$want" ]; then \
		echo "$(VENV) was made by Python $$have, PYTHON is $$want: rebuilding $(VENV)"; \
		rm -rf $(VENV); \
	elif [ -d $(VENV) ] && [ -z "$$have" ]; then \
		echo "$(VENV) is broken (no working $(PY)): rebuilding it"; \
		rm -rf $(VENV); \
	fi

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(VENV)/pyvenv.cfg
	$(PIP) -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(RUNTIME_STAMP)
	$(PIP) -e '.[dev]'
	@case "$(TORCH)" in \
	  1) $(PIP) -e '.[torch]' ;; \
	  0) echo "TORCH=0: torch not installed; its tests will be skipped" ;; \
	  *) if $(PIP) --no-index --no-deps torch 2>/dev/null; then \
	       $(PIP) -e '.[torch]'; \
	     else \
	       echo "torch: no wheel for this Python on this machine; its tests will be skipped (make test TORCH=1 downloads it)"; \
	     fi ;; \
	esac
	touch $@

venv: check-python
	@$(MAKE) --no-print-directory $(RUNTIME_STAMP)

demo: check-python
	@$(MAKE) --no-print-directory $(RUNTIME_STAMP)
	$(PY) -m trajcorpus.pipelines.demo --output $(DEMO_OUT) --overwrite

lint: check-python
	@$(MAKE) --no-print-directory $(DEV_STAMP)
	$(VENV)/bin/ruff check src tests bench examples

test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
