"""How the math runs fast: CPU wrappers of aten kernels and Triton kernels, registered as torch ops.

Importing this package never needs a GPU; the Triton ops are registered when triton is installed.
"""

import functools

#: how a Triton kernel reads zero points, by ZeroPointDomain name: none, integer (q - z) * s, or float
#: (q - mid) * s + z
ZP_NONE, ZP_INT, ZP_FLOAT = 0, 1, 2
ZP_MODES = {"NONE": ZP_NONE, "INT": ZP_INT, "FLOAT": ZP_FLOAT}


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when triton imports and the torchao Triton ops are registered."""
    try:
        from torchao.kernels import triton_ops  # noqa: F401
    except ImportError:
        return False
    return True
