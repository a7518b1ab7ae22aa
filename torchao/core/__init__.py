"""Import path torchao.core (re-exports)."""
