"""Every tutorial runs end to end in its fast mode, as a user would run it."""

import subprocess
import sys
import unittest
from pathlib import Path

from expecttest import TestCase

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"


class TestTutorials(TestCase):
    def run_tutorial(self, name):
        result = subprocess.run([sys.executable, str(TUTORIALS / name), "--fast"], capture_output=True, text=True,
                                timeout=600)
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
        return result.stdout

    def test_deploy_aoti(self):
        out = self.run_tutorial("deploy_aoti.py")
        self.assertIn("batch 1: relative error vs eager", out)
        self.assertIn("batch 7: relative error vs eager", out)


if __name__ == "__main__":
    unittest.main()
