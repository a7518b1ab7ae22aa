"""Float vs each quantized config for one nn.Linear: median latency and speedup, eager and compiled.

    python benchmarks/bench_linear.py [--quick] [--dtypes bf16 fp32] [--shapes 4096x4096 ...] [--rows 1 16 128]

Speedups are over F.linear with weights and activations in the same dtype, in the same run. The configs are
named by the config classes the published torchao also has, so the script runs unchanged with that package
installed in another virtual environment instead of ours (run it from outside this repository there).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn

import torchao
import torchao.quantization as quantization

CONFIGS = {
    "int8wo": lambda: quantization.Int8WeightOnlyConfig(),
    "int4wo-128": lambda: quantization.Int4WeightOnlyConfig(group_size=128),
    "int8dq": lambda: quantization.Int8DynamicActivationInt8WeightConfig(),
    "8da4w-32": lambda: quantization.Int8DynamicActivationInt4WeightConfig(32),
}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def median_ms(fn, x, min_time_s: float, max_runs: int = 200) -> float:
    """Median of repeated timings (at least 5 runs or ``min_time_s`` of running, whichever is more)."""
    with torch.no_grad():
        for _ in range(3):
            fn(x)
        times, start = [], time.perf_counter()
        while len(times) < 5 or (time.perf_counter() - start < min_time_s and len(times) < max_runs):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def run(shapes, rows, dtypes, configs, modes, min_time_s):
    results = []
    for k, n in shapes:
        for dname in dtypes:
            dtype = DTYPES[dname]
            torch.manual_seed(0)
            layer = nn.Linear(k, n, bias=False).to(dtype).eval()
            variants = {"float": layer}
            for name in configs:
                q = nn.Linear(k, n, bias=False).to(dtype).eval()
                q.weight = nn.Parameter(layer.weight.detach().clone(), requires_grad=False)
                torchao.quantize_(q, CONFIGS[name]())
                variants[name] = q
            for mode in modes:
                runners = {}
                for name, module in variants.items():
                    torch._dynamo.reset()
                    runners[name] = torch.compile(module, dynamic=False) if mode == "compiled" else module
                for m in rows:
                    x = torch.randn(m, k, dtype=dtype)
                    base = None
                    for name, fn in runners.items():
                        ms = median_ms(fn, x, min_time_s)
                        base = ms if name == "float" else base
                        results.append(dict(K=k, N=n, dtype=dname, mode=mode, M=m, config=name, ms=ms, speedup=base / ms))
                        print(f"  {k}x{n} {dname} {mode} M={m} {name}: {ms:.3f} ms", file=sys.stderr)
    return results


def table(results) -> str:
    configs = list(dict.fromkeys(r["config"] for r in results))
    keys = list(dict.fromkeys((r["K"], r["N"], r["dtype"], r["mode"], r["M"]) for r in results))
    header = "| K x N | act | mode | M | float ms | " + " | ".join(c for c in configs if c != "float") + " |"
    lines = [header, "|" + "---|" * (5 + len(configs) - 1)]
    for key in keys:
        by_config = {r["config"]: r for r in results if (r["K"], r["N"], r["dtype"], r["mode"], r["M"]) == key}
        k, n, dtype, mode, m = key
        cells = [f"{by_config[c]['speedup']:.2f}x" for c in configs if c != "float"]
        lines.append(f"| {k}x{n} | {dtype} | {mode} | {m} | {by_config['float']['ms']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="*", default=["4096x4096", "4096x11008", "11008x4096"],
                        help="KxN (in_features x out_features)")
    parser.add_argument("--rows", nargs="*", type=int, default=[1, 16, 128])
    parser.add_argument("--dtypes", nargs="*", default=["bf16", "fp32"], choices=list(DTYPES))
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--modes", nargs="*", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per cell")
    parser.add_argument("--quick", action="store_true", help="one small shape, M=1, a few runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.rows, args.min_time = ["1024x1024"], [1], 0.05
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    results = run(shapes, args.rows, args.dtypes, args.configs, args.modes, args.min_time)
    print(f"\nspeedup over F.linear in the same dtype; torchao {torchao.__version__}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
