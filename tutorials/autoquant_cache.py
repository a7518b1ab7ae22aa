"""Tutorial: autoquant picks a quantization per layer; save its measurements and reuse them.

    python tutorials/autoquant_cache.py [--fast]

The second run loads the saved cache (JSON here; pickling AUTOQUANT_CACHE works too, as in the seed
README) and makes the same choices without timing anything again.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

import torchao
import torchao.quantization


def build(dim: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim)).to(torch.bfloat16).eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args(argv)
    dim = 256 if args.fast else 2048
    x = torch.randn(4, dim, dtype=torch.bfloat16)

    model = torchao.autoquant(torch.compile(build(dim)), quiet=not args.fast)  # prints the per-layer table
    with torch.no_grad():
        model(x)  # first call: record shapes, time candidates, swap weights, then run compiled
    first = [c.chosen for c in model.autoquant_plan.choices]
    timed = len(torchao.quantization.AUTOQUANT_CACHE)
    print(f"first run: chose {first}, {timed} timings in AUTOQUANT_CACHE")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "autoquant.json"
        torchao.quantization.save_autoquant_cache(path)
        torchao.quantization.AUTOQUANT_CACHE.clear()          # e.g. a new process
        torchao.quantization.load_autoquant_cache(path)

    calls = []
    again = torchao.autoquant(torch.compile(build(dim)), quiet=True,
                              timer=lambda module, inp: calls.append(1) or 0.0)
    with torch.no_grad():
        again(x)
    second = [c.chosen for c in again.autoquant_plan.choices]
    print(f"second run: chose {second} with {len(calls)} new timings")
    assert second == first and not calls
    return 0


if __name__ == "__main__":
    sys.exit(main())
