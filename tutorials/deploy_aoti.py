"""Tutorial: quantize a model, export it, compile it ahead of time, and run it in a fresh process.

    python tutorials/deploy_aoti.py [--fast] [--out DIR]

1. quantize every Linear to int4 (weight-only, groups of 32) with ``torchao.quantize_``;
2. ``torchao.export_aoti``: torch.export with a dynamic batch dimension + AOTInductor -> one .pt2 file;
   also ``torchao.save_quantized`` for a pickle-free checkpoint of the same weights;
3. a new Python process loads the package with ``torchao.load_aoti`` and runs two batch sizes.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

import torchao
from torchao.quantization import int4_weight_only


class MLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.up = nn.Linear(dim, 4 * dim)
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.down(torch.nn.functional.gelu(self.up(x)))


RUNNER = """
import sys, torch, torchao
runner = torchao.load_aoti(sys.argv[1])
expected = torch.load(sys.argv[2], weights_only=True)
for x, y in zip(expected["inputs"], expected["outputs"]):
    out = runner(x)
    err = ((out - y).norm() / y.norm()).item()
    print(f"batch {x.shape[0]}: relative error vs eager {err:.2e}")
    assert err < 2e-2, err  # bf16: Inductor fuses in fp32 and rounds once, eager rounds per op
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="a small model (CI)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the package (default: a temp dir)")
    args = parser.parse_args(argv)
    dim = 128 if args.fast else 1024
    torch.manual_seed(0)
    model = MLP(dim).to(torch.bfloat16).eval()
    torchao.quantize_(model, int4_weight_only(group_size=32))
    print(f"1. quantized: {model.up.weight!r}")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        package = torchao.export_aoti(model, torch.randn(4, dim, dtype=torch.bfloat16), out / "mlp_int4.pt2")
        torchao.save_quantized(model, out / "checkpoint")
        print(f"2. AOTInductor package: {package}; checkpoint: {out / 'checkpoint'}")
        inputs = [torch.randn(b, dim, dtype=torch.bfloat16) for b in (1, 7)]
        with torch.no_grad():
            outputs = [model(x) for x in inputs]
        torch.save({"inputs": inputs, "outputs": outputs}, out / "expected.pt")
        print("3. running the package in a fresh process:")
        result = subprocess.run([sys.executable, "-c", RUNNER, str(package), str(out / "expected.pt")],
                                capture_output=True, text=True)
        print(result.stdout, end="")
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
