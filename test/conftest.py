import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (testbed.py) importable from every test dir

pytest_plugins = ["pytester", "skip_policy"]

# Without a GPU, the Triton kernels run in the interpreter on CPU tensors. Triton reads this when a
# kernel is decorated, so it is set before any test imports torchao.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
