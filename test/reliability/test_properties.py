"""Property tests (hypothesis): random shapes (1..300, odd, prime), dtypes, group sizes and value ranges
(tiny, huge, constant rows) for the primitives and every config.

The default profile runs a few dozen examples per property; ``HYPOTHESIS_PROFILE=slow`` runs many more.
"""

import unittest

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from test_bad_inputs import CONFIGS, reference_output

from torchao.quantization import quantize_
from torchao.quantization.quant_primitives import (
    MappingType,
    choose_qparams_affine,
    dequantize_affine,
    quantize_affine,
)

PRIMES = [2, 3, 5, 7, 11, 13, 31, 61, 127, 251, 257, 293]
sizes = st.one_of(st.integers(1, 300), st.sampled_from(PRIMES))
dtypes = st.sampled_from([torch.float32, torch.bfloat16, torch.float16])


def divisors(k):
    return [d for d in range(1, k + 1) if k % d == 0]


@st.composite
def weights(draw, max_exponent=4):
    """(N, K) float32 weights: normal values times 10^e (e from -8 to max_exponent), some rows constant."""
    n, k = draw(sizes), draw(sizes)
    seed = draw(st.integers(0, 2**31 - 1))
    exponent = draw(st.integers(-8, max_exponent))
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 10.0**exponent
    if draw(st.booleans()):
        w[: max(1, n // 3)] = w[0, 0]  # constant rows (zero range)
    return w


@given(w=weights(), dtype=dtypes, bits=st.integers(2, 8), symmetric=st.booleans(), data=st.data())
def test_primitives_round_trip_within_one_step(w, dtype, bits, symmetric, data):
    """quantize -> dequantize stays within one quantization step of the input, inside the range, finite."""
    w = w.to(dtype)
    if dtype == torch.float16:
        w = w.clamp(-6e4, 6e4)
    group = data.draw(st.sampled_from(divisors(w.shape[1])))
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    mapping = MappingType.SYMMETRIC if symmetric else MappingType.ASYMMETRIC
    block = (1, group)
    scale, zero = choose_qparams_affine(w, mapping, block, torch.int32, qmin, qmax,
                                        eps=torch.finfo(torch.float32).tiny, scale_dtype=torch.float32,
                                        zero_point_dtype=torch.int32)
    q = quantize_affine(w, block, scale, zero, torch.int32, qmin, qmax)
    assert int(q.min()) >= qmin and int(q.max()) <= qmax
    dq = dequantize_affine(q, block, scale, zero, torch.int32, qmin, qmax, output_dtype=torch.float64)
    assert bool(torch.isfinite(dq).all())
    step = scale.double().reshape(w.shape[0], -1).repeat_interleave(group, 1)
    error = (dq - w.double()).abs()
    assert bool((error <= step * 1.001 + 1e-300).all()), float((error / step).max())


@given(w=weights(max_exponent=2), name=st.sampled_from(sorted(CONFIGS)), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       m=st.integers(1, 17))
def test_every_config_matches_its_dequantized_reference(w, name, dtype, m):
    """A quantized Linear's output is within a stated bound of F.linear on its dequantized weight (the
    activation fake-quantized for dynamic configs), and finite wherever the reference is."""
    n, k = w.shape
    layer = nn.Linear(k, n).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(w.to(dtype))
    config = CONFIGS[name](k if k % 2 == 0 else 1)
    if config.unsupported_reason(layer.weight) is not None:
        return
    quantize_(layer, config)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(n * k + m)).to(dtype)
    out, ref = layer(x).double(), reference_output(layer, x)
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(ref).all())
    # bf16 kernels round activations and outputs to 8 bits of mantissa: 2% of the output scale
    bound = 0.02 * ref.abs().max().item() + 1e-6 * w.abs().max().item() * k + 1e-30
    assert (out - ref).abs().max().item() <= bound, (name, dtype, tuple(w.shape), m)


if __name__ == "__main__":
    unittest.main()
