"""Import path torchao.prototype (re-exports only): the names transformers' torchao integration imports."""
