# The seed's "Quantization Flow" loop followed by its export / aot_compile workaround.
import torch
import torch.nn as nn
from torchao.dtypes.aqt import to_aq
from torchao.quantization.quant_primitives import MappingType

model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16)).eval()
example_inputs = (torch.randn(4, 64),)
reference = model(*example_inputs)


def apply_int8wo_quant(weight):
    mapping_type = MappingType.SYMMETRIC
    target_dtype = torch.int8
    eps = torch.finfo(torch.float32).eps
    zero_point_dtype = torch.int64
    block_size = (1, weight.shape[1])
    return to_aq(weight, mapping_type, block_size, target_dtype, eps=eps, zero_point_dtype=zero_point_dtype)


for n, m in model.named_modules():
    if isinstance(m, torch.nn.Linear):
        # optional filtering for module name, shape etc.
        m.weight = nn.Parameter(apply_int8wo_quant(m.weight))

m = model
from torchao.quantization.utils import unwrap_tensor_subclass
m_unwrapped = unwrap_tensor_subclass(m)


# export
m = torch.export.export(m_unwrapped, example_inputs).module()

# aot_compile
torch._export.aot_compile(m_unwrapped, example_inputs)

max_error = (m(*example_inputs) - reference).abs().max().item()
