"""Import path torchao.prototype.safetensors (re-exports of torchao.io.flat_state_dict)."""

from torchao.io.flat_state_dict import flatten_tensor_state_dict, is_metadata_torchao, unflatten_tensor_state_dict

__all__ = ["flatten_tensor_state_dict", "unflatten_tensor_state_dict", "is_metadata_torchao"]
