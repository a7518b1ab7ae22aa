"""torchao: quantized tensors, kernels and one-line APIs for PyTorch models.

    import torchao
    from torchao.quantization import int4_weight_only
    torchao.quantize_(model, int4_weight_only(group_size=128))
"""

from torchao import _compat
from torchao import qtensor as _qtensor  # noqa: F401  (registers ops, layouts, safe globals)
from torchao.quant_api import quantize, quantize_
from torchao.quant_api.autoquant import autoquant
from torchao.io import export_aoti, load_aoti, load_quantized, save_quantized
from torchao import dtypes, quantization  # noqa: F401  (``torchao.dtypes.X`` works after ``import torchao``)

_compat.install()

from torchao.version import __version__

__all__ = ["quantize_", "quantize", "autoquant", "save_quantized", "load_quantized", "export_aoti", "load_aoti", "__version__"]
