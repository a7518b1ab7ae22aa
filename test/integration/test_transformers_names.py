"""Every torchao name the installed transformers imports exists here, so a transformers upgrade that starts
importing a new one fails this test (rather than every from_pretrained: transformers imports its torchao
integration whenever it loads a model)."""

import ast
import importlib
import unittest
from pathlib import Path

import transformers
from expecttest import TestCase
from transformers.utils import is_torchao_available

#: features of other torchao releases that this package does not claim: transformers imports them only when
#: a user asks for them (the Trainer's low-bit optimizers, the PT2E exporter)
NOT_CLAIMED = ("torchao.optim", "torchao.prototype.low_bit_optim", "torchao.quantization.pt2e")


def torchao_imports():
    """(module, name or None, where) for every import of torchao in transformers' source."""
    root = Path(transformers.__file__).parent
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "torchao" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torchao":
                for alias in node.names:
                    yield node.module, alias.name, where
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "torchao":
                        yield alias.name, None, where


class TestTransformersNames(TestCase):
    def test_transformers_sees_torchao(self):
        """transformers' version gate (torchao >= 0.15.0) is passed, so the integration is live."""
        self.assertTrue(is_torchao_available())

    def test_every_imported_name_exists(self):
        found, missing = 0, []
        for module, name, where in torchao_imports():
            if any(module == m or module.startswith(m + ".") for m in NOT_CLAIMED):
                continue
            found += 1
            try:
                imported = importlib.import_module(module)
            except ImportError as e:
                missing.append(f"{where}: {module} ({e})")
                continue
            if name is not None and not hasattr(imported, name):
                missing.append(f"{where}: {module}.{name}")
        self.assertGreater(found, 5)  # the scan sees the integration's imports
        self.assertEqual(missing, [])


if __name__ == "__main__":
    unittest.main()
