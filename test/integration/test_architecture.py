"""The house's one-way arrows (ARCHITECTURE.md), checked on the source: kernels never import the tensor
subclass or the apply layer, qtensor never imports quant_api, quant_api never imports the compatibility
modules, and the compatibility modules only re-export (no functions or classes of their own)."""

import ast
import unittest
from pathlib import Path

from expecttest import TestCase

PACKAGE = Path(__file__).resolve().parents[2] / "torchao"

#: the compatibility modules: the seed era's import paths, re-exports only
COMPAT = ("torchao.quantization", "torchao.dtypes", "torchao.utils", "torchao._eval", "torchao.core",
          "torchao.prototype")
#: modules anything may import
LEAVES = ("torchao.version", "torchao._compat", "torchao.testbed")
FRONT = ("torchao", "torchao.cli", "torchao.__main__")
#: part -> parts it must not import
FORBIDDEN = {
    "kernels": ("qtensor", "quant_api", "io", "compat", "front"),
    "qtensor": ("quant_api", "io", "compat", "front"),
    "quant_api": ("io", "compat", "front"),
    "io": ("compat", "front"),
    "leaf": ("kernels", "qtensor", "quant_api", "io", "compat", "front"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(name: str) -> str:
    if any(name == m or name.startswith(m + ".") for m in COMPAT):
        return "compat"
    if any(name == m or name.startswith(m + ".") for m in LEAVES):
        return "leaf"
    if name in FRONT:
        return "front"
    return name.split(".")[1]


def imported_modules(tree: ast.AST):
    """Every torchao module a file imports, at any depth (lazy imports count too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torchao"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("torchao"))


def sources():
    return [(module_name(p), ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))]


class TestArchitecture(TestCase):
    def test_no_upward_imports(self):
        violations = []
        for name, tree in sources():
            forbidden = FORBIDDEN.get(part_of(name), ())
            for target in imported_modules(tree):
                if part_of(target) in forbidden:
                    violations.append(f"{name} ({part_of(name)}) imports {target} ({part_of(target)})")
        self.assertEqual(violations, [])

    def test_compatibility_modules_only_reexport(self):
        defined = []
        for name, tree in sources():
            if part_of(name) == "compat":
                defined += [f"{name}.{node.name}" for node in tree.body
                            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        self.assertEqual(defined, [])

    def test_every_module_has_a_part(self):
        parts = {part_of(name) for name, _ in sources()}
        self.assertLessEqual(parts, {"kernels", "qtensor", "quant_api", "io", "compat", "leaf", "front"})


if __name__ == "__main__":
    unittest.main()
