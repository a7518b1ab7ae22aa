"""pytest plugin: a test may skip only because it needs CUDA or because it is marked slow.

Any other skip (a missing file, a missing package, an unexpected platform) is reported as a failure, so a
suite that silently shrinks on a fresh clone is caught. Slow tests (``@pytest.mark.slow``) run when
``TORCHAO_SLOW=1`` is set and are skipped with the reason "slow test" otherwise.
"""

import os
import re

import pytest

ALLOWED_SKIP_REASONS = re.compile(r"needs (a )?CUDA|slow test")
SLOW_ENV = "TORCHAO_SLOW"


def pytest_configure(config):
    config.addinivalue_line("markers", f"slow: a test of more than a minute; runs with {SLOW_ENV}=1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get(SLOW_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"slow test: run with {SLOW_ENV}=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not ALLOWED_SKIP_REASONS.search(reason):
            report.outcome = "failed"
            report.longrepr = (f"{item.nodeid} was skipped ({reason}); only tests that need CUDA or are marked "
                               f"slow may skip: ship what it needs in the repository or install it with the "
                               f"README's test command")
