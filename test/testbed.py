"""Where the shared test-bed models are: $TORCHAO_TESTBED or ../shared/testbed next to the repository."""

import os
import unittest
from pathlib import Path

TESTBED = Path(os.environ.get("TORCHAO_TESTBED", Path(__file__).resolve().parents[2] / "shared" / "testbed"))
PYLLAMA = TESTBED / "pyllama-5m"

requires_pyllama = unittest.skipUnless((PYLLAMA / "model.safetensors").exists(), f"test-bed model not found at {PYLLAMA}")
