"""The test bed that ships with the package: pyllama-5m, a small trained Llama, with its text.

``model_dir()`` is ``torchao/testbed/pyllama-5m`` (LlamaForCausalLM, hidden 256, 4 layers, 5.2 M
parameters, bf16 weights, byte-level BPE tokenizer of 4096 tokens, trained on Python standard-library
source) unless the environment variable ``TORCHAO_TESTBED`` names another local transformers causal-LM
directory (a bigger model, or the float32 original). Tests, tutorials, the CLI's defaults and the
benchmarks all find it here, so a clone or a wheel needs nothing else.

Text: ``val.txt`` in the model directory, held out from training. Its first half is calibration text,
its second half evaluation text (the two never overlap).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "PACKAGED_MODEL", "model_dir", "val_text", "calibration_text", "heldout_text"]

ENV_VAR = "TORCHAO_TESTBED"
PACKAGED_MODEL = Path(__file__).resolve().parent / "pyllama-5m"


def model_dir() -> Path:
    """The test-bed model directory: $TORCHAO_TESTBED if set, else the packaged pyllama-5m.

    Raises FileNotFoundError naming the directory and the variable when it holds no model.
    """
    path = Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else PACKAGED_MODEL
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no transformers model at {path} (config.json missing); set {ENV_VAR} to a local causal-LM "
            f"directory or unset it to use the packaged test bed"
        )
    return path


def val_text(path: Path | None = None) -> str:
    """The held-out text of a model directory (``val.txt``; default: the test bed's)."""
    path = path or model_dir()
    file = path / "val.txt"
    if not file.is_file():
        raise FileNotFoundError(f"{path} has no val.txt (plain held-out text for calibration and perplexity)")
    return file.read_text()


def calibration_text(path: Path | None = None) -> str:
    """The first half of ``val.txt``: text for GPTQ / AutoRound calibration."""
    text = val_text(path)
    return text[: len(text) // 2]


def heldout_text(path: Path | None = None) -> str:
    """The second half of ``val.txt``: text for perplexity checks, never used to calibrate."""
    text = val_text(path)
    return text[len(text) // 2:]
