"""Tutorial: extend torchao with your own apply function, layout and registry entry.

    python tutorials/extending.py [--fast]

1. An apply function is any ``weight -> tensor``: here, 6-bit symmetric per channel, built from the
   primitives and stored densely bit-packed.
2. A layout is one class registered with ``@register_layout``: here "sign_magnitude", which stores
   int8 values as (sign bit, 7-bit magnitude) bytes, exactly reversible.
3. A registry entry is ``fn(model, tokenizer=None, export_dirpath=None, local_dir=None, **kwargs)``.
"""

import argparse
import sys

import torch
import torch.nn as nn

import torchao
from torchao.dtypes import AffineQuantizedTensor
from torchao.qtensor import Layout, MappingType, register_layout, to_aq
from torchao.quant_api.registry import compress, register_compression


# 1. an apply function
def six_bit_per_channel(weight: torch.Tensor) -> AffineQuantizedTensor:
    return to_aq(weight, MappingType.SYMMETRIC, (1, weight.shape[1]), torch.int8, -32, 31, layout="bitpacked")


# 2. a layout
@register_layout
class SignMagnitudeLayout(Layout):
    """sign_magnitude: uint8 with bit 7 the sign and bits 0-6 the magnitude of each int8 value (|q| <= 127)."""

    name = "sign_magnitude"
    tensor_names = ("sign_magnitude", "scale", "zero_point")  # not "data": names must not shadow Tensor attributes

    @classmethod
    def pack(cls, int_data, scale, zero_point, spec):
        q = int_data.to(torch.int16)
        data = (q.abs() | ((q < 0).to(torch.int16) << 7)).to(torch.uint8)
        return {"sign_magnitude": data, "scale": scale, "zero_point": zero_point}, ()

    @classmethod
    def unpack(cls, tensors, spec):
        data = tensors["sign_magnitude"].to(torch.int16)
        q = torch.where(data >= 128, -(data & 127), data & 127).to(torch.int8)
        return q, tensors["scale"], tensors.get("zero_point")


# 3. a registry entry
@register_compression("sign_magnitude_int8")
def sign_magnitude_int8(model, tokenizer=None, export_dirpath=None, local_dir=None, **kwargs):
    torchao.quantize_(model, lambda w: to_aq(w, MappingType.SYMMETRIC, (1, w.shape[1]), torch.int8, -127, 127,
                                             layout="sign_magnitude"))
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args(argv)
    dim = 128 if args.fast else 1024
    torch.manual_seed(0)
    x = torch.randn(4, dim)
    for name, run in [("apply function (6-bit, bit-packed)", lambda m: torchao.quantize_(m, six_bit_per_channel)),
                      ("registry entry (sign-magnitude layout)", lambda m: compress(m, "sign_magnitude_int8"))]:
        model = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)).eval()
        reference = model(x)
        run(model)
        out = model(x)
        sqnr = 20 * torch.log10(reference.norm() / (reference - out).norm())
        print(f"{name}: {model[0].weight.spec.layout}, SQNR {sqnr:.1f} dB")
        assert sqnr > 25
    return 0


if __name__ == "__main__":
    sys.exit(main())
