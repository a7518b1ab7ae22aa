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


def load_resharded(checkpoint, config):
    """Load a 2-process checkpoint into one unsharded model quantized with ``config`` (other weights, so a
    piece left unwritten shows): DCP writes each saved shard into a slice of our tensors. Returns whether the
    loaded model equals the unsharded quantized MLP, or the error."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    sys.path.insert(0, str(WORKER.parent))
    from tp_worker import MLP

    from torchao.quantization import quantize_

    reference, target = MLP(), MLP()
    quantize_(reference, config)
    with torch.no_grad():
        target.up.weight.mul_(-1)
        target.down.weight.mul_(-1)
    quantize_(target, config)
    state = target.state_dict()
    try:
        dcp.load(state, checkpoint_id=checkpoint, no_dist=True)
    except (ValueError, CheckpointException) as e:  # DCP wraps the reader's error (a BaseException)
        return {"refused": str(e)}
    return {"equal": all(torch.equal(state[k].dequantize(), v.dequantize()) for k, v in reference.state_dict().items())}


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
            sys.path.insert(0, str(WORKER.parent))
            from tp_worker import CONFIGS, DCP_CASES

            cls.dcp_results = {name: load_resharded(f"{out}.{name}.dcp", CONFIGS[config])
                               for name, (config, _) in DCP_CASES.items()}
            cls.dcp_mismatch = load_resharded(f"{out}.int4wo-g32.dcp", CONFIGS["int8wo"])

    def cases(self):
        return {k: v for k, v in self.results.items() if " " in k and not k.startswith(("llama", "sequence", "exact"))}

    def test_every_config_in_both_orders(self):
        self.assertEqual(len(self.cases()), 10)
        for case, result in self.cases().items():
            # each rank holds a quantized half of up_proj's rows
            self.assertEqual((result["local_type"], result["local_shape"]), ("AffineQuantizedTensor", [128, 128]), msg=case)

    def test_column_shards_are_exact(self):
        """ColwiseParallel: each rank computes its output columns exactly as the unsharded layer does."""
        for case, result in self.cases().items():
            self.assertTrue(result["up_exact"], msg=case)

    def test_shards_gather_back(self):
        """full_tensor() / redistribute(Replicate()) of the sharded weights: the unsharded quantized weights, bit
        for bit, when quantized before sharding (after sharding each shard has its own scales)."""
        for case, result in self.cases().items():
            if case.endswith("quantize-then-parallelize"):
                self.assertEqual(result["gathered_exact"], [True, True], msg=case)

    def test_row_shards_within_bound(self):
        """RowwiseParallel adds bf16 partial sums across ranks (and quantizing after sharding gives each shard
        its own per-row scales, dynamic activations their own per-shard token scales): relative difference to
        the unsharded quantized MLP below 1%."""
        for case, result in self.cases().items():
            self.assertLess(result["relative"], 0.01, msg=case)

    def test_sequence_parallel(self):
        """LayerNorm on sequence chunks (SequenceParallel), then the quantized MLP gathering the tokens and
        reduce-scattering its output back to chunks: within 1% of the unsharded quantized block (bf16 partial
        sums; per-shard scales when quantized after sharding)."""
        cases = {k: v for k, v in self.results.items() if k.startswith("sequence")}
        self.assertEqual(len(cases), 4)
        for case, result in cases.items():
            self.assertEqual(result["output_shape"], [2, 4, 128], msg=case)
            self.assertLess(result["relative"], 0.01, msg=case)

    def test_output_channel_plan_is_bit_exact(self):
        """down_proj split by output channels with its input gathered (generate.py --tp-exact): no bf16
        partial sums, the sharded MLP equals the unsharded quantized one bit for bit."""
        for name in ("int8wo", "int4wo-g32", "q4_0"):
            self.assertTrue(self.results[f"exact {name}"], msg=name)

    def test_replicate_and_a_cut_group(self):
        self.assertTrue(self.results["replicate"]["exact"])
        self.assertEqual(self.results["cut_group"], "slice of dim 1 [0:96:1] does not align with block_size (1, 64) "
                                                    "of a quantized tensor of shape (32, 192)")

    def test_testbed_llama(self):
        """The test-bed Llama with int4 / int8 projections sharded over 2 ranks: the same greedy tokens, every
        next-token argmax the same, logits within 1% (bf16 partial sums of o_proj / down_proj)."""
        for name in ("llama int4wo-g64", "llama int8wo"):
            result = self.results[name]
            self.assertTrue(result["same_tokens"], msg=name)
            self.assertEqual(result["argmax"], 1.0, msg=name)
            self.assertLess(result["relative"], 0.01, msg=name)

    def test_compiled(self):
        self.assertLess(self.results["compiled"], 1e-3)

    def test_checkpoint_resharded_to_one_process(self):
        """torch.distributed.checkpoint: saved by 2 processes (either order), loaded into 1 unsharded model
        of the same format, bit for bit."""
        for name in ("int8wo", "int4wo-g32", "q4_0"):
            self.assertEqual(self.dcp_results[name], {"equal": True}, msg=name)

    def test_checkpoint_that_one_tensor_cannot_hold_is_refused(self):
        """Row shards quantized separately (own per-row scales) into one per-row int8 weight, and int4 shards
        into an int8 model: an error naming why, never a silently half-loaded model."""
        self.assertIn("one block (one scale per row) cannot hold both",
                      self.dcp_results["int8wo per-shard scales"]["refused"])
        self.assertIn("does not match destination", self.dcp_mismatch["refused"])

if __name__ == "__main__":
    unittest.main()
