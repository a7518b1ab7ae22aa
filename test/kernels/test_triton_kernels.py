"""The Triton kernels against float64 references: under TRITON_INTERPRET=1 on CPU tensors (CI), on the
GPU when there is one. Outputs are poisoned with NaN so that an unwritten element fails the test."""

import unittest
from unittest import mock

import torch
from expecttest import TestCase

from torchao.kernels import autotune_cache, triton_ops
from torchao.kernels.triton_ops import (
    CANDIDATES,
    ZP_FLOAT,
    ZP_INT,
    ZP_NONE,
    int4_weight_only_mm_triton,
    int8_dynamic_mm_triton,
    int8_weight_only_mm_triton,
    m_bucket,
)
from torchao.qtensor.layouts.nibbles import pack_nibbles

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ROWS = (1, 3, 17, 70)  # decode (gemv), decode, small (split-K dot), prefill (tiled dot)
DTYPES = (torch.float16, torch.bfloat16)
N = 37  # not a multiple of any block


def rel_err(out, ref):
    return ((out.double().cpu() - ref).norm() / ref.norm()).item()


class PoisonedTestCase(TestCase):
    def setUp(self):
        torch.manual_seed(0)
        patcher = mock.patch.object(triton_ops, "POISON_OUTPUTS", True)
        patcher.start()
        self.addCleanup(patcher.stop)

    def check(self, out, ref, m, dtype, what, tol=1.2e-2):
        self.assertEqual(tuple(out.shape), (m, ref.shape[1]))
        self.assertFalse(bool(torch.isnan(out).any()), msg=f"unwritten outputs: {what}")
        self.assertLess(rel_err(out, ref), tol, msg=what)


class TestInt8WeightOnly(PoisonedTestCase):
    def test_against_float64(self):
        k = 72  # not a multiple of 32
        w = torch.randint(-128, 128, (N, k), dtype=torch.int8)
        scale = torch.rand(N) / 50 + 1e-3
        zero_point = torch.randint(-5, 5, (N,), dtype=torch.int32)
        for zp in (None, zero_point):
            w_ref = (w.double() - (0 if zp is None else zp.double()[:, None])) * scale.double()[:, None]
            for dtype in DTYPES:
                for m in ROWS:
                    x = torch.randn(m, k).to(dtype)
                    out = int8_weight_only_mm_triton(
                        x.to(DEVICE), w.to(DEVICE), scale.to(dtype).to(DEVICE), None if zp is None else zp.to(DEVICE)
                    )
                    self.assertEqual(out.dtype, dtype)
                    ref = x.double() @ (w.double() - (0 if zp is None else zp.double()[:, None])).t() * scale.to(dtype).double()
                    self.check(out, ref, m, dtype, f"int8 wo zp={zp is not None} {dtype} M={m}")
            del w_ref


class TestInt4WeightOnly(PoisonedTestCase):
    def test_every_group_size_and_zero_point_mode(self):
        for group in (32, 64, 128, 256):
            k = 2 * group if group < 256 else 256 + 256
            u = torch.randint(0, 16, (N, k), dtype=torch.uint8)
            packed = pack_nibbles(u)
            groups = k // group
            scale = torch.rand(N, groups) / 20 + 1e-3
            cases = [
                (ZP_NONE, -8, None, lambda q, s, z: q * s),
                (ZP_INT, 0, torch.randint(0, 16, (N, groups), dtype=torch.int32), lambda q, s, z: (q - z) * s),
                (ZP_FLOAT, 0, torch.randn(N, groups) / 10, lambda q, s, z: (q - 8) * s + z),
            ]
            for mode, qmin, zp, formula in cases:
                rep = lambda t: t.double().repeat_interleave(group, dim=1)  # noqa: E731
                q = u.double() + qmin
                for dtype in DTYPES:
                    s = scale.to(dtype)
                    z = None if zp is None else (zp if zp.dtype == torch.int32 else zp.to(dtype))
                    w_ref = formula(q, rep(s), None if z is None else rep(z))
                    for m in ROWS if group == 32 else (1, 17):
                        x = torch.randn(m, k).to(dtype)
                        out = int4_weight_only_mm_triton(
                            x.to(DEVICE), packed.to(DEVICE), s.to(DEVICE), None if z is None else z.to(DEVICE),
                            group, qmin, mode, 8.0,
                        )
                        self.check(out, x.double() @ w_ref.t(), m, dtype, f"int4 g{group} mode{mode} {dtype} M={m}")


class TestInt8Dynamic(PoisonedTestCase):
    def test_int32_accumulation(self):
        k = 72
        w = torch.randint(-128, 128, (N, k), dtype=torch.int8)
        w_scale = torch.rand(N) / 100
        for dtype in DTYPES:
            for m in ROWS:
                xq = torch.randint(-127, 128, (m, k), dtype=torch.int8)
                x_scale = torch.rand(m) / 100
                out = int8_dynamic_mm_triton(xq.to(DEVICE), x_scale.to(DEVICE), w.to(DEVICE), w_scale.to(DEVICE), dtype)
                self.assertEqual(out.dtype, dtype)
                ref = (xq.double() @ w.double().t()) * x_scale.double()[:, None] * w_scale.double()
                self.check(out, ref, m, dtype, f"int8 dyn {dtype} M={m}", tol=8e-3)


class TestEveryCandidateConfig(PoisonedTestCase):
    """Each config the autotuner may pick on a GPU computes the same function (run here directly)."""

    def test_all_configs_all_formats(self):
        k, group, m = 320, 64, 5
        x = torch.randn(m, k, dtype=torch.float16)
        u = torch.randint(0, 16, (N, k), dtype=torch.uint8)
        s4 = (torch.rand(N, k // group) / 20).to(torch.float16)
        z4 = torch.randint(0, 16, (N, k // group), dtype=torch.int32)
        w4 = (u.double() - z4.double().repeat_interleave(group, 1)) * s4.double().repeat_interleave(group, 1)
        w8 = torch.randint(-128, 128, (N, k), dtype=torch.int8)
        s8 = (torch.rand(N) / 50).to(torch.float16)
        xq = torch.randint(-127, 128, (m, k), dtype=torch.int8)
        xs = torch.rand(m) / 100
        for bucket, configs in CANDIDATES.items():
            for cfg in configs:
                launch = lambda *a: triton_ops._launch(cfg, *a).cpu()  # noqa: E731
                dev = lambda t: None if t is None else t.to(DEVICE)  # noqa: E731
                out = launch(dev(x), dev(pack_nibbles(u)), dev(s4), dev(z4), None, torch.float16, N, k,
                             triton_ops.W_INT4, ZP_INT, group, 0, 8.0)
                self.check(out, x.double() @ w4.t(), m, torch.float16, f"int4 {cfg}")
                out = launch(dev(x), dev(w8), dev(s8), None, None, torch.float16, N, k, triton_ops.W_INT8, ZP_NONE, 1, 0, 0.0)
                self.check(out, x.double() @ (w8.double() * s8.double()[:, None]).t(), m, torch.float16, f"int8 {cfg}")
                out = launch(dev(xq), dev(w8), dev(s8), None, dev(xs), torch.bfloat16, N, k,
                             triton_ops.W_INT8_DYNAMIC, ZP_NONE, 1, 0, 0.0)
                ref = (xq.double() @ w8.double().t()) * xs.double()[:, None] * s8.double()
                self.check(out, ref, m, torch.bfloat16, f"int8 dyn {cfg}", tol=8e-3)


class TestAutotuneCache(TestCase):
    def test_buckets(self):
        self.assertEqual([m_bucket(m) for m in (1, 16, 17, 63, 64, 2048)],
                         ["decode", "decode", "small", "small", "prefill", "prefill"])

    def test_second_run_does_not_tune_and_cache_round_trips(self):
        import tempfile
        from pathlib import Path

        cache = autotune_cache.AutotuneCache()
        timings = {cfg: 1.0 + i for i, cfg in enumerate(CANDIDATES["decode"])}
        fastest = CANDIDATES["decode"][3]
        timings[fastest] = 0.1
        calls = []

        def fake_bench(fn, **kwargs):
            return fn()

        def run(cfg):
            calls.append(cfg)
            return timings[cfg]

        with mock.patch.object(triton_ops, "INTERPRET", False), \
                mock.patch.object(triton_ops, "AUTOTUNE_CACHE", cache), \
                mock.patch.object(triton_ops.triton.testing, "do_bench", fake_bench), \
                mock.patch.object(torch.cuda, "get_device_name", lambda *a: "FakeGPU"), \
                mock.patch.object(torch.compiler, "is_compiling", lambda: False):
            choose = triton_ops._choose_config
            self.assertEqual(choose("int4_wo", "decode", 4096, 4096, 128, run), fastest)
            self.assertEqual(len(calls), len(CANDIDATES["decode"]))
            calls.clear()
            self.assertEqual(choose("int4_wo", "decode", 4096, 4096, 128, run), fastest)
            self.assertEqual(calls, [])  # cached: no benchmark
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "tuned.json"
                cache.save(path)
                fresh = autotune_cache.AutotuneCache()
                self.assertEqual(fresh.load(path), 1)
            with mock.patch.object(triton_ops, "AUTOTUNE_CACHE", fresh):
                self.assertEqual(choose("int4_wo", "decode", 4096, 4096, 128, run), fastest)
                self.assertEqual(calls, [])

    def test_bad_cache_file(self):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bad.json"
            path.write_text('{"version": 99, "devices": {}}')
            with self.assertRaisesRegex(ValueError, "cannot read Triton autotune cache .*version 99"):
                autotune_cache.AutotuneCache().load(path)


@unittest.skipUnless(torch.cuda.is_available(), "needs a CUDA GPU")
class TestCudaRouting(TestCase):
    def test_quantized_linear_uses_triton(self):
        import torchao
        from torchao.qtensor import select_linear_kernel
        from torchao.quantization import int4_weight_only, int8_dynamic_activation_int8_weight, int8_weight_only

        for config, name in [(int8_weight_only(), "triton_int8_weight_only"),
                             (int4_weight_only(group_size=64), "triton_int4_weight_only"),
                             (int8_dynamic_activation_int8_weight(), "triton_int8_dynamic")]:
            layer = torch.nn.Linear(256, 96, device="cuda", dtype=torch.bfloat16)
            x = torch.randn(5, 256, device="cuda", dtype=torch.bfloat16)
            ref = layer(x)
            torchao.quantize_(layer, config)
            self.assertEqual(select_linear_kernel(x, layer.weight).name, name)
            self.assertLess(rel_err(layer(x), ref.double().cpu()), 0.1)


if __name__ == "__main__":
    unittest.main()
