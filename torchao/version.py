"""The package version (a leaf module: anything may import it).

transformers turns its torchao integration on (``TorchAoConfig``, pre-quantized ``from_pretrained``) only
for torchao >= 0.15.0, and then imports the names this package provides for it (tested in
test/integration/test_transformers_names.py); the version number says that contract is met.
"""

__version__ = "0.15.0"
