"""Our HQQ against the reference ``hqq`` package and round-to-nearest, layer by layer (weight error).

    pip install hqq    # the reference (also in the test extra); DISABLE_CUDA=1 skips its CUDA build
    python benchmarks/hqq_vs_reference.py [--model DIR_OR_SAFETENSORS] [--settings 4:64 3:64 2:64]

For every 2-D weight inside the transformer blocks: relative L2 error ||W - dequant(W)|| / ||W|| of
round-to-nearest (``intx_weight_only``, integer zero point), ours (``intx_weight_only(use_hqq=True)``:
float zero point, scale and zero optimized; and with ``zero_point_domain=ZeroPointDomain.INT``) and the
package's ``Quantizer.quantize(optimize=True, axis=1)`` with its defaults (float zero point, zero only).
Prints the mean per setting and on how many layers each method's error is below the package's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from torchao.quantization import ZeroPointDomain, intx_weight_only
from torchao.testbed import model_dir


def reference_hqq(w: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    from hqq.core.quantize import Quantizer

    q, meta = Quantizer.quantize(w, nbits=bits, group_size=group, axis=1, optimize=True, device="cpu", bitpack=False)
    return Quantizer.dequantize(q, meta).float().reshape(w.shape)


METHODS = {
    "rtn": lambda w, b, g: intx_weight_only(b, g)(w).dequantize(),
    "ours": lambda w, b, g: intx_weight_only(b, g, use_hqq=True)(w).dequantize(),
    "ours, integer zero": lambda w, b, g: intx_weight_only(b, g, use_hqq=True,
                                                           zero_point_domain=ZeroPointDomain.INT)(w).dequantize(),
    "hqq package": reference_hqq,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model directory or .safetensors file "
                                                                 "(default: the packaged test bed)")
    parser.add_argument("--settings", nargs="*", default=["4:64", "3:64", "2:64"], help="bits:group_size")
    args = parser.parse_args(argv)
    try:
        import hqq  # noqa: F401
    except ImportError:
        print("error: the reference needs the hqq package: pip install hqq",
              file=sys.stderr)
        return 2
    path = args.model or model_dir()
    file = path if path.suffix == ".safetensors" else path / "model.safetensors"
    weights = {k: v.float() for k, v in load_file(str(file)).items()
               if v.dim() == 2 and any(s in k for s in (".layers.", ".layer.")) and "embed" not in k}
    print(f"{file}: {len(weights)} weights\n")
    print("| setting | method | mean relative L2 | layers below the package |")
    print("|---|---|---|---|")
    for setting in args.settings:
        bits, group = (int(v) for v in setting.split(":"))
        errors = {m: {} for m in METHODS}
        for name, w in weights.items():
            for method, fn in METHODS.items():
                errors[method][name] = ((fn(w, bits, group) - w).norm() / w.norm()).item()
        package = errors["hqq package"]
        for method in METHODS:
            wins = "" if method == "hqq package" else \
                f"{sum(errors[method][n] < package[n] for n in weights)} of {len(weights)}"
            print(f"| W{bits}G{group} | {method} | {statistics.mean(errors[method].values()):.5f} | {wins} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
