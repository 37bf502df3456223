"""The layer rules of the architecture (shared/DESIGN.md §3), asserted on the import graph.

app / pipelines / cli  →  workflows  →  domain  →  store / units / errors

* The domain packages are ordered: imaging < geometry < physics < devices < monitoring < twin <
  study; a package imports only packages before it (and the base modules), never the store, the
  workflows, the report, the CLI or the app. ``imaging`` never imports ``geometry`` (the
  phantom ⇄ landmarks cycle of stage 1) nor ``physics``. ``monitoring`` (data in from the
  bedside) imports only the base modules; the twin imports it.
* ``store`` imports only the base modules; ``workflows`` anything but the presentation layers.
* The presentation layers (``cli``, ``report``, ``app``, ``pipelines``, ``api``) reach the store and the
  domain only through ``workflows``, except to name types: ``from cardiotwin.study import
  FlowSummary`` (a class) or an UPPER_CASE constant is allowed, ``from cardiotwin.imaging import
  phantom`` (a module) or a function is not. The CLI may import the REST API (``cardiotwin api
  serve`` runs it).
* No module imports another module's private (``_name``) names.

Every import statement counts, including those inside functions.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = {"cardiotwin", "cardiotwin.units", "cardiotwin.errors", "cardiotwin.fileio",
        "cardiotwin.provenance", "cardiotwin.privacy"}
DOMAIN = ("imaging", "geometry", "physics", "devices", "monitoring", "twin", "study")
PRESENTATION = ("cli", "report", "app", "pipelines", "api")


def _layer(module: str) -> str:
    """``cardiotwin.physics.steady`` → ``physics``; ``app.views.x`` → ``app``."""
    if module.startswith("app.") or module == "app":
        return "app"
    if module.startswith("pipelines"):
        return "pipelines"
    if module.startswith("validation"):
        return "validation"
    if module in BASE:
        return "base"
    parts = module.split(".")
    return parts[1] if parts[0] == "cardiotwin" and len(parts) > 1 else parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[Path]:
    out = []
    for top in ("cardiotwin", "app", "pipelines", "validation"):
        out += sorted((ROOT / top).rglob("*.py"))
    return out


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import of the project's code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = _module_name(path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                if _is_module(sub):
                    out.append((sub, None, node.lineno))
                else:
                    out.append((base, a.name, node.lineno))
    return [(m, n, ln) for m, n, ln in out if m.split(".")[0] in ("cardiotwin", "app")]


def _allowed(src: str, dst: str) -> bool:
    """May a module of layer ``src`` import a module of layer ``dst`` (names aside)?"""
    if src == dst or dst == "base":
        return True
    if src == "base":
        return False
    if src == "store":
        return False
    if src == "monitoring":
        return False
    if src in DOMAIN:
        return dst in DOMAIN and DOMAIN.index(dst) < DOMAIN.index(src)
    if src == "workflows":
        return dst in DOMAIN or dst == "store"
    if src == "validation":
        return dst in DOMAIN or dst in ("store", "workflows")
    if src in PRESENTATION:
        return (dst in ("workflows", "report") or (src == "app" and dst == "app")
                or (src == "cli" and dst == "api"))  # `cardiotwin api serve` starts the API
    raise AssertionError(f"module layer {src!r} is not in the layer rules of tests/test_layers.py")


def _type_only(module: str, name: str | None) -> bool:
    """Does ``from module import name`` only name a type (a class) or a constant?"""
    if name is None:
        return False
    if name.isupper():
        return True
    obj = getattr(importlib.import_module(module), name, None)
    return isinstance(obj, type) or getattr(obj, "__module__", "") == "typing"


def _violations() -> list[str]:
    bad = []
    for path in _sources():
        me = _module_name(path)
        src = _layer(me)
        for module, name, line in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}: imports {module}" + (f".{name}" if name else "")
            if name and name.startswith("_") and name != "__version__" and module != me:
                bad.append(f"{where} (a private name of another module)")
                continue
            dst = _layer(module)
            if _allowed(src, dst):
                continue
            if src in PRESENTATION and (dst in DOMAIN or dst == "store") and _type_only(module, name):
                continue
            bad.append(f"{where} ({src} → {dst} breaks the layer rules)")
    return bad


def test_the_import_graph_keeps_the_layer_rules():
    bad = _violations()
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("src", "dst", "ok"), [
    ("imaging", "geometry", False),   # the stage-1 phantom ⇄ landmarks cycle
    ("geometry", "imaging", True),
    ("physics", "store", False),
    ("workflows", "store", True),
    ("app", "store", False),          # only through workflows (types aside)
    ("cli", "physics", False),
    ("store", "workflows", False),
    ("monitoring", "imaging", False),  # monitoring imports only the base modules
    ("twin", "monitoring", True),
    ("api", "store", False),          # the REST API too goes through workflows
    ("api", "workflows", True),
    ("cli", "api", True),             # `cardiotwin api serve`
    ("api", "cli", False),
])
def test_the_rules_themselves(src, dst, ok):
    # the checker refuses what DESIGN.md forbids (guards against a rule table that allows all)
    assert _allowed(src, dst) is ok
