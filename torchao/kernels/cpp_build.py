"""torchao's C++ CPU kernels (``torchao/kernels/csrc``): built once per machine and torch version with
``torch.utils.cpp_extension`` (g++ and ninja, installed with the package) on first use, then loaded from
torch's extension cache as ``torch.ops.torchao_cpp.*``.

If the build cannot run (no compiler, an unsupported platform) the callers keep using the aten kernels and
one warning says so. ``TORCHAO_CPP_KERNELS=0`` turns the C++ kernels off (the aten kernels then run).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).parent / "csrc"
SOURCES = sorted(str(p) for p in CSRC.glob("*.cpp"))
log = logging.getLogger(__name__)


def _extension_name() -> str:
    """One build per torch version (the extension links against that libtorch) and per content of csrc/
    (sources and headers: torch's own change detection hashes the sources only)."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(CSRC.iterdir()) if p.suffix in (".cpp", ".h")))
    return f"torchao_cpu_kernels_{re.sub(r'[^0-9A-Za-z]', '_', torch.__version__)}_{digest.hexdigest()[:12]}"


@functools.lru_cache(maxsize=None)
def cpp_kernels_available() -> bool:
    """Build (first call on this machine: about a minute on 2 cores) and load the C++ kernels; False, with
    one warning, where that fails, or where ``TORCHAO_CPP_KERNELS=0``."""
    if os.environ.get("TORCHAO_CPP_KERNELS", "1") == "0":
        return False
    try:
        from torch.utils.cpp_extension import load

        log.info("torchao: loading (or building, once) the C++ CPU kernels")
        # -fopenmp: at::parallel_for is inlined from ATen's headers and splits work only when compiled with
        # OpenMP; the library it needs (libgomp.so.1) is the one torch has already loaded
        load(name=_extension_name(), sources=SOURCES, extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"],
             is_python_module=False)
        return True
    except Exception as e:  # any build or load failure: fall back, say so once
        warnings.warn(f"torchao: the C++ CPU kernels could not be built ({type(e).__name__}: {str(e)[:500]}); "
                      "using the aten kernels instead (slower decoding)", RuntimeWarning, stacklevel=2)
        return False
