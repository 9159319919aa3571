"""Held-out perplexity of a causal language model over non-overlapping token windows.

A text's token ids are cut into windows of ``seq_len`` tokens (:func:`token_windows`); each window is
one forward pass, and every token but a window's first is predicted from the tokens before it in the
same window. With :math:`W` windows :math:`x^{(w)}_{0..L-1}` and :math:`N = W (L - 1)` predicted tokens,

.. math::

    \\mathrm{nll} = \\frac{1}{N} \\sum_{w} \\sum_{t=1}^{L-1}
        -\\log \\operatorname{softmax}\\big(z^{(w)}_{t-1}\\big)_{x^{(w)}_t}, \\qquad
    \\mathrm{ppl} = e^{\\mathrm{nll}},

where :math:`z^{(w)}_{t-1}` are the logits after reading :math:`x^{(w)}_{0..t-1}`. When the model
expects a beginning-of-sequence token (:func:`expects_bos`), a window is BOS then ``seq_len - 1`` text
tokens, its first text token predicted from BOS alone. Logits are upcast to float64 (exact) before the
log-softmax and the sums: the result depends on the summation order only through float64 rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Perplexity", "expects_bos", "perplexity", "text_windows", "token_windows"]

# Positions per float64 log-softmax chunk: 256 x 49152 x 8 bytes = 100 MB for SmolLM2's vocabulary.
_CHUNK = 256


@dataclass(frozen=True)
class Perplexity:
    """A perplexity measurement.

    Attributes
    ----------
    ppl : float
        ``exp(nll)`` (``inf`` when that overflows).
    nll : float
        Mean negative log-likelihood, nats per predicted token.
    tokens : int
        Predicted tokens: ``windows * (seq_len - 1)``.
    windows : int
        Windows (forward passes).
    """

    ppl: float
    nll: float
    tokens: int
    windows: int


def expects_bos(tokenizer) -> int | None:
    """The BOS id the model expects at the start of a sequence, or None, as its own tokenizer decides:
    ``tokenizer("x")`` (special tokens on, as in training and inference) starts with
    ``tokenizer.bos_token_id`` exactly when its ``add_bos_token`` setting or post-processor template adds it.

    SmolLM2 expects none, rightly: its ``bos_token`` (id 1) is ``<|im_start|>``, the chat-turn marker, not a
    document start (the GGUF's ``tokenizer.ggml.add_bos_token`` is False), and it was pretrained on documents
    packed with ``<|endoftext|>`` (id 0) between them and no BOS: plain-text windows are its training input.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    ids = tokenizer("x")["input_ids"]
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    return int(bos) if len(ids) > 0 and ids[0] == bos else None


def _as_ids(ids) -> torch.Tensor:
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"ids must hold integer token ids; got a tensor of {ids.dtype}")
        out = ids.detach().to("cpu", torch.long)
    elif isinstance(ids, np.ndarray):
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must hold integer token ids; got an array of {ids.dtype}")
        out = torch.from_numpy(ids.astype(np.int64))
    elif isinstance(ids, Sequence) and not isinstance(ids, str | bytes):
        if not all(isinstance(i, int | np.integer) and not isinstance(i, bool) for i in ids):
            raise ValueError("ids must be a sequence of int token ids (e.g. tokenizer(text)['input_ids'])")
        out = torch.tensor(list(ids), dtype=torch.long)
    else:
        raise ValueError(f"ids must be a sequence of int token ids (list, 1-D tensor or array); got "
                         f"{type(ids).__name__}")
    if out.ndim != 1:
        raise ValueError(f"ids must be 1-D (one text's token ids); got shape {tuple(out.shape)}")
    if out.numel() and int(out.min()) < 0:
        raise ValueError(f"ids must be non-negative token ids; found {int(out.min())}")
    return out


def _positive_int(value, name: str, least: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}; got {value!r}; {fix}")
    return int(value)


def token_windows(ids: Sequence[int], seq_len: int, bos_id: int | None, *,
                  max_windows: int | None = None) -> torch.Tensor:
    """Non-overlapping windows of ``seq_len`` tokens, as a ``(k, seq_len)`` LongTensor.

    Parameters
    ----------
    ids : sequence of int, 1-D tensor or array
        A text's token ids, without special tokens.
    seq_len : int
        Tokens per window, >= 2 (at least one token is predicted).
    bos_id : int or None
        None: window :math:`i` is ``ids[i L : (i+1) L]`` with :math:`L` = ``seq_len``. An id (see
        :func:`expects_bos`): window :math:`i` is ``[bos_id] + ids[i (L-1) : (i+1)(L-1)]``. Either way
        the windows cover the text in order from its start; a remainder that fills no window is dropped.
    max_windows : int, optional
        Keep only the first ``max_windows`` windows.

    Raises
    ------
    ValueError
        For bad arguments, or fewer tokens than one window needs (the message says how many).
    """
    seq_len = _positive_int(seq_len, "seq_len", 2, "a window needs a first token and one to predict")
    if bos_id is not None:
        bos_id = _positive_int(bos_id, "bos_id", 0, "pass the tokenizer's bos_token_id or None")
    if max_windows is not None:
        max_windows = _positive_int(max_windows, "max_windows", 1, "pass None for all windows")
    flat = _as_ids(ids)
    text_len = seq_len - 1 if bos_id is not None else seq_len
    k = flat.numel() // text_len
    if k == 0:
        raise ValueError(f"ids: {flat.numel()} tokens, but one window of seq_len={seq_len} needs {text_len} "
                         f"text tokens{' after BOS' if bos_id is not None else ''}; pass a longer text or a "
                         "smaller seq_len")
    if max_windows is not None:
        k = min(k, max_windows)
    body = flat[: k * text_len].reshape(k, text_len)
    if bos_id is None:
        return body.clone()
    return torch.cat([torch.full((k, 1), bos_id, dtype=torch.long), body], dim=1)


def text_windows(tokenizer, text: str, seq_len: int, max_windows: int | None = None) -> torch.Tensor:
    """:func:`token_windows` of ``text`` tokenized without special tokens, BOS as :func:`expects_bos` says."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty str (the evaluation text)")
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return token_windows(ids, seq_len, expects_bos(tokenizer), max_windows=max_windows)


def perplexity(model, windows: torch.Tensor, batch_size: int = 4, device: torch.device | str | None = None,
               progress: Callable[[int, int], object] | None = None) -> Perplexity:
    """Perplexity of a causal LM over token windows (see the module docstring for the formula).

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM: ``model(input_ids=..., use_cache=False)`` gives logits ``(batch, seq_len, vocab)``
        (``.logits`` or first element), run under ``torch.no_grad()`` in its own mode (``model.eval()`` first).
    windows : torch.Tensor, shape (k, seq_len)
        Integer token ids, from :func:`token_windows`; position 0 of each window is never predicted.
    batch_size : int
        Windows per forward pass. Changes the result only through float32 rounding of the logits.
    device : torch.device or str, optional
        Where the ids go: the device of the model's input embedding (the default).
    progress : callable, optional
        Called as ``progress(windows_done, windows_total)`` after each batch.

    Returns
    -------
    Perplexity
        NaN or inf logits give NaN or inf, reported, not hidden.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module (a causal LM); got {type(model).__name__}")
    if not isinstance(windows, torch.Tensor) or windows.dtype.is_floating_point or windows.is_complex() \
            or windows.dtype == torch.bool:
        raise ValueError("windows must be an integer torch.Tensor of token ids (k, seq_len); "
                         "use token_windows()")
    if windows.ndim != 2 or windows.shape[0] < 1 or windows.shape[1] < 2:
        raise ValueError(f"windows must have shape (k >= 1, seq_len >= 2); got {tuple(windows.shape)}; "
                         "use token_windows()")
    batch_size = _positive_int(batch_size, "batch_size", 1, "e.g. 4; smaller uses less memory")
    if progress is not None and not callable(progress):
        raise ValueError("progress must be None or a callable progress(done, total)")
    if int(windows.min()) < 0:
        raise ValueError(f"windows hold a negative token id ({int(windows.min())})")
    # getattr: torch types unknown Module attributes as Tensor | Module, not as the Hugging Face method.
    get_embed = getattr(model, "get_input_embeddings", None)
    embed = get_embed() if get_embed is not None else None
    vocab = getattr(embed, "num_embeddings", None)
    if vocab is not None and int(windows.max()) >= vocab:
        raise ValueError(f"windows hold token id {int(windows.max())} but the model's vocabulary has {vocab}; "
                         "tokenize with this model's tokenizer")
    weight = getattr(embed, "weight", None)  # the input embedding's device, else the first parameter's
    home = weight.device if weight is not None else next((p.device for p in model.parameters()),
                                                         torch.device("cpu"))
    device = home if device is None else torch.device(device)
    if device != home and not (device.type == home.type and device.index is None):
        raise ValueError(f"device={device}, but the model's input embedding is on {home}; move the model "
                         f"(model.to({str(device)!r})) or pass device=None")
    k, seq_len = windows.shape
    sums: list[float] = []
    with torch.no_grad():
        for start in range(0, k, batch_size):
            batch = windows[start:start + batch_size].to(device=device, dtype=torch.long)
            out = model(input_ids=batch, use_cache=False)
            logits = out.logits if hasattr(out, "logits") else out[0]
            if logits.shape[:2] != batch.shape:
                raise ValueError(f"model returned logits of shape {tuple(logits.shape)} for input "
                                 f"{tuple(batch.shape)}; expected (batch, seq_len, vocab)")
            # float64 on the same device (MPS has none: there, on the CPU).
            exact = torch.device("cpu") if logits.device.type == "mps" else logits.device
            for row in range(batch.shape[0]):
                for c in range(0, seq_len - 1, _CHUNK):
                    z = logits[row, c:min(c + _CHUNK, seq_len - 1)].to(exact, torch.float64)
                    target = batch[row, c + 1:c + 1 + z.shape[0]].to(exact)
                    # -log softmax(z)[x] = logsumexp(z) - z[x]
                    nll = torch.logsumexp(z, dim=-1) - z.gather(-1, target[:, None])[:, 0]
                    sums.append(float(nll.sum()))
            del out, logits
            if progress is not None:
                progress(min(start + batch_size, k), k)
    tokens = k * (seq_len - 1)
    nll = math.fsum(sums) / tokens
    ppl = math.inf if nll > 709.0 else math.exp(nll)  # exp overflows float64 past ~709.78; NaN stays NaN
    return Perplexity(ppl=ppl, nll=nll, tokens=tokens, windows=k)
