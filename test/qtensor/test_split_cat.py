"""split / chunk / cat of quantized tensors (what tensor parallelism shards with), for every format: the
pieces are exactly the pieces of the dequantized tensor, run on the kernels correctly, and cat restores the
tensor; a cut inside a quantization block is refused; copy_ into a slice writes into the whole tensor."""

import unittest

import torch
import torch.nn.functional as F
from expecttest import TestCase

from torchao.quant_api.registry import Q4_0Config
from torchao.quantization import (
    Int4WeightOnlyConfig,
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    IntxWeightOnlyConfig,
)

CONFIGS = {
    "int8 per channel": Int8WeightOnlyConfig(),
    "int8 g64": Int8WeightOnlyConfig(group_size=64),
    "int4 g32": Int4WeightOnlyConfig(32),
    "int8 dynamic": Int8DynamicActivationInt8WeightConfig(),
    "q4_0": Q4_0Config(),
    "3-bit g32": IntxWeightOnlyConfig(3, 32),
}


class TestSplitCat(TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.w = torch.randn(96, 128, dtype=torch.bfloat16)
        self.x = torch.randn(7, 128, dtype=torch.bfloat16)

    def test_pieces_are_exact_and_run(self):
        for name, config in CONFIGS.items():
            q = config(self.w)
            for dim, size in ((0, 48), (1, 64)):
                with self.subTest(name=name, dim=dim):
                    parts = torch.split(q, size, dim)
                    for part, expected in zip(parts, torch.split(q.dequantize(), size, dim)):
                        self.assertEqual(part.spec.layout, q.spec.layout)
                        self.assertTrue(torch.equal(part.dequantize(), expected))
                        # the kernels read the piece as it is stored (a column slice once read strided data)
                        x = self.x[:, :part.shape[1]]
                        reference = F.linear(x.float(), part.dequantize().float())
                        error = (F.linear(x, part).float() - reference).norm() / reference.norm()
                        self.assertLess(error.item(), 0.02)
                    self.assertTrue(torch.equal(torch.cat(parts, dim).dequantize(), q.dequantize()))
                    self.assertEqual([p.shape[dim] for p in torch.chunk(q, 2, dim)], [q.shape[dim] // 2] * 2)

    def test_split_with_sizes(self):
        q = Int4WeightOnlyConfig(32)(self.w)
        parts = torch.split(q, [32, 96], 1)
        self.assertEqual([tuple(p.shape) for p in parts], [(96, 32), (96, 96)])
        self.assertTrue(torch.equal(torch.cat(parts, 1).dequantize(), q.dequantize()))

    def test_cut_inside_a_group(self):
        q = Int4WeightOnlyConfig(64)(self.w)
        with self.assertRaisesRegex(NotImplementedError, r"slice of dim 1 \[0:48:1\] does not align with block_size \(1, 64\)"):
            torch.split(q, 48, 1)

    def test_cat_of_different_formats(self):
        a, b = Int4WeightOnlyConfig(32)(self.w), Int4WeightOnlyConfig(64)(self.w)
        with self.assertRaisesRegex(NotImplementedError, "cat along dim 0: the quantized tensors differ in format"):
            torch.cat([a, b], 0)

    def test_copy_into_slices_fills_the_whole_tensor(self):
        """What torch.distributed.checkpoint does when it reshards: each piece copy_-ed into a slice of the
        destination (for repacked layouts the slice is a copy; the write must still reach the tensor)."""
        source = torch.randn(96, 128, dtype=torch.bfloat16)
        for name, config in CONFIGS.items():
            expected = config(source)
            for dim, size in ((0, 48), (1, 64)):
                with self.subTest(name=name, dim=dim):
                    target = config(-self.w)
                    for start in range(0, target.shape[dim], size):
                        target.narrow(dim, start, size).detach().copy_(expected.narrow(dim, start, size))
                    self.assertTrue(torch.equal(target.dequantize(), expected.dequantize()))

    def test_pieces_with_their_own_scales_cannot_share_one_block(self):
        """Per-row int8: two halves of a row quantized separately cannot both be written into one row's scale;
        the refused write leaves the tensor as it was."""
        config = Int8WeightOnlyConfig()
        target = config(self.w)
        left, right = config(self.w[:, :64] * 2), config(self.w[:, 64:] * 3)
        target.narrow(1, 0, 64).copy_(left)
        before = target.dequantize()
        with self.assertRaisesRegex(ValueError, r"copy_ into \[64:128\] of dim 1 .* one block \(one scale per row\) "
                                                "cannot hold both"):
            target.narrow(1, 64, 64).copy_(right)
        self.assertTrue(torch.equal(target.dequantize(), before))


if __name__ == "__main__":
    unittest.main()
