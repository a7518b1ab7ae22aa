"""Tutorial: the one-line API. Quantize a model's Linear layers, check the error, compile it.

    python tutorials/quick_start.py [--fast]
"""

import argparse
import sys

import torch
import torch.nn as nn

import torchao
from torchao.quantization import int4_weight_only, int8_dynamic_activation_int8_weight, int8_weight_only


def model_and_input(dim: int):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim)).to(torch.bfloat16).eval()
    return model, torch.randn(8, dim, dtype=torch.bfloat16)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args(argv)
    dim = 256 if args.fast else 2048
    for name, config in [("int8 weight-only", int8_weight_only()), ("int4 weight-only g128", int4_weight_only(128)),
                         ("int8 dynamic", int8_dynamic_activation_int8_weight())]:
        model, x = model_and_input(dim)
        with torch.no_grad():
            reference = model(x)
            torchao.quantize_(model, config)                     # 1. every nn.Linear, in place
            compiled = torch.compile(model, fullgraph=True)      # 2. compile: no graph breaks
            out = compiled(x)
        sqnr = 20 * torch.log10(reference.float().norm() / (reference.float() - out.float()).norm())
        print(f"{name:24s} weight: {type(model[0].weight).__name__}, output SQNR vs bf16 {sqnr:.1f} dB")
        assert sqnr > 15
    return 0


if __name__ == "__main__":
    sys.exit(main())
