"""The suite cannot shrink silently: a skip for any reason but CUDA or the slow marker fails."""

from pathlib import Path

TEST_DIR = Path(__file__).resolve().parents[1]

INNER = '''
import unittest
import pytest

def test_missing_file():
    pytest.skip("test-bed model not found at /nowhere")

def test_missing_package():
    pytest.importorskip("no_such_package_anywhere")

@unittest.skip("needs a CUDA GPU")
def test_needs_cuda():
    pass

@pytest.mark.slow
def test_marked_slow():
    pass

def test_passes():
    assert 1 + 1 == 2
'''


def test_only_cuda_and_slow_skips_are_allowed(pytester, monkeypatch):
    monkeypatch.delenv("TORCHAO_SLOW", raising=False)
    monkeypatch.syspath_prepend(str(TEST_DIR))
    pytester.makeconftest('pytest_plugins = ["skip_policy"]\n')
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2, skipped=2)
    result.stdout.fnmatch_lines(["*test_missing_file was skipped (test-bed model not found at /nowhere)*"])
