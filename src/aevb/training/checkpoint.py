"""Checkpoints: tensors in safetensors, everything else in JSON; never pickle.

Files are written to a temporary name and renamed, so an interrupted save never leaves a
half-written checkpoint where a good one was.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..files import atomic_path, write_text


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model.state_dict()`` (parameters and buffers) to a safetensors file."""
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_tensors(state, path)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights saved by :func:`save_weights` into ``model``, checking names and shapes."""
    return load_state_into(model, load_tensors(path), path)


def load_state_into(
    model: nn.Module, state: dict[str, torch.Tensor], path: str | Path
) -> nn.Module:
    """``model.load_state_dict(state)`` with a clear error naming ``path`` when it does not fit."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [n for n in expected if n in state and state[n].shape != expected[n].shape]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:3]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:3]}")
        if wrong:
            n = wrong[0]
            details.append(
                f"{n} has shape {tuple(state[n].shape)}, model wants {tuple(expected[n].shape)}"
            )
        raise CheckpointError(
            f"{path} does not fit this model ({'; '.join(details)}): it was saved from a "
            "model with another configuration; build the model from the run's config.json"
        )
    broken = [n for n, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:
        raise CheckpointError(
            f"{path} holds NaN or infinite values in {broken[0]}"
            + (f" and {len(broken) - 1} more tensors" if len(broken) > 1 else "")
            + ": the weights diverged or the file was damaged; use another checkpoint "
            "(model.safetensors keeps the best epoch) or train again"
        )
    model.load_state_dict(state)
    return model


def save_tensors(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file written by :func:`save_tensors`."""
    load_tensors(path)  # the same checks and messages for a missing or corrupt file
    with safe_open(str(path), framework="pt") as file:
        return dict(file.metadata() or {})


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: is this the folder of a finished run?")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is corrupt or not a safetensors checkpoint ({error}); "
            "use another checkpoint of the run, or train again"
        ) from error


def save_json(data: Any, path: str | Path) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_jsonl(records: list[Any], path: str | Path) -> None:
    """One JSON record per line (``metrics.jsonl``), written whole."""
    write_text(path, "".join(json.dumps(record) + "\n" for record in records))


def load_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no {path.name} at {path}: is this the folder of an aevb run?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt ({error}); it is not valid JSON") from error


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    """Split an optimizer's state into safetensors-ready tensors and JSON-ready rest."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{slot}"] = value.detach().clone().contiguous()
            else:
                scalars.setdefault(str(index), {})[slot] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_files(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: Any
) -> None:
    """Inverse of :func:`optimizer_to_files`: load the saved state into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, slot = name.split(".", 1)
        state.setdefault(int(index), {})[slot] = tensor
    for index, slots in rest["scalars"].items():
        state.setdefault(int(index), {}).update(slots)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"the saved optimizer state does not fit: {error}") from error


def section(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The tensors saved under ``name.``, with that prefix removed."""
    return {k.removeprefix(f"{name}."): v for k, v in tensors.items() if k.startswith(f"{name}.")}


MANIFEST = "manifest.json"


def write_manifest(
    folder: Path,
    epoch: int,
    names: tuple[str, ...] = ("last.safetensors", "model.safetensors", "trainer.safetensors"),
) -> None:
    """Record the SHA-256 of the checkpoint files ``names`` in ``folder``, written last."""
    files = {name: _sha256(folder / name) for name in names if (folder / name).exists()}
    save_json({"epoch": epoch, "sha256": files}, folder / MANIFEST)


def verify(path: Path) -> None:
    """Refuse a checkpoint file that differs from what its run's manifest recorded."""
    manifest = path.parent / MANIFEST
    if not manifest.exists():  # a folder from before manifests, or weights saved by hand
        return
    recorded = load_json(manifest)
    expected = recorded.get("sha256", {}).get(path.name)
    if expected is not None and _sha256(path) != expected:
        raise CheckpointError(
            f"{path} is not the file training wrote at epoch {recorded.get('epoch')} (its "
            f"SHA-256 differs from {manifest}): it was changed afterwards, or a kill cut the "
            "checkpoint short. Restore the file, resume an interrupted run with --resume, "
            "or train again"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
