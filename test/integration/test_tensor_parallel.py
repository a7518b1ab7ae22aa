"""Tensor parallelism with DTensor: 2 processes (torchrun, gloo on the loopback address) shard an MLP with
ColwiseParallel / RowwiseParallel, in both orders (quantize then parallelize, parallelize then quantize),
for int8 / int4 / int8-dynamic / Q4_0 / 6-bit weights (tp_worker.py does the work)."""

import json
import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from expecttest import TestCase

WORKER = Path(__file__).with_name("tp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestTensorParallel(TestCase):
    @classmethod
    def setUpClass(cls):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "results.json"
            run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                  "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(WORKER), str(out)],
                                 capture_output=True, text=True, timeout=300)
            if run.returncode != 0:
                raise AssertionError(f"the 2-process run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
            cls.results = json.loads(out.read_text())

    def cases(self):
        return {k: v for k, v in self.results.items() if " " in k}

    def test_every_config_in_both_orders(self):
        self.assertEqual(len(self.cases()), 10)
        for case, result in self.cases().items():
            # each rank holds a quantized half of up_proj's rows
            self.assertEqual((result["local_type"], result["local_shape"]), ("AffineQuantizedTensor", [128, 128]), msg=case)

    def test_column_shards_are_exact(self):
        """ColwiseParallel: each rank computes its output columns exactly as the unsharded layer does."""
        for case, result in self.cases().items():
            self.assertTrue(result["up_exact"], msg=case)

    def test_row_shards_within_bound(self):
        """RowwiseParallel adds bf16 partial sums across ranks (and quantizing after sharding gives each shard
        its own per-row scales, dynamic activations their own per-shard token scales): relative difference to
        the unsharded quantized MLP below 1%."""
        for case, result in self.cases().items():
            self.assertLess(result["relative"], 0.01, msg=case)

    def test_replicate_and_a_cut_group(self):
        self.assertTrue(self.results["replicate"]["exact"])
        self.assertEqual(self.results["cut_group"], "slice of dim 1 [0:96:1] does not align with block_size (1, 64) "
                                                    "of a quantized tensor of shape (32, 192)")


if __name__ == "__main__":
    unittest.main()
