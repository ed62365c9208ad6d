"""Layer rules import-linter cannot see (it tracks external packages only by their top name):
only serve/ imports Ray Serve."""

from __future__ import annotations

import ast
from pathlib import Path

import ainative

SRC = Path(ainative.__file__).parent


def _imports_ray_serve(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "ray.serve" or a.name.startswith("ray.serve.") for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "ray.serve" or node.module.startswith("ray.serve."):
                lines.append(node.lineno)
            elif node.module == "ray" and any(a.name == "serve" for a in node.names):
                lines.append(node.lineno)
    return lines


def test_only_serve_imports_ray_serve():
    offenders = []
    seen_in_serve = False
    for path in sorted(SRC.rglob("*.py")):
        lines = _imports_ray_serve(ast.parse(path.read_text(encoding="utf-8")))
        if path.relative_to(SRC).parts[0] == "serve":
            seen_in_serve |= bool(lines)
        elif lines:
            offenders.append(f"{path.relative_to(SRC)}:{lines}")
    assert offenders == [], f"ray.serve imported outside ainative/serve: {offenders}"
    assert seen_in_serve            # the check sees the imports it exists for


def test_the_checker_finds_each_import_form():
    for code in ("import ray.serve", "from ray import serve", "from ray.serve.handle import X",
                 "def f():\n    from ray import serve as s\n"):
        assert _imports_ray_serve(ast.parse(code)), code
    assert not _imports_ray_serve(ast.parse("import ray\nfrom ray import util"))
