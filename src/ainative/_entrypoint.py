"""``"package.module:function"`` strings: checked without running user code, or imported.

``check`` is what ``ainative apply --dry-run`` uses: it finds the module with
``importlib.util.find_spec`` (submodules through their parent's search path, so no package
``__init__`` runs), parses its source with ``ast`` and looks for the attribute among the module's
top-level definitions. ``resolve`` imports for real. Both raise ``EntrypointError`` with a message;
spec.py turns it into a SpecError at the document's line.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any

_MAX_SOURCE_BYTES = 8 * 1024 * 1024


class EntrypointError(Exception):
    """The entry point string is malformed, cannot be found, or its module cannot be parsed."""


def split(text: Any, field: str) -> tuple[str, list[str]]:
    """``"a.b:c.d"`` -> ``("a.b", ["c", "d"])``; every part must be a Python identifier."""
    module, sep, attr = str(text).partition(":")
    parts = module.split(".") + attr.split(".")
    if not isinstance(text, str) or not sep or not all(p.isidentifier() for p in parts):
        raise EntrypointError(f"{field} must look like 'module:function' (Python names separated "
                              f"by dots), got {text!r}")
    return module, attr.split(".")


def _ensure_cwd_on_path() -> None:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _find(module: str) -> Any:
    """The module's ModuleSpec, found without executing any package ``__init__``."""
    _ensure_cwd_on_path()
    parts = module.split(".")
    spec: Any = None
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        if i == 0 or name.rpartition(".")[0] in sys.modules:
            spec = importlib.util.find_spec(name)  # top level, or the parent is already imported
        else:
            locations = getattr(spec, "submodule_search_locations", None)
            if locations is None:
                raise EntrypointError(f"{'.'.join(parts[:i])!r} is a module, not a package, so it "
                                      f"has no submodule {parts[i]!r}")
            spec = importlib.machinery.PathFinder.find_spec(name, list(locations))
        if spec is None:
            raise EntrypointError(f"module {name!r} not found (looked in the working directory "
                                  "and sys.path)")
    return spec


def check(text: Any, field: str = "entrypoint") -> str:
    """Check ``text`` names an attribute of an existing module, running none of its code. Returns
    the attribute's last name (the default name of a job)."""
    module, attrs = split(text, field)
    try:
        spec = _find(module)
    except (ImportError, ValueError) as exc:  # a parent package that cannot be found or loaded
        raise EntrypointError(f"{field} {text!r}: {exc}") from None
    except EntrypointError as exc:
        raise EntrypointError(f"{field} {text!r}: {exc}") from None
    if module in sys.modules:  # already imported: looking costs nothing and runs nothing
        if not hasattr(sys.modules[module], attrs[0]):
            raise EntrypointError(f"{field} {text!r}: module {module!r} has no attribute "
                                  f"{attrs[0]!r}")
        return attrs[-1]
    origin = getattr(spec, "origin", None)
    if isinstance(origin, str) and origin.endswith(".py") and os.path.isfile(origin):
        names = _top_level_names(origin, field, text)
        if names is not None and attrs[0] not in names:
            raise EntrypointError(f"{field} {text!r}: {origin} defines no {attrs[0]!r} at top level")
    return attrs[-1]


def _top_level_names(path: str, field: str, text: str) -> set[str] | None:
    """Names a module defines at top level; None when that cannot be known statically
    (``from x import *`` or a module ``__getattr__``)."""
    try:
        with open(path, "rb") as f:
            source = f.read(_MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise EntrypointError(f"{field} {text!r}: cannot read {path}: {exc.strerror}") from None
    if len(source) > _MAX_SOURCE_BYTES:
        return None
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise EntrypointError(f"{field} {text!r}: {path}:{exc.lineno}: SyntaxError: {exc.msg}") \
            from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise EntrypointError(f"{field} {text!r}: cannot parse {path}: {exc}") from None
    names: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return None if "__getattr__" in names else names


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements at module level, including those under if/try/with (``if HAVE_X: def f``)."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            out.extend(_top_level(node.body))
            out.extend(_top_level(getattr(node, "orelse", [])))
            out.extend(_top_level(getattr(node, "finalbody", [])))
            for handler in getattr(node, "handlers", []):
                out.extend(_top_level(handler.body))
    return out


def resolve(text: Any, field: str = "entrypoint") -> Any:
    """Import the module and return the attribute (this runs the module's code)."""
    module, attrs = split(text, field)
    _ensure_cwd_on_path()
    try:
        obj: Any = importlib.import_module(module)
        for part in attrs:
            obj = getattr(obj, part)
        return obj
    except (ImportError, AttributeError) as exc:
        raise EntrypointError(f"{field} {text!r} cannot be imported: {exc}") from None
    except SyntaxError as exc:
        raise EntrypointError(f"{field} {text!r}: {exc.filename}:{exc.lineno}: SyntaxError: "
                              f"{exc.msg}") from None
