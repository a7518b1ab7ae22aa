import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (testbed.py) importable from every test dir

pytest_plugins = ["pytester", "skip_policy"]

# hypothesis: a few dozen examples per property by default; HYPOTHESIS_PROFILE=slow runs many more
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("default", max_examples=30, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("slow", max_examples=500, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:  # pragma: no cover
    pass

# Without a GPU, the Triton kernels run in the interpreter on CPU tensors. Triton reads this when a
# kernel is decorated, so it is set before any test imports torchao.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
