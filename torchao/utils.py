"""Seed import path torchao.utils (re-exports): benchmark_model, weight_bytes, version flags,
unwrap_tensor_subclass, and TorchAOBaseTensor (which transformers imports from here)."""

from torchao._compat import is_fbcode, torch_version_at_least
from torchao.kernels.timing import benchmark_model, device_sync
from torchao.qtensor.base_tensor import TorchAOBaseTensor
from torchao.qtensor.helpers import weight_bytes
from torchao.qtensor.unwrap import unwrap_tensor_subclass

__all__ = ["TorchAOBaseTensor", "benchmark_model", "device_sync", "weight_bytes", "unwrap_tensor_subclass", "is_fbcode",
           "torch_version_at_least"] + [f"TORCH_VERSION_AT_LEAST_2_{minor}" for minor in range(2, 14)]

# the era's version flags: TORCH_VERSION_AT_LEAST_2_2 ... _2_13
globals().update({f"TORCH_VERSION_AT_LEAST_2_{minor}": torch_version_at_least(f"2.{minor}") for minor in range(2, 14)})
