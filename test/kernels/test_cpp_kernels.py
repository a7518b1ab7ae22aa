"""Our C++ CPU kernels (torchao/kernels/csrc) for int8 activations x int4 weights (8da4w) and x int8 weights
(int8 dynamic, few rows), and float activations x int8 / int4 weights (weight-only decode): exact against a float64 reference built from the same integers, on odd shapes and
every group size; the portable paths equal the VNNI paths; the linears pick them, eagerly, compiled and
exported; a failed build falls back with one warning."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

import torch
import torch.nn.functional as F
from expecttest import TestCase

from torchao.kernels import cpu as cpu_kernels
from torchao.kernels.cpp_build import cpp_kernels_available
from torchao.qtensor.act_quant import get_activation_quantizer
from torchao.qtensor.linear import select_linear_kernel
from torchao.quantization import Int8DynamicActivationInt4WeightConfig

#: (N, K, group size): one block of 64 channels, many, K not a power of two, groups 32 .. 256
SHAPES = [(64, 32, 32), (128, 96, 32), (192, 640, 128), (320, 512, 64), (64, 1024, 256)]
ROWS = [1, 2, 3, 8, 33]


def random_int4_weight(n, k, group, seed):
    """(packed (N, K/2) uint8, scales_and_zeros (K/G, N, 2) bf16, float64 weight (N, K))."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (n, k), generator=g)
    scales = (torch.rand(k // group, n, generator=g) * 0.02 + 1e-3).to(torch.bfloat16)
    zeros = (torch.randn(k // group, n, generator=g) * 0.01).to(torch.bfloat16)
    dequantized = ((q.double() - 8).reshape(n, k // group, group) * scales.double().t().unsqueeze(-1)
                   + zeros.double().t().unsqueeze(-1)).reshape(n, k)
    return cpu_kernels.int4_cpu_pack(q), torch.stack([scales, zeros], -1), dequantized


def kernel_weight(weight: torch.Tensor, m: int, weight_only: bool = True) -> torch.Tensor:
    """The float64 (N, K) weight an int4 kernel (weight-only or 8da4w) multiplies for ``m`` rows and a group of a
    multiple of 32: exact, or rounded to bf16 where a dequantizing kernel runs (AMX CPUs: more than AMX_FEW_ROWS;
    weight-only on AVX-512 BF16 CPUs without AMX: from AVX512_INT4_GEMM_MIN_ROWS rows, K a multiple of 32)."""
    amx = cpu_kernels.CPU_HAS_AMX_BF16
    dequantizing = (amx and m > cpu_kernels.AMX_FEW_ROWS) or (
        weight_only and not amx and cpu_kernels.CPU_HAS_AVX512_BF16 and m >= cpu_kernels.AVX512_INT4_GEMM_MIN_ROWS
        and weight.shape[1] % 32 == 0)
    return weight.to(torch.bfloat16).double() if dequantizing else weight


def temporary_directory(test: TestCase) -> str:
    """A directory removed when ``test`` ends."""
    directory = tempfile.mkdtemp()
    test.addCleanup(shutil.rmtree, directory)
    return directory


#: the environment variables that switch the C++ kernels' CPU paths (each read once per process)
CPU_PATH_SWITCHES = ("TORCHAO_CPU_PORTABLE", "TORCHAO_CPU_NO_AMX", "TORCHAO_CPU_NO_VBMI")


def outputs_in_subprocess(test: TestCase, script: str, switches: dict):
    """What ``script`` saves to the path it is given as argv[1], run in a fresh Python process with the CPU path
    ``switches`` set and the others unset."""
    env = {k: v for k, v in os.environ.items() if k not in CPU_PATH_SWITCHES}
    env.update(switches)
    path = os.path.join(temporary_directory(test), "outputs.pt")
    subprocess.run([sys.executable, "-c", script, path], check=True, env=env, timeout=300)
    return torch.load(path)


def assert_compiled_and_exported_equal(test: TestCase, weight, x, op_name: str):
    """A Linear holding ``weight`` gives its eager output on ``x`` compiled (static and symbolic M: the Python
    op then chooses the same kernel at run time) and exported, whose graph calls ``op_name``."""
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    with torch.no_grad():
        eager = linear(x)
        test.assertTrue(torch.equal(torch.compile(linear)(x), eager))
        test.assertTrue(torch.equal(torch.compile(linear, dynamic=True)(x), eager))
        exported = torch.export.export(linear, (x,))
    test.assertIn(op_name, str(exported.graph_module.code))
    test.assertTrue(torch.equal(exported.module()(x), eager))


def relative(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


class TestInt8DynamicInt4Kernel(TestCase):
    def setUp(self):
        self.assertTrue(cpp_kernels_available(), "the C++ kernels did not build (g++ and ninja are needed)")

    def test_against_float64_reference(self):
        """Integer dot products per group are exact; the float epilogue adds fp32 rounding only (< 1e-5). On AMX
        CPUs from more than AMX_FEW_ROWS rows: the same against the weight rounded to bf16."""
        for n, k, group in SHAPES:
            packed, scales_and_zeros, weight = random_int4_weight(n, k, group, seed=n + k)
            for m in ROWS:
                for act in ("int8_per_token_asym", "int8_per_token_sym"):
                    with self.subTest(n=n, k=k, group=group, m=m, act=act):
                        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)) * 3 + 0.5
                        q, scale, zero = get_activation_quantizer(act).quantize(x)
                        out = cpu_kernels.int8_dynamic_int4_mm(q, scale, zero, packed, group, scales_and_zeros,
                                                               torch.float32)
                        zero64 = 0 if zero is None else zero.double()[:, None]
                        rounded = kernel_weight(weight, m, weight_only=False)
                        reference = (scale.double()[:, None] * (q.double() - zero64)) @ rounded.t()
                        self.assertEqual(out.shape, (m, n))
                        self.assertLess(relative(out, reference), 1e-5)

    def test_extreme_integers(self):
        """All weights 15 and activations -128 (asymmetric zero 127): the largest int32 sums stay exact."""
        n, k, group = 64, 256, 256
        packed = cpu_kernels.int4_cpu_pack(torch.full((n, k), 15))
        scales_and_zeros = torch.stack([torch.ones(1, n), torch.zeros(1, n)], -1).to(torch.bfloat16)
        q = torch.full((2, k), -128, dtype=torch.int8)
        out = cpu_kernels.int8_dynamic_int4_mm(q, torch.ones(2), torch.full((2,), 127, dtype=torch.int32), packed,
                                               group, scales_and_zeros, torch.float32)
        self.assertTrue(torch.equal(out, torch.full((2, n), -255.0 * 7 * k)))

    def test_portable_path_equals_vnni_path(self):
        """TORCHAO_CPU_PORTABLE=1 (read once per process) runs the scalar loops: same values (int4 and int8)."""
        script = textwrap.dedent("""
            import sys, torch
            sys.path.insert(0, %r)
            from test_cpp_kernels import random_int4_weight
            from torchao.kernels import cpu
            packed, sz, _ = random_int4_weight(128, 320, 64, seed=3)
            q = torch.randint(-128, 128, (3, 320), dtype=torch.int8, generator=torch.Generator().manual_seed(4))
            scale = torch.rand(3, generator=torch.Generator().manual_seed(5)) + 0.1
            out = cpu.int8_dynamic_int4_mm(q, scale, torch.tensor([0, 5, -9], dtype=torch.int32),
                                           packed, 64, sz, torch.float32)
            w8 = torch.randint(-128, 128, (70, 320), dtype=torch.int8, generator=torch.Generator().manual_seed(6))
            out8 = torch.ops.torchao.int8_dynamic_int8_mm_cpu(q, scale, w8, torch.ones(70), torch.float32)
            x = torch.randn(3, 321, generator=torch.Generator().manual_seed(7))
            w = torch.randint(-128, 128, (70, 321), dtype=torch.int8, generator=torch.Generator().manual_seed(8))
            gemv = torch.ops.torchao.int8_weight_only_gemv_cpu(x, w, torch.linspace(0.1, 1, 70))
            gemv4 = torch.ops.torchao.int4_weight_only_gemv_cpu(x[:, :320].contiguous(), packed, 64, sz)
            torch.save((out, out8, gemv, gemv4), sys.argv[1])
        """) % os.path.dirname(os.path.abspath(__file__))
        outputs = [outputs_in_subprocess(self, script, {}), outputs_in_subprocess(self, script, {"TORCHAO_CPU_PORTABLE": "1"})]
        self.assertLess(relative(outputs[1][0], outputs[0][0]), 1e-6)
        self.assertTrue(torch.equal(outputs[1][1], outputs[0][1]))  # one int32 sum per output: bit-equal
        self.assertLess(relative(outputs[1][2], outputs[0][2]), 1e-6)  # float sums in another order
        self.assertLess(relative(outputs[1][3], outputs[0][3]), 1e-5)

    def test_vbmi_and_plain_vnni_agree(self):
        """From 2 rows the VNNI kernel with VBMI transposes (natural channel order, 512-bit dot products) and the
        one without (TORCHAO_CPU_NO_VBMI=1) give the same exact int32 sums; only the fp32 epilogue's order differs
        (< 1e-6). Row counts across the 4-row tiles, asymmetric and symmetric activations, (s, z) pairs and scales
        only, groups 32 to 256."""
        script = textwrap.dedent("""
            import sys, torch
            sys.path.insert(0, %r)
            from test_cpp_kernels import random_int4_weight
            from torchao.kernels import cpu
            results = []
            for n, k, group in ((64, 256, 32), (192, 640, 128), (128, 512, 256)):
                packed, sz, _ = random_int4_weight(n, k, group, seed=n + k)
                for m in (2, 3, 4, 5, 7, 9):
                    g = torch.Generator().manual_seed(m)
                    q = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
                    scale = torch.rand(m, generator=g) + 0.1
                    zero = torch.randint(-40, 40, (m,), dtype=torch.int32, generator=g)
                    for z, s in ((zero, sz), (None, sz), (zero, sz[..., :1].contiguous())):
                        results.append(cpu.int8_dynamic_int4_mm(q, scale, z, packed, group, s, torch.float32))
            torch.save(results, sys.argv[1])
        """) % os.path.dirname(os.path.abspath(__file__))
        with_vbmi = outputs_in_subprocess(self, script, {"TORCHAO_CPU_NO_AMX": "1"})
        without = outputs_in_subprocess(self, script, {"TORCHAO_CPU_NO_AMX": "1", "TORCHAO_CPU_NO_VBMI": "1"})
        self.assertEqual(len(with_vbmi), 54)
        for a, b in zip(with_vbmi, without):
            self.assertLess(relative(a, b), 1e-6)

    def test_scales_only_and_16_bit_outputs(self):
        """Scales only ((K/G, N, 1), zeros 0) give the same floats as (s, 0) pairs; bf16 / fp16 outputs are the
        float32 output rounded (bit-equal), on the one-row and the many-row paths."""
        packed, scales_and_zeros, _ = random_int4_weight(192, 640, 128, seed=11)
        pairs = torch.stack([scales_and_zeros[..., 0], torch.zeros_like(scales_and_zeros[..., 0])], -1)
        for m in (1, 5):
            q = torch.randint(-128, 128, (m, 640), dtype=torch.int8, generator=torch.Generator().manual_seed(m))
            scale, zero = torch.rand(m) + 0.1, torch.randint(-20, 20, (m,), dtype=torch.int32)
            expected = cpu_kernels.int8_dynamic_int4_mm(q, scale, zero, packed, 128, pairs, torch.float32)
            for dtype in (torch.float32, torch.bfloat16, torch.float16):
                with self.subTest(m=m, dtype=dtype):
                    out = cpu_kernels.int8_dynamic_int4_mm(q, scale, zero, packed, 128,
                                                           scales_and_zeros[..., :1].contiguous(), dtype)
                    self.assertEqual(out.dtype, dtype)
                    self.assertTrue(torch.equal(out, expected.to(dtype)))

    def test_bad_shapes_are_named(self):
        packed, scales_and_zeros, _ = random_int4_weight(64, 64, 32, seed=0)
        q = torch.zeros(1, 64, dtype=torch.int8)
        with self.assertRaisesRegex(RuntimeError, "N = 32 is not a multiple of 64"):
            cpu_kernels.int8_dynamic_int4_mm(q, torch.ones(1), None, packed[:32], 32, scales_and_zeros[:, :32],
                                             torch.float32)
        with self.assertRaisesRegex(RuntimeError, r"packed \(N, K / 2\) uint8 expected for K = 96"):
            cpu_kernels.int8_dynamic_int4_mm(torch.zeros(1, 96, dtype=torch.int8), torch.ones(1), None, packed, 32,
                                             scales_and_zeros, torch.float32)


class TestInt8DynamicInt8Kernel(TestCase):
    def setUp(self):
        self.assertTrue(cpp_kernels_available(), "the C++ kernels did not build (g++ and ninja are needed)")

    def test_against_float64_reference(self):
        """K not a multiple of 64 (masked tails), N not a multiple of 4, the extreme integers: int32 sums exact."""
        op = torch.ops.torchao.int8_dynamic_int8_mm_cpu
        for n, k in ((1, 1), (5, 17), (64, 64), (131, 100), (7, 1000)):
            for m in (1, 2, 3, 4, 5, 16):
                with self.subTest(n=n, k=k, m=m):
                    g = torch.Generator().manual_seed(n * k + m)
                    x = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
                    w = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=g)
                    x[0], w[0] = -128, -128  # the largest products
                    a, s = torch.rand(m, generator=g) + 0.5, torch.rand(n, generator=g) + 0.5
                    out = op(x, a, w, s, torch.float32)
                    reference = a.double()[:, None] * s.double()[None] * (x.double() @ w.double().t())
                    self.assertLess(relative(out, reference), 1e-6)
                    for dtype in (torch.bfloat16, torch.float16):  # the float32 values rounded, bit-equal
                        self.assertTrue(torch.equal(op(x, a, w, s, dtype), out.to(dtype)))

    def test_int8_dynamic_linear_decodes_on_it(self):
        """int8 dynamic (per-token activations) at M <= 16 runs the C++ kernel: bf16 output rounding only."""
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig

        w = torch.randn(96, 200, dtype=torch.bfloat16)
        q = Int8DynamicActivationInt8WeightConfig()(w)
        for m in (1, 3, 16, 17):
            x = torch.randn(m, 200, dtype=torch.bfloat16)
            xq, scale, _ = get_activation_quantizer(q.spec.act_quant).quantize(x)
            reference = (scale.double()[:, None] * xq.double()) @ q.dequantize().double().t()
            self.assertLess(relative(F.linear(x, q), reference), 2 ** -8, msg=f"M={m}")


class TestFloatInt8Gemv(TestCase):
    """Float activations x int8 weights (csrc/float_int8_gemv.cpp): float32 sums; x unrounded for one row,
    rounded to bf16 for more (as the aten kernel does)."""

    def setUp(self):
        self.assertTrue(cpp_kernels_available(), "the C++ kernels did not build (g++ and ninja are needed)")

    def test_against_float64_reference(self):
        """K not a multiple of 16, 32 or 64 (masked tails), N odd, rows 1..17 (both paths' tiles and the rest).
        One row: float32 x unrounded, float32 sums (< 1e-6). More rows of float32 / bf16 x: x rounded to bf16,
        exact bf16 products, float32 sums (< 1e-6 against that x); bf16 outputs are the float32 outputs rounded
        (bit-equal). float16 x: float32 products at every M (float16 output rounding only)."""
        op = torch.ops.torchao.int8_weight_only_gemv_cpu
        for n, k in ((1, 1), (5, 17), (64, 64), (131, 100), (7, 1000), (3, 4096 + 48)):
            g = torch.Generator().manual_seed(n * k)
            w = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=g)
            w[0] = -128
            s = torch.rand(n, generator=g) * 0.01 + 1e-4
            weight = w.double() * s.double()[:, None]
            for m in (1, 2, 4, 5, 8, 9, 17):
                with self.subTest(n=n, k=k, m=m):
                    x = torch.randn(m, k, generator=g) * 4
                    out = op(x, w, s)
                    self.assertEqual((out.shape, out.dtype), ((m, n), torch.float32))
                    x_used = x if m == 1 else x.to(torch.bfloat16)
                    self.assertLess(relative(out, x_used.double() @ weight.t()), 1e-6)
                    x_bf16 = x.to(torch.bfloat16)
                    self.assertTrue(torch.equal(op(x_bf16, w, s), op(x_bf16.float(), w, s).to(torch.bfloat16)))
                    x_fp16 = x.to(torch.float16)
                    self.assertLess(relative(op(x_fp16, w, s), x_fp16.double() @ weight.t()), 2 ** -10)

    def test_int8_weight_only_decodes_on_it(self):
        """Up to 16 rows go to the C++ kernel (one row: float32 x unrounded, closer to the reference than the aten
        kernel's bf16 activations; more: bf16 x, float32 output); gradients flow through the Python op's
        backward; compile (static and symbolic M) and export keep the numbers."""
        from torchao.quantization import Int8WeightOnlyConfig

        q = Int8WeightOnlyConfig()(torch.randn(96, 200))
        reference_weight = q.dequantize().double()
        x = torch.randn(1, 200)
        self.assertLess(relative(F.linear(x, q), x.double() @ reference_weight.t()), 1e-6)
        x16 = torch.randn(16, 200)
        self.assertLess(relative(F.linear(x16, q), x16.to(torch.bfloat16).double() @ reference_weight.t()), 1e-6)
        x3 = torch.randn(3, 200, requires_grad=True)
        out = F.linear(x3, q)
        out.sum().backward()
        self.assertLess(relative(out, x3.detach().double() @ reference_weight.t()), 2 ** -7)
        self.assertLess(relative(x3.grad, reference_weight.sum(0).expand(3, -1)), 2 ** -7)
        assert_compiled_and_exported_equal(self, q, x, "torchao.int8_weight_only_gemv_cpu")

    def test_bad_inputs_are_named(self):
        op = torch.ops.torchao.int8_weight_only_gemv_cpu
        w = torch.zeros(4, 8, dtype=torch.int8)
        with self.assertRaisesRegex(RuntimeError, "float32, bfloat16 or float16 activations expected, got Int"):
            op(torch.zeros(1, 8, dtype=torch.int32), w, torch.ones(4))
        with self.assertRaisesRegex(RuntimeError, r"int8 w \(N, K\) expected, got \[1, 9\]"):
            op(torch.zeros(1, 9), w, torch.ones(4))
        with self.assertRaisesRegex(RuntimeError, "one scale per output channel expected, got 3 for N = 4"):
            op(torch.zeros(1, 8), w, torch.ones(3))


class TestBf16Int4Gemv(TestCase):
    """bfloat16 activations x int4 weights in aten's packing (csrc/bf16_int4_gemv.cpp): bf16 products are exact,
    sums float32; float32 activations are rounded to bf16 first, as the aten kernel does."""

    def setUp(self):
        self.assertTrue(cpp_kernels_available(), "the C++ kernels did not build (g++ and ninja are needed)")
        if not cpu_kernels.INT4_PACKING_IS_BLOCKED_BY_64:
            self.skipTest("this CPU's aten int4 packing is not the AVX-512 one the kernel reads")

    def test_against_float64_reference(self):
        """Every group size, odd K, rows 1..9 (tiles of 4 and the rest) and, on AMX CPUs, the AMX path's tile
        tails (rows 8, 17, 33, 100), (s, z) pairs and scales only: float32 accumulation only (< 1e-5) of the
        kernel's weight (exact; on the AMX path rounded to bf16, as int4_cpu_dequantize and F.linear on the
        dequantized weight have it); bf16 outputs are the float32 outputs rounded, bit-equal."""
        op = torch.ops.torchao.int4_weight_only_gemv_cpu
        for n, k, group in SHAPES:
            packed, scales_and_zeros, weight = random_int4_weight(n, k, group, seed=n + k)
            zeros = scales_and_zeros[..., 1].double().t().repeat_interleave(group, dim=1)  # (N, K)
            for m in (1, 2, 3, 5, 8, 9, 17, 33, 100):
                with self.subTest(n=n, k=k, group=group, m=m):
                    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)) * 3 + 0.5
                    x_bf16 = x.to(torch.bfloat16)
                    reference = x_bf16.double() @ kernel_weight(weight, m).t()
                    out = op(x, packed, group, scales_and_zeros)
                    self.assertEqual((out.shape, out.dtype), ((m, n), torch.float32))
                    self.assertLess(relative(out, reference), 1e-5)
                    self.assertTrue(torch.equal(op(x_bf16, packed, group, scales_and_zeros), out.to(torch.bfloat16)))
                    scales_only = op(x, packed, group, scales_and_zeros[..., :1].contiguous())
                    reference = x_bf16.double() @ kernel_weight(weight - zeros, m).t()
                    self.assertLess(relative(scales_only, reference), 1e-5)

    def test_int4_weight_only_runs_on_it(self):
        """Int4WeightOnlyConfig on CPU: decode rows take the C++ kernel (float32 output unrounded: 1e-5 of the
        reference, where the aten kernel rounds to bf16: 2e-3); gradients take aten; compile and export keep the
        op."""
        from torchao.quantization import Int4WeightOnlyConfig

        if not cpu_kernels.CPU_HAS_AVX512_BF16:
            self.skipTest("no AVX-512 BF16 on this CPU: int4 weight-only stays on the aten kernel")
        q = Int4WeightOnlyConfig(64)(torch.randn(128, 256))
        # the kernel's weight, in float64: bf16 scales and zeros (q.dequantize() uses the float32 qparams kept
        # beside them, int4_cpu_dequantize rounds to bf16)
        codes = cpu_kernels.int4_cpu_unpack(q.packed, 128, 256).double().reshape(128, 4, 64)
        scales, zeros = q.scales_and_zeros.double().unbind(-1)
        weight = ((codes - 8) * scales.t().unsqueeze(-1) + zeros.t().unsqueeze(-1)).reshape(128, 256)
        x = torch.randn(2, 256)
        self.assertEqual(select_linear_kernel(x, q).name, "cpu_int4_weight_only")
        self.assertLess(relative(F.linear(x, q), x.to(torch.bfloat16).double() @ weight.t()), 1e-5)
        x_grad = x.clone().requires_grad_()
        F.linear(x_grad, q).sum().backward()
        self.assertLess(relative(x_grad.grad, weight.sum(0).expand(2, -1)), 2 ** -7)
        assert_compiled_and_exported_equal(self, q, x, "torchao.int4_weight_only_gemv_cpu")

    def test_bad_inputs_are_named(self):
        op = torch.ops.torchao.int4_weight_only_gemv_cpu
        packed, scales_and_zeros, _ = random_int4_weight(64, 64, 32, seed=0)
        with self.assertRaisesRegex(RuntimeError, "float32 or bfloat16 x \\(M, K\\) expected, got \\[1, 64\\] Half"):
            op(torch.zeros(1, 64, dtype=torch.float16), packed, 32, scales_and_zeros)
        with self.assertRaisesRegex(RuntimeError, "N = 32 is not a multiple of 64"):
            op(torch.zeros(1, 64), packed[:32], 32, scales_and_zeros[:, :32])
        with self.assertRaisesRegex(RuntimeError, "group_size 48 must be even and divide K = 64"):
            op(torch.zeros(1, 64), packed, 48, scales_and_zeros)
        with self.assertRaisesRegex(RuntimeError, "bfloat16 scales_and_zeros"):
            op(torch.zeros(1, 64), packed, 32, scales_and_zeros.float())


class TestWeightOnlyManyRows(TestCase):
    """Weight-only int8 / int4 for many rows (prefill, batched decode): on AMX CPUs the AMX tile kernels
    (csrc/bf16_int8_amx.cpp, bf16_int4_amx.cpp), elsewhere the AVX-512 kernels; shapes that leave partial tiles
    of rows (M % 16), channels (N % 32) and k (K % 32), several chunks of K (256 each) and partial tasks."""

    def setUp(self):
        self.assertTrue(cpp_kernels_available(), "the C++ kernels did not build (g++ and ninja are needed)")

    def test_int8_against_float64_reference(self):
        """bf16 x (float32 x rounded to it), exact products, float32 sums (< 1e-6); bf16 / fp16 outputs are the
        float32 outputs rounded, bit-equal. K a multiple of 32 (the AVX-512 pair-tile GEMM from 32 rows): N of one
        16-channel block, of 64-channel tasks and a last one of 16 with 4 channels left for the small tiles, and K
        of 1 to 3 chunks of 2048."""
        op = torch.ops.torchao.int8_weight_only_gemv_cpu
        shapes = ((33, 1000), (100, 77), (257, 300), (64, 4096 + 48), (16, 64), (100, 512), (80, 2048 + 64),
                  (200, 4096 + 64))
        for n, k in shapes:
            g = torch.Generator().manual_seed(n + k)
            w = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=g)
            w[0] = -128
            s = torch.rand(n, generator=g) * 0.01 + 1e-4
            weight = w.double() * s.double()[:, None]
            for m in (8, 15, 16, 31, 33, 100):
                with self.subTest(n=n, k=k, m=m):
                    x = torch.randn(m, k, generator=g) * 4
                    x_bf16 = x.to(torch.bfloat16)
                    out = op(x, w, s)
                    self.assertEqual((out.shape, out.dtype), ((m, n), torch.float32))
                    self.assertLess(relative(out, x_bf16.double() @ weight.t()), 1e-6)
                    self.assertTrue(torch.equal(op(x_bf16, w, s), out.to(torch.bfloat16)))

    def test_int4_against_float64_reference(self):
        """Widths of 1, 5 and 64 blocks of 64 channels, K of 1 to 17 chunks, every group size: float32 sums of
        the kernel's weight (< 1e-5); bf16 outputs bit-equal to the float32 outputs rounded."""
        op = torch.ops.torchao.int4_weight_only_gemv_cpu
        for n, k, group in ((64, 768, 256), (320, 4096 + 128, 128), (4096, 256, 32), (320, 96, 32)):
            packed, scales_and_zeros, weight = random_int4_weight(n, k, group, seed=n + k)
            for m in (8, 15, 16, 31, 33, 100):
                with self.subTest(n=n, k=k, group=group, m=m):
                    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)) + 0.25
                    x_bf16 = x.to(torch.bfloat16)
                    out = op(x, packed, group, scales_and_zeros)
                    self.assertLess(relative(out, x_bf16.double() @ kernel_weight(weight, m).t()), 1e-5)
                    self.assertTrue(torch.equal(op(x_bf16, packed, group, scales_and_zeros), out.to(torch.bfloat16)))

    def test_amx_and_avx512_paths_agree(self):
        """TORCHAO_CPU_NO_AMX=1 (read once per process) runs the AVX-512 kernels for every M: int8 gives the same
        floats up to the order of float32 sums, int4 (weight-only and 8da4w) up to the AMX path's bf16 rounding of
        the weight from more than AMX_FEW_ROWS rows, up to the order of float32 sums below."""
        script = textwrap.dedent("""
            import sys, torch
            sys.path.insert(0, %r)
            from test_cpp_kernels import random_int4_weight
            import torchao.kernels.cpu
            g = torch.Generator().manual_seed(0)
            x = torch.randn(40, 512, generator=g)
            w = torch.randint(-128, 128, (96, 512), dtype=torch.int8, generator=g)
            out8 = torch.ops.torchao.int8_weight_only_gemv_cpu(x, w, torch.linspace(0.1, 1, 96))
            packed, sz, _ = random_int4_weight(128, 512, 64, seed=3)
            out4 = torch.ops.torchao.int4_weight_only_gemv_cpu(x, packed, 64, sz)
            q = torch.randint(-128, 128, (40, 512), dtype=torch.int8, generator=g)
            zero = torch.randint(-9, 9, (40,), dtype=torch.int32, generator=g)
            out84 = torchao.kernels.cpu.int8_dynamic_int4_mm(q, torch.rand(40, generator=g) + 0.1, zero, packed, 64, sz,
                                                             torch.float32)
            few4 = torch.ops.torchao.int4_weight_only_gemv_cpu(x[:5], packed, 64, sz)
            few84 = torchao.kernels.cpu.int8_dynamic_int4_mm(q[:5], torch.rand(5, generator=g) + 0.1, zero[:5], packed,
                                                             64, sz, torch.float32)
            torch.save((out8, out4, out84, few4, few84), sys.argv[1])
        """) % os.path.dirname(os.path.abspath(__file__))
        outputs = [outputs_in_subprocess(self, script, {}), outputs_in_subprocess(self, script, {"TORCHAO_CPU_NO_AMX": "1"})]
        self.assertLess(relative(outputs[1][0], outputs[0][0]), 1e-6)
        self.assertLess(relative(outputs[1][1], outputs[0][1]), 2 ** -7)
        self.assertLess(relative(outputs[1][2], outputs[0][2]), 2 ** -7)
        # up to AMX_FEW_ROWS rows the AMX kernel keeps the weight's integers exact, as the AVX-512 ones do
        self.assertLess(relative(outputs[1][3], outputs[0][3]), 1e-5)
        self.assertLess(relative(outputs[1][4], outputs[0][4]), 1e-5)


    def test_vbmi_and_plain_avx512_bf16_agree(self):
        """The bf16 x int4 AVX-512 kernel with VBMI byte permutes and without (TORCHAO_CPU_NO_VBMI=1), AMX off so
        that it runs for every M: the same floats, bit for bit (each channel sums the same products in the same
        order)."""
        script = textwrap.dedent("""
            import sys, torch
            sys.path.insert(0, %r)
            from test_cpp_kernels import random_int4_weight
            import torchao.kernels.cpu
            results = []
            for n, k, group in ((64, 256, 32), (320, 4096 + 128, 128), (192, 512, 256)):
                packed, sz, _ = random_int4_weight(n, k, group, seed=n + k)
                for m in (1, 2, 3, 4, 5, 7):
                    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
                    results.append(torch.ops.torchao.int4_weight_only_gemv_cpu(x, packed, group, sz))
            torch.save(results, sys.argv[1])
        """) % os.path.dirname(os.path.abspath(__file__))
        with_vbmi = outputs_in_subprocess(self, script, {"TORCHAO_CPU_NO_AMX": "1"})
        without = outputs_in_subprocess(self, script, {"TORCHAO_CPU_NO_AMX": "1", "TORCHAO_CPU_NO_VBMI": "1"})
        self.assertEqual(len(with_vbmi), 18)
        for a, b in zip(with_vbmi, without):
            self.assertTrue(torch.equal(a, b))

class TestPerTokenQuantize(TestCase):
    """The C++ per-token int8 quantizer (csrc/quantize_per_token.cpp) that eager dynamic-activation linears use:
    the same integers, scales and zero points as the primitives, bit for bit."""

    def setUp(self):
        self.assertTrue(cpp_kernels_available(), "the C++ kernels did not build (g++ and ninja are needed)")

    def test_equals_the_primitives(self):
        g = torch.Generator().manual_seed(0)
        for name in ("int8_per_token_sym", "int8_per_token_asym"):
            quantizer = get_activation_quantizer(name)
            for shape in ((3, 17), (5, 2, 64), (64, 4096), (7, 1000), (2, 2)):
                for dtype in (torch.float32, torch.bfloat16, torch.float16):
                    for kind in ("normal", "positive", "negative", "zero", "large", "ties"):
                        x = torch.randn(shape, generator=g)
                        x = {"positive": x.abs() + 0.1, "negative": -x.abs() - 0.1, "zero": x * 0, "large": x * 1e4,
                             "ties": torch.round(x * 8) / 2}.get(kind, x).to(dtype)
                        with self.subTest(name=name, shape=shape, dtype=dtype, kind=kind):
                            self.assertTrue(cpu_kernels.quantize_int8_per_token_runs(x))
                            fast = quantizer.quantize(x)
                            with torch.enable_grad():  # a gradient wanted: the primitives run
                                self.assertFalse(cpu_kernels.quantize_int8_per_token_runs(x.requires_grad_()))
                                reference = [None if t is None else t.detach() for t in quantizer.quantize(x)]
                            for got, want in zip(fast, reference):
                                self.assertTrue(got is None and want is None or torch.equal(got, want))

    def test_where_it_runs(self):
        """K = 1 (the primitives keep a (..., 1) qparam shape), empty inputs and compiled graphs keep the
        primitives; a compiled dynamic-activation linear equals the eager one."""
        self.assertFalse(cpu_kernels.quantize_int8_per_token_runs(torch.randn(4, 1)))
        self.assertFalse(cpu_kernels.quantize_int8_per_token_runs(torch.randn(0, 8)))
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig

        q = Int8DynamicActivationInt8WeightConfig()(torch.randn(64, 96))
        linear = torch.nn.Linear(96, 64, bias=False)
        linear.weight = torch.nn.Parameter(q, requires_grad=False)
        x = torch.randn(40, 96)
        with torch.no_grad():
            self.assertLess(relative(torch.compile(linear)(x), linear(x)), 1e-6)


class TestInt8ActivationsOptIn(TestCase):
    """Weight-only configs with ``int8_activations=True``: the same weights, activations rounded to int8 per
    token, on the integer kernels; the output is that product (bf16 rounding only)."""

    def setUp(self):
        torch.manual_seed(0)
        self.w = torch.randn(128, 320, dtype=torch.bfloat16)
        self.x = torch.randn(5, 320, dtype=torch.bfloat16)

    def test_int4_weight_only(self):
        from torchao.quantization import Int4WeightOnlyConfig, ZeroPointDomain

        for domain in (ZeroPointDomain.FLOAT, ZeroPointDomain.INT):
            for use_hqq in (False, True):
                with self.subTest(domain=domain, use_hqq=use_hqq):
                    weight_only = Int4WeightOnlyConfig(64, zero_point_domain=domain, use_hqq=use_hqq)(self.w)
                    q = Int4WeightOnlyConfig(64, zero_point_domain=domain, use_hqq=use_hqq, int8_activations=True)(self.w)
                    self.assertTrue(torch.equal(q.dequantize(), weight_only.dequantize()))  # the same weights
                    self.assertEqual(select_linear_kernel(self.x, q).name, "cpu_int8_dynamic_int4")
                    xq, scale, _ = get_activation_quantizer("int8_per_token_sym").quantize(self.x)
                    reference = (scale.double()[:, None] * xq.double()) @ q.dequantize().double().t()
                    self.assertLess(relative(F.linear(self.x, q), reference), 2 ** -8)

    def test_int8_weight_only(self):
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

        q = Int8WeightOnlyConfig(int8_activations=True)(self.w)
        self.assertEqual(select_linear_kernel(self.x, q).name, "cpu_int8_dynamic")
        self.assertTrue(torch.equal(F.linear(self.x, q), F.linear(self.x, Int8DynamicActivationInt8WeightConfig()(self.w))))
        grouped = Int8WeightOnlyConfig(64, int8_activations=True)(self.w)  # no integer kernel: fake-quantized x
        xq, scale, _ = get_activation_quantizer("int8_per_token_sym").quantize(self.x)
        reference = (scale.double()[:, None] * xq.double()) @ grouped.dequantize().double().t()
        self.assertLess(relative(F.linear(self.x, grouped), reference), 2 ** -8)


class TestEightDaFourWLinear(TestCase):
    """Int8DynamicActivationInt4WeightConfig (8da4w) on CPU runs the integer kernel: its output is the
    product of the quantized activations and the quantized weight (bf16 output rounding only)."""

    def setUp(self):
        torch.manual_seed(0)
        self.w = torch.randn(192, 256, dtype=torch.bfloat16)
        self.x = torch.randn(2, 7, 256, dtype=torch.bfloat16)

    def reference(self, q):
        xq, scale, zero = get_activation_quantizer(q.spec.act_quant).quantize(self.x)
        dequantized_x = scale.double()[..., None] * (xq.double() - (0 if zero is None else zero.double()[..., None]))
        return dequantized_x @ q.dequantize().double().t()

    def test_kernel_is_chosen_and_exact(self):
        for group_size in (32, 64, 128, 256):
            for act in ("ASYMMETRIC", "SYMMETRIC"):
                with self.subTest(group_size=group_size, act=act):
                    from torchao.quantization import MappingType

                    config = Int8DynamicActivationInt4WeightConfig(group_size, act_mapping_type=MappingType[act])
                    q = config(self.w)
                    self.assertEqual(select_linear_kernel(self.x, q).name, "cpu_int8_dynamic_int4")
                    self.assertLess(relative(F.linear(self.x, q), self.reference(q)), 2 ** -8)

    def test_symmetric_weights_store_scales_only(self):
        """8da4w's symmetric int4 weight keeps one bf16 scale per group for the kernel (4.5 bits a weight at
        group 32); the weight-only fallback of the same weight (aten's kernel) stays exact."""
        q = Int8DynamicActivationInt4WeightConfig(32)(self.w)
        self.assertEqual(tuple(q.scales_and_zeros.shape), (256 // 32, 192, 1))
        weight_only = q.with_tensors(lambda t: t, act_quant=None)
        reference = self.x.double() @ q.dequantize().double().t()
        self.assertEqual(select_linear_kernel(self.x, weight_only).name, "cpu_int4_weight_only")
        self.assertLess(relative(F.linear(self.x, weight_only), reference), 2 ** -7)

    def test_compile_and_export(self):
        q = Int8DynamicActivationInt4WeightConfig(32)(self.w)
        eager = F.linear(self.x, q)
        linear = torch.nn.Linear(256, 192, bias=False)
        linear.weight = torch.nn.Parameter(q, requires_grad=False)
        self.assertTrue(torch.equal(torch.compile(linear)(self.x), eager))
        exported = torch.export.export(linear, (self.x,))
        self.assertIn("torchao.int8_dynamic_int4_mm_cpu", str(exported.graph_module.code))
        self.assertTrue(torch.equal(exported.module()(self.x), eager))

    def test_a_failed_build_falls_back_with_one_warning(self):
        """A source that does not compile: cpp_kernels_available() is False, says why once, and 8da4w then
        fake-quantizes into the aten int4 kernel."""
        script = textwrap.dedent("""
            import warnings, torch, torch.nn.functional as F
            from torchao.kernels import cpp_build
            cpp_build.SOURCES = [%r]
            cpp_build._extension_name = lambda: "torchao_broken_for_test"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                from torchao.quantization import Int8DynamicActivationInt4WeightConfig
                from torchao.qtensor.linear import select_linear_kernel
                q = Int8DynamicActivationInt4WeightConfig(32)(torch.randn(64, 64, dtype=torch.bfloat16))
                x = torch.randn(3, 64, dtype=torch.bfloat16)
                print(select_linear_kernel(x, q).name, tuple(F.linear(x, q).shape))
                F.linear(x, q)
            print(sum("C++ CPU kernels could not be built" in str(w.message) for w in caught))
        """)
        broken = os.path.join(temporary_directory(self), "broken.cpp")
        with open(broken, "w") as f:
            f.write("this is not C++\n")
        run = subprocess.run([sys.executable, "-c", script % broken], capture_output=True, text=True, timeout=300)
        self.assertEqual(run.returncode, 0, run.stderr[-2000:])
        self.assertEqual(run.stdout.split("\n")[:2], ["fake_quantized_activation (3, 64)", "1"])


if __name__ == "__main__":
    unittest.main()
