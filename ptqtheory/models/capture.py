"""Capture the inputs ``X`` of ``nn.Linear`` layers with forward pre-hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import numpy as np
import torch

__all__ = ["StopForward", "capture_inputs", "token_rows"]


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early (caught by :func:`capture_inputs`)."""


def token_rows(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A layer input ``(b, T, N)`` as rows ``(tokens, N)``, padding tokens (``mask`` 0) dropped."""
    x = x.detach()
    if x.dim() == 3 and mask is not None:
        x = x[mask.bool()]
    return x.reshape(-1, x.shape[-1])


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
        Name of the last layer needed: the pass stops once its input is captured (later blocks never run).

    Returns
    -------
    dict
        Name -> float64 array ``(m, N)``, rows in batch and token order.
    """
    store: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    mask_holder: list = [None]

    def hook_for(name):
        def hook(_module, args):
            store[name].append(token_rows(args[0], mask_holder[0]).to(torch.float64).cpu().numpy())
            if name == stop_after:
                raise StopForward
        return hook

    handles = [mod.register_forward_pre_hook(hook_for(name)) for name, mod in layers.items()]
    try:
        with torch.no_grad():
            for batch in batches:
                mask_holder[0] = batch.get("attention_mask")
                with contextlib.suppress(StopForward):
                    forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    return {name: np.concatenate(chunks, axis=0) for name, chunks in store.items() if chunks}
