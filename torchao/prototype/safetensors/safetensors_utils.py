"""Import path torchao.prototype.safetensors.safetensors_utils (re-exports of torchao.io.flat_state_dict)."""

from torchao.io.flat_state_dict import TENSOR_TYPES, is_metadata_torchao

__all__ = ["is_metadata_torchao", "TENSOR_TYPES"]
