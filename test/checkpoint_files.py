"""Test helpers: read and rewrite the model.safetensors of a save_quantized directory, e.g. to edit it the
way a corrupted download or a hand edit would."""

import hashlib
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from torchao.io.checkpoint import WEIGHTS_NAME
from torchao.io.flat_state_dict import tensor_digest


def read_checkpoint(directory: Path):
    """(tensors, safetensors metadata) of a save_quantized directory."""
    with safe_open(str(Path(directory) / WEIGHTS_NAME), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def write_checkpoint(directory: Path, tensors, metadata, resign=False):
    """Rewrite the checkpoint; ``resign``: recompute the checksums too (a deliberate forgery, which the
    other checks must still catch)."""
    if resign:
        names = json.loads(metadata["tensor_names"])
        checksums = {k: tensor_digest(t) for k, t in tensors.items()}
        checksums.update({f"{n}::metadata": hashlib.sha256(metadata[n].encode()).hexdigest() for n in names})
        metadata = {**metadata, "torchao_checksums": json.dumps(checksums)}
    save_file(tensors, str(Path(directory) / WEIGHTS_NAME), metadata=metadata)


def edit_entry(directory: Path, name: str, fn, resign=False):
    """Apply ``fn`` to the QuantSpec dict of tensor ``name`` in the metadata."""
    tensors, meta = read_checkpoint(directory)
    entry = json.loads(meta[name])
    fn(entry["_data"])
    write_checkpoint(directory, tensors, {**meta, name: json.dumps(entry)}, resign)


def edit_weights(directory: Path, fn, resign=False):
    """Apply ``fn`` to the dict of stored tensors."""
    tensors, meta = read_checkpoint(directory)
    fn(tensors)
    write_checkpoint(directory, tensors, meta, resign)
