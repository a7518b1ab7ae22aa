"""On-disk size of save_quantized checkpoints: float vs each config, as a ratio to the bf16 checkpoint.

    python benchmarks/checkpoint_sizes.py [--models testbed large]

"testbed" is pyllama-5m; "large" a random-weight Llama (hidden 2048, 8 layers, MLP 5632, vocab 32000).
Every Linear is quantized (embeddings stay bf16), so the ratio approaches the weight-only limit as the
Linear share of the parameters grows (int4 with groups of 128 and bf16 scale + zero: 4.25 / 16 = 0.27).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

import torchao
from torchao.io.checkpoint import WEIGHTS_NAME
from torchao.quantization import (
    int4_weight_only,
    int8_dynamic_activation_int4_weight,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
)

sys.path.insert(0, str(Path(__file__).parent))
from bench_autoquant import load  # noqa: E402

CONFIGS = {
    "bf16": None,
    "int8wo": int8_weight_only,
    "int8dq": int8_dynamic_activation_int8_weight,
    "int4wo-128": lambda: int4_weight_only(group_size=128),
    "int4wo-64": lambda: int4_weight_only(group_size=64),
    "8da4w-32": lambda: int8_dynamic_activation_int4_weight(32),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["testbed", "large"], choices=["testbed", "large"])
    args = parser.parse_args(argv)
    print("| model | config | MB on disk | vs bf16 |\n|---|---|---|---|")
    for name in args.models:
        base = load(name)
        reference = None
        for config, make in CONFIGS.items():
            model = copy.deepcopy(base)
            if make is not None:
                torchao.quantize_(model, make())
            with tempfile.TemporaryDirectory() as tmp:
                torchao.save_quantized(model, tmp)
                size = (Path(tmp) / WEIGHTS_NAME).stat().st_size
            reference = reference or size
            print(f"| {name} | {config} | {size / 2**20:.1f} | {size / reference:.3f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
