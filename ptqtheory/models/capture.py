"""Capture the inputs ``X`` of ``nn.Linear`` layers with forward pre-hooks.

A layer's input of shape ``(batch, tokens, N)`` becomes rows of ``X`` (tokens that the attention
mask marks as padding are dropped). A capture can stop the forward pass as soon as the layers it
watches have run (:class:`StopForward`), so that quantizing block ``b`` does not pay for blocks
after it. :func:`layer_inputs` yields one layer's inputs batch by batch as tensors on the model's
device (for statistics streamed on a GPU, where a layer's inputs should never be held at once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

__all__ = ["StopForward", "capture_inputs", "layer_inputs"]


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early (caught by :func:`capture_inputs`)."""


def capture_inputs(
    model: torch.nn.Module,
    layers: dict[str, torch.nn.Module],
    batches: Iterable[dict],
    forward: Callable[[torch.nn.Module, dict], object],
    stop_after: str | None = None,
) -> dict[str, np.ndarray]:
    """Run ``forward(model, batch)`` on every batch and return each watched layer's inputs.

    Parameters
    ----------
    layers : dict
        Name -> ``nn.Linear`` module to watch.
    batches : iterable of dict
        Model inputs; ``batch["attention_mask"]`` (if present) selects the real tokens.
    forward : callable
        How to run the model on one batch.
    stop_after : str, optional
        Name of the last layer needed: the pass stops once its input is captured.

    Returns
    -------
    dict
        Name -> float64 array ``(m, N)``, rows in batch and token order.
    """
    store: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    mask_holder: list = [None]

    def hook_for(name):
        def hook(_module, args):
            x = args[0].detach()
            if x.dim() == 3 and mask_holder[0] is not None:
                x = x[mask_holder[0].bool()]
            store[name].append(x.reshape(-1, x.shape[-1]).to(torch.float64).cpu().numpy())
            if name == stop_after:
                raise StopForward
        return hook

    handles = [mod.register_forward_pre_hook(hook_for(name)) for name, mod in layers.items()]
    try:
        with torch.no_grad():
            for batch in batches:
                mask_holder[0] = batch.get("attention_mask")
                try:
                    forward(model, batch)
                except StopForward:
                    pass
    finally:
        for h in handles:
            h.remove()
    return {name: np.concatenate(chunks, axis=0) for name, chunks in store.items() if chunks}


def layer_inputs(
    model: torch.nn.Module,
    name: str,
    layer: torch.nn.Module,
    batches: Iterable[dict],
    forward: Callable[[torch.nn.Module, dict], object],
) -> Iterator[torch.Tensor]:
    """Yield the input rows ``(tokens, N)`` of one layer for each batch, one forward pass per batch.

    The pass stops at the layer (:class:`StopForward`); rows are detached tensors on the model's
    device in the model's dtype, padding tokens dropped as in :func:`capture_inputs`. The hook is
    registered only while the batch's forward pass runs.
    """
    for batch in batches:
        got: list[torch.Tensor] = []
        mask = batch.get("attention_mask")

        def hook(_module, args, got=got, mask=mask):
            x = args[0].detach()
            if x.dim() == 3 and mask is not None:
                x = x[mask.bool()]
            got.append(x.reshape(-1, x.shape[-1]))
            raise StopForward

        handle = layer.register_forward_pre_hook(hook)
        try:
            with torch.no_grad():
                try:
                    forward(model, batch)
                except StopForward:
                    pass
        finally:
            handle.remove()
        if not got:
            raise RuntimeError(f"the forward pass never called layer {name}")
        yield got[0]
