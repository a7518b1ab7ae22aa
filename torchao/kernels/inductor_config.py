"""The Inductor settings the quantized kernels want (``quantize_(..., set_inductor_config=True)``).

int8 x int8 -> int32 matmuls fused with their scaling (``force_fuse_int_mm_with_mul``), mixed-dtype
matmuls (``use_mixed_mm``), coordinate-descent tuning of the generated Triton kernels and the FX graph
cache. Settings a torch release does not have are skipped; the float32 matmul precision is left alone.
"""

from __future__ import annotations

from typing import Dict

__all__ = ["RECOMMENDED_INDUCTOR_CONFIG", "recommended_inductor_config_setter"]

RECOMMENDED_INDUCTOR_CONFIG: Dict[str, bool] = {
    "force_fuse_int_mm_with_mul": True,
    "use_mixed_mm": True,
    "coordinate_descent_tuning": True,
    "coordinate_descent_check_all_directions": True,
    "fx_graph_cache": True,
}


def recommended_inductor_config_setter() -> Dict[str, bool]:
    """Apply RECOMMENDED_INDUCTOR_CONFIG to ``torch._inductor.config``; returns what was set."""
    from torch._inductor import config

    applied = {k: v for k, v in RECOMMENDED_INDUCTOR_CONFIG.items() if hasattr(config, k)}
    for key, value in applied.items():
        setattr(config, key, value)
    return applied
