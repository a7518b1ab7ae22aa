"""Getting quantized models out and back in: checkpoints (safetensors + JSON, checksummed) and
torch.export / AOTInductor packages. Formats for other engines go here, one module each."""

from torchao.io.checkpoint import CheckpointError, load_quantized, save_quantized
from torchao.io.export import export_aoti, export_quantized, load_aoti

__all__ = ["save_quantized", "load_quantized", "CheckpointError", "export_aoti", "export_quantized", "load_aoti"]
