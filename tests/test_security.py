"""No code path in ``src/`` may turn data into code: a static scan, plus a check that it catches.

The scan parses every module with :mod:`ast` (so comments and docstrings that *name* a forbidden
call do not trip it, and ``from pickle import loads`` does) and forbids:

* ``pickle`` / ``cPickle`` / ``_pickle`` / ``dill`` / ``cloudpickle`` / ``joblib`` loads,
  ``marshal.loads``, ``shelve.open``, ``pickle.Unpickler`` and ``numpy.load(allow_pickle=...)``
  with anything but a literal ``False``;
* ``torch.load`` without a literal ``weights_only=True``;
* ``yaml.load``/``yaml.load_all`` without ``SafeLoader``/``CSafeLoader``, and ``yaml.unsafe_load``,
  ``yaml.full_load``, ``yaml.Loader``/``UnsafeLoader``/``FullLoader`` anywhere;
* ``eval``, ``exec`` and ``compile`` of strings;
* ``tarfile``'s ``extractall``/``extract`` (any ``.extractall(`` / ``.extract(`` call), and
  ``zipfile``'s as well: archive member names never become paths;
* ``trust_remote_code=True`` (Hugging Face code downloaded with a dataset);
* printing or logging a value whose name says it is a credential.

docs/security.md explains each rule; this file is how they stay true.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal"}
_PICKLE_FUNCS = {"load", "loads", "Unpickler", "_load", "_loads"}
_YAML_UNSAFE_ATTRS = {"unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
                      "UnsafeLoader", "FullLoader"}
_YAML_SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
_CREDENTIAL = re.compile(r"(?i)(secret|passw|credential|api_?key|hf_token|access_token|"
                         r"auth_token|refresh_token|private_key|bearer)")
_LOG_FUNCS = {"print", "debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


class _Scanner(ast.NodeVisitor):
    def __init__(self) -> None:
        self.findings: list[tuple[int, str]] = []
        self.aliases: dict[str, str] = {}  # local name -> "module.attr" or "module"

    def flag(self, node: ast.AST, why: str) -> None:
        self.findings.append((getattr(node, "lineno", 0), why))

    # -- imports: remember aliases, forbid importing the dangerous names directly ---------------
    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                a.name.split(".")[0]
            if a.name in ("shelve",):
                self.flag(node, f"import {a.name} (unpickles on read)")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        mod = node.module or ""
        for a in node.names:
            self.aliases[a.asname or a.name] = f"{mod}.{a.name}"
            if mod.split(".")[0] in _PICKLE_MODULES and a.name in _PICKLE_FUNCS:
                self.flag(node, f"from {mod} import {a.name} (unpickling)")
            if mod == "yaml" and a.name in _YAML_UNSAFE_ATTRS | {"load", "load_all"}:
                self.flag(node, f"from yaml import {a.name} (use yaml.safe_load)")
        self.generic_visit(node)

    def _resolve(self, dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        full = self.aliases.get(head, head)
        return f"{full}.{rest}" if rest else full

    # -- calls -----------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        name = self._resolve(_dotted(node.func))
        mod, _, func = name.rpartition(".")
        root = mod.split(".")[0]
        if root in _PICKLE_MODULES and func in _PICKLE_FUNCS:
            self.flag(node, f"{name}() unpickles")
        if name in ("shelve.open",):
            self.flag(node, "shelve.open() unpickles")
        if name in ("numpy.load", "np.load") or (root in ("numpy", "np") and func == "load"):
            ap = _kw(node, "allow_pickle")
            if ap is not None and not _is_const(ap, False):
                self.flag(node, "numpy.load(allow_pickle=...) other than False")
        if root == "torch" and func == "load":
            if not _is_const(_kw(node, "weights_only"), True):
                self.flag(node, "torch.load() without weights_only=True")
        if root == "yaml" and func in ("load", "load_all"):
            loader = _kw(node, "Loader")
            if loader is None and len(node.args) > 1:
                loader = node.args[1]
            if loader is None or _dotted(loader).rpartition(".")[2] not in _YAML_SAFE_LOADERS:
                self.flag(node, f"yaml.{func}() without SafeLoader (use yaml.safe_load)")
        if root == "yaml" and func in _YAML_UNSAFE_ATTRS:
            self.flag(node, f"yaml.{func}() constructs arbitrary objects")
        if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "compile") \
                and node.func.id not in self.aliases:
            self.flag(node, f"{node.func.id}() of a string")
        if name in ("builtins.eval", "builtins.exec"):
            self.flag(node, f"{name}()")
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("extractall", "extract"):
            self.flag(node, f".{node.func.attr}() writes archive members to paths named by them")
        if _is_const(_kw(node, "trust_remote_code"), True):
            self.flag(node, "trust_remote_code=True runs code shipped with data")
        if (isinstance(node.func, ast.Name) and node.func.id in _LOG_FUNCS) or (
                isinstance(node.func, ast.Attribute) and node.func.attr in _LOG_FUNCS
                and _dotted(node.func.value).split(".")[0] in ("logging", "logger", "log", "LOG",
                                                               "_log", "_logger", "self")):
            for arg in list(node.args) + [k.value for k in node.keywords]:
                for sub in ast.walk(arg):
                    ident = sub.id if isinstance(sub, ast.Name) else (
                        sub.attr if isinstance(sub, ast.Attribute) else "")
                    if ident and _CREDENTIAL.search(ident):
                        self.flag(node, f"logs a credential-like value {ident!r}")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _dotted(node.value) == "yaml" and node.attr in ("Loader", "UnsafeLoader", "FullLoader"):
            self.flag(node, f"yaml.{node.attr} constructs arbitrary objects")
        self.generic_visit(node)


def scan_source(text: str) -> list[tuple[int, str]]:
    """(line, reason) for every forbidden construct in a module's source text."""
    scanner = _Scanner()
    scanner.visit(ast.parse(text))
    return sorted(set(scanner.findings))


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_src_has_modules_to_scan():
    names = {p.relative_to(SRC).as_posix() for p in _modules()}
    assert "trajcorpus/schemas/catalog.py" in names and "trajcorpus/sources/base.py" in names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_no_data_becomes_code(path: Path):
    findings = scan_source(path.read_text(encoding="utf-8"))
    assert not findings, "\n".join(f"{path}:{line}: {why}" for line, why in findings)


# --- the scanner catches what it claims to (each snippet would pass a broken scanner) ----------

BAD = {
    "pickle.loads": "import pickle\npickle.loads(b)\n",
    "pickle.load alias": "import pickle as pk\npk.load(f)\n",
    "from pickle import loads": "from pickle import loads\n",
    "Unpickler": "import pickle\npickle.Unpickler(f).load()\n",
    "joblib": "import joblib\njoblib.load(p)\n",
    "marshal": "import marshal\nmarshal.loads(b)\n",
    "shelve": "import shelve\nshelve.open(p)\n",
    "np allow_pickle True": "import numpy as np\nnp.load(f, allow_pickle=True)\n",
    "np allow_pickle variable": "import numpy\nnumpy.load(f, allow_pickle=flag)\n",
    "torch.load bare": "import torch\ntorch.load(p)\n",
    "torch.load weights_only False": "import torch\ntorch.load(p, weights_only=False)\n",
    "yaml.load bare": "import yaml\nyaml.load(s)\n",
    "yaml.load Loader": "import yaml\nyaml.load(s, Loader=yaml.Loader)\n",
    "yaml.load FullLoader positional": "import yaml\nyaml.load(s, yaml.FullLoader)\n",
    "yaml.unsafe_load": "import yaml\nyaml.unsafe_load(s)\n",
    "yaml.full_load": "import yaml\nyaml.full_load(s)\n",
    "from yaml import load": "from yaml import load\n",
    "eval": "eval(text)\n",
    "exec": "exec(code)\n",
    "compile": "compile(src, 'f', 'exec')\n",
    "tar extractall": "import tarfile\ntarfile.open(p).extractall(d)\n",
    "tar extract": "t.extract(member, path=d)\n",
    "trust_remote_code": "load_dataset(p, trust_remote_code=True)\n",
    "print token": "print('using', hf_token)\n",
    "log secret": "import logging\nlogging.info('k=%s', creds.api_key)\n",
    "logger password": "logger.warning(f'{password}')\n",
}

GOOD = {
    "safe_load": "import yaml\nyaml.safe_load(s)\n",
    "yaml.load SafeLoader": "import yaml\nyaml.load(s, Loader=yaml.SafeLoader)\n",
    "yaml.compose SafeLoader": "import yaml\nyaml.compose(s, Loader=yaml.SafeLoader)\n",
    "np.load default": "import numpy as np\nnp.load(f)\n",
    "np.load allow_pickle False": "import numpy as np\nnp.load(f, allow_pickle=False)\n",
    "torch weights_only": "import torch\ntorch.load(p, weights_only=True)\n",
    "docstring mentions": '"""never pickle.load, eval( or yaml.load( data"""\n',
    "json loads": "import json\njson.loads(s)\n",
    "tar getmembers": "import tarfile\ntarfile.open(fileobj=f).extractfile(m).read()\n",
    "print tokens": "print('tokens', tokens, token_count)\n",
    "method named eval": "model.eval()\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_scanner_flags(name):
    assert scan_source(textwrap.dedent(BAD[name])), name


@pytest.mark.parametrize("name", sorted(GOOD))
def test_scanner_allows(name):
    assert scan_source(textwrap.dedent(GOOD[name])) == [], name
