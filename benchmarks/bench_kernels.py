"""Triton kernels vs bf16 F.linear and tinygemm on a CUDA GPU: median time, speedup, effective bandwidth.

    python benchmarks/bench_kernels.py [--rows 1 4 16 64 256 2048] [--shapes 4096x4096 ...] [--tune]

For each (M, K, N): bf16 F.linear, our int8 weight-only, int4 weight-only (group 128, float zero point),
int8 dynamic, and torch._weight_int4pack_mm (tinygemm) on the same problem. Times are medians from
triton.testing.do_bench, through CUDA graphs for M <= 16. Bandwidth counts the weight, activation and
output bytes once; the device's copy bandwidth is measured first for comparison.
"""

from __future__ import annotations

import argparse
import sys

import torch


def copy_bandwidth_gbs() -> float:
    import triton.testing

    src = torch.empty(2**28, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), return_mode="median")
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def timed(fn, use_graph: bool) -> float:
    import triton.testing

    if use_graph:
        return triton.testing.do_bench_cudagraph(fn, return_mode="median")
    return triton.testing.do_bench(fn, return_mode="median")


def problem(m: int, k: int, n: int):
    from torchao.qtensor.layouts.nibbles import pack_nibbles

    torch.manual_seed(0)
    dev = "cuda"
    x = torch.randn(m, k, dtype=torch.bfloat16, device=dev)
    w = torch.randn(n, k, dtype=torch.bfloat16, device=dev)
    w8 = torch.randint(-128, 128, (n, k), dtype=torch.int8, device=dev)
    s8 = torch.rand(n, dtype=torch.bfloat16, device=dev) / 50
    u = torch.randint(0, 16, (n, k), dtype=torch.uint8, device=dev)
    packed = pack_nibbles(u)
    s4 = torch.rand(n, k // 128, dtype=torch.bfloat16, device=dev) / 20
    z4 = torch.randn(n, k // 128, dtype=torch.bfloat16, device=dev) / 10
    xq = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=dev)
    xs = torch.rand(m, device=dev) / 100
    # tinygemm takes the (N, K // 2) uint8 nibble-packed weight (torch >= 2.5); values differ from ours in
    # nibble order, which does not matter for timing
    tiny = torch.ops.aten._convert_weight_to_int4pack(packed, 8)
    tiny_sz = torch.stack([s4.t(), z4.t()], -1).contiguous()
    return dict(x=x, w=w, w8=w8, s8=s8, packed=packed, s4=s4, z4=z4, xq=xq, xs=xs, tiny=tiny, tiny_sz=tiny_sz)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", type=int, default=[1, 4, 16, 64, 256, 2048])
    parser.add_argument("--shapes", nargs="*", default=["4096x4096", "4096x14336", "14336x4096", "8192x8192"])
    parser.add_argument("--no-tune", action="store_true", help="TORCHAO_AUTOTUNE=0: first config of each bucket")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_kernels.py needs a CUDA GPU (the CPU kernels are in bench_linear.py)", file=sys.stderr)
        return 2
    import os

    if args.no_tune:
        os.environ["TORCHAO_AUTOTUNE"] = "0"
    from torchao.kernels.triton_ops import (
        int4_weight_only_mm_triton,
        int8_dynamic_mm_triton,
        int8_weight_only_mm_triton,
    )

    copy_gbs = copy_bandwidth_gbs()
    device = torch.cuda.get_device_name()
    print(f"{device}, torch {torch.__version__}, measured copy bandwidth {copy_gbs:.0f} GB/s\n")
    print("| K x N | M | bf16 ms | int8 | int4 | int8dq | tinygemm | int4 GB/s | int8 GB/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in args.shapes:
        k, n = (int(v) for v in shape.split("x"))
        for m in args.rows:
            p = problem(m, k, n)
            graph = m <= 16
            runs = {
                "bf16": lambda: torch.nn.functional.linear(p["x"], p["w"]),
                "int8": lambda: int8_weight_only_mm_triton(p["x"], p["w8"], p["s8"], None),
                "int4": lambda: int4_weight_only_mm_triton(p["x"], p["packed"], p["s4"], p["z4"], 128, 0, 2, 8.0),
                "int8dq": lambda: int8_dynamic_mm_triton(p["xq"], p["xs"], p["w8"], p["s8"], torch.bfloat16),
                "tinygemm": lambda: torch.ops.aten._weight_int4pack_mm(p["x"], p["tiny"], 128, p["tiny_sz"]),
            }
            for fn in runs.values():
                fn()  # tune and compile outside the timed region
            ms = {name: timed(fn, graph) for name, fn in runs.items()}
            io = m * k * 2 + m * n * 2
            gbs = lambda wbytes, t: (wbytes + io) / (t * 1e-3) / 1e9  # noqa: E731
            int4_bytes = n * k // 2 + 2 * 2 * n * k // 128
            print(f"| {k}x{n} | {m} | {ms['bf16']:.4f} | {ms['bf16'] / ms['int8']:.2f}x | "
                  f"{ms['bf16'] / ms['int4']:.2f}x | {ms['bf16'] / ms['int8dq']:.2f}x | "
                  f"{ms['bf16'] / ms['tinygemm']:.2f}x | {gbs(int4_bytes, ms['int4']):.0f} | "
                  f"{gbs(n * k + 2 * n, ms['int8']):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
