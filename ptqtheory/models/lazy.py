"""Decoder blocks streamed from a safetensors folder: one block's weights in memory at a time.

:class:`SafetensorsBlocks` is a block source for :mod:`ptqtheory.models.pipeline`: it builds the model's
skeleton from ``config.json`` with every parameter on the ``meta`` device (no memory), loads the non-block
tensors (embeddings, final norm, ``lm_head``, OPT's learned positions) onto the CPU, and materializes one
block's parameters at a time on the work device, reading only that block's tensors.
:meth:`SafetensorsBlocks.release` writes a quantized block (optionally) and returns its parameters to
``meta``: peak memory is one block plus the non-block tensors, whatever the depth.

The skeleton's buffers are real (``accelerate.init_empty_weights`` keeps them off ``meta``), so computed
ones such as the rotary ``inv_freq`` are those of the model's own constructor.

Only safetensors are read (:func:`ptqtheory.models.hf.check_folder`), and no remote code is run (the
architecture must be one that ``transformers`` ships).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import safe_open

from .hf import ModelFolderError, check_folder, decoder_blocks

__all__ = ["SafetensorsBlocks"]

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


class SafetensorsBlocks:
    """A Hugging Face causal LM whose decoder blocks are loaded from safetensors one at a time.

    Parameters
    ----------
    folder : str or Path
        A local model folder: ``config.json`` and ``.safetensors`` weights (one file, or shards with
        ``model.safetensors.index.json``); blocks where :func:`~ptqtheory.models.hf.decoder_blocks` finds them.
    dtype : torch.dtype
        Floating dtype of the parameters built (the files' tensors are cast to it).
    out_dir : str or Path, optional
        Where :meth:`release` writes each released block's weights, as
        ``block-{i:04d}.safetensors`` (full tensor names, e.g. ``model.layers.3.mlp.up_proj.weight``).

    Attributes
    ----------
    model : torch.nn.Module
        The whole model, in eval mode, parameters with ``requires_grad=False`` (inference only):
        non-block ones on the CPU, a block's on ``meta`` except between :meth:`load` and :meth:`release`.
    names : list of str
        Module names of the decoder blocks in forward order.
    folder, dtype, out_dir
        The arguments (paths as ``Path``).
    """

    def __init__(self, folder: str | Path, dtype: torch.dtype = torch.float32,
                 out_dir: str | Path | None = None):
        self.folder = check_folder(folder)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype (e.g. torch.float32); got {dtype!r}")
        self.dtype = dtype
        self.out_dir = None if out_dir is None else Path(out_dir)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._files = _tensor_files(self.folder)
        self.model = _skeleton(self.folder, dtype)
        blocks = decoder_blocks(self.model)
        self.names: list[str] = [name for name, _ in blocks]
        self._blocks: list[torch.nn.Module] = [blk for _, blk in blocks]
        self._loaded: dict[int, torch.device] = {}
        self._prefix = getattr(self.model, "base_model_prefix", "") or ""
        self._load_non_block()

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return (f"SafetensorsBlocks({str(self.folder)!r}, {len(self)} blocks, dtype={self.dtype}, "
                f"loaded={sorted(self._loaded)})")

    def load(self, i: int, device: str | torch.device) -> torch.nn.Module:
        """Block ``i`` (the module in :attr:`model`), only its tensors read onto ``device`` in :attr:`dtype`."""
        i = self._index(i)
        if i in self._loaded:
            raise ValueError(f"block {i} ({self.names[i]}) is already loaded on {self._loaded[i]}; "
                             "release it first")
        device = torch.empty(0, device=device).device  # resolves "cuda" to "cuda:0" and checks it
        block = self._blocks[i]
        prefix = self.names[i] + "."
        params = _param_slots(block)
        keys = {rel: self._key(prefix + rel) for rel in params}
        tensors = self._read(keys.values())
        for rel, slots in params.items():
            p = self._parameter(tensors.pop(keys[rel]), device, prefix + rel, slots[0])
            for mod, attr in slots:  # a tensor shared inside the block stays shared
                mod._parameters[attr] = p
        for mod, attr, buf in _buffers(block):
            mod._buffers[attr] = buf.to(device)
        self._loaded[i] = device
        return block

    def release(self, i: int, block: torch.nn.Module) -> None:
        """Block ``i`` is done: write its weights to :attr:`out_dir` (if set; a temporary name renamed, so
        a reader never sees a partial file), then free them (parameters to ``meta``, buffers to the CPU)."""
        i = self._index(i)
        if block is not self._blocks[i]:
            raise ValueError(f"block is not block {i} ({self.names[i]}) of this source")
        if i not in self._loaded:
            raise ValueError(f"block {i} ({self.names[i]}) is not loaded")
        if self.out_dir is not None:
            self._write(i, block)
        for slots in _param_slots(block).values():
            owner, name = slots[0]
            loaded = cast(torch.Tensor, owner._parameters[name])  # present: the block is loaded
            empty = torch.nn.Parameter(torch.empty_like(loaded, device="meta"), requires_grad=False)
            for mod, attr in slots:  # the last reference to the loaded tensor goes here
                mod._parameters[attr] = empty
        for mod, attr, buf in _buffers(block):
            mod._buffers[attr] = buf.to("cpu")
        del self._loaded[i]

    def block_file(self, i: int) -> Path:
        """The file :meth:`release` writes block ``i`` to (needs :attr:`out_dir`)."""
        if self.out_dir is None:
            raise ValueError("out_dir was not given: released blocks are not written")
        return self.out_dir / f"block-{self._index(i):04d}.safetensors"

    def _index(self, i: int) -> int:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self):
            raise IndexError(f"i must be a block index in [0, {len(self)}); got {i!r}")
        return i

    def _key(self, name: str) -> str:
        """The files' key of the model tensor ``name`` (some checkpoints lack the base prefix)."""
        if name in self._files:
            return name
        p = self._prefix + "."
        alt = name[len(p):] if self._prefix and name.startswith(p) else p + name
        if self._prefix and alt in self._files:
            return alt
        raise ModelFolderError(f"{self.folder}: the safetensors files hold no tensor {name!r}")

    def _read(self, keys: Iterable[str]) -> dict[str, torch.Tensor]:
        """The tensors ``keys`` (on the CPU), opening each file once and reading nothing else."""
        by_file: dict[str, list[str]] = defaultdict(list)
        for k in keys:
            by_file[self._files[k]].append(k)
        out = {}
        for fname, ks in by_file.items():
            with safe_open(str(self.folder / fname), framework="pt", device="cpu") as f:
                out.update({k: f.get_tensor(k) for k in ks})
        return out

    def _parameter(self, t: torch.Tensor, device: torch.device, name: str, slot) -> torch.nn.Parameter:
        mod, attr = slot
        want = mod._parameters[attr]
        if tuple(t.shape) != tuple(want.shape):
            raise ModelFolderError(f"{self.folder}: tensor {name!r} has shape {tuple(t.shape)} in the "
                                   f"files but {tuple(want.shape)} in the model built from config.json")
        # Move first, then cast: a bfloat16 file crosses to the GPU at half the bytes.
        t = t.to(device)
        return torch.nn.Parameter(t.to(self.dtype) if t.is_floating_point() else t, requires_grad=False)

    def _load_non_block(self) -> None:
        """Every parameter outside the blocks onto the CPU; tied ones (no tensor of their own) shared."""
        block_prefixes = tuple(n + "." for n in self.names)
        slots = {name: s for name, s in _param_slots(self.model).items() if not name.startswith(block_prefixes)}
        ties = _ties(self.model)
        present, tied = {}, {}
        for name in slots:
            try:
                present[name] = self._key(name)
            except ModelFolderError:
                if ties.get(name) is None:
                    raise
                tied[name] = ties[name]
        tensors = self._read(present.values())
        built = {name: self._parameter(tensors.pop(key), torch.device("cpu"), name, slots[name][0])
                 for name, key in present.items()}
        for name, source in tied.items():
            if source not in built:
                raise ModelFolderError(f"{self.folder}: {name!r} is tied to {source!r}, which the files "
                                       "do not hold either")
            built[name] = built[source]
        for name, p in built.items():
            for mod, attr in slots[name]:
                mod._parameters[attr] = p
        # Persistent buffers stored in the checkpoint (computed ones, like inv_freq, are not stored).
        for name, buf in list(self.model.named_buffers()):
            if name.startswith(block_prefixes):
                continue
            try:
                key = self._key(name)
            except ModelFolderError:
                continue
            mod_name, _, attr = name.rpartition(".")
            mod = self.model.get_submodule(mod_name)
            mod._buffers[attr] = self._read([key])[key].to(buf.dtype)

    def _write(self, i: int, block: torch.nn.Module) -> None:
        from safetensors.torch import save_file

        from ..report import write_bytes

        prefix = self.names[i] + "."
        tensors, seen = {}, set()
        for rel, t in block.state_dict().items():
            t = t.detach().to("cpu").contiguous()
            if t.data_ptr() in seen:  # safetensors refuses tensors that share memory
                t = t.clone()
            seen.add(t.data_ptr())
            tensors[prefix + rel] = t
        write_bytes(self.block_file(i), lambda tmp: save_file(tensors, tmp, metadata={
            "format": "pt", "block": str(i), "name": self.names[i], "source": str(self.folder)}))


def _tensor_files(folder: Path) -> dict[str, str]:
    """Tensor name -> file name (relative to ``folder``), without reading any tensor."""
    index = folder / INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelFolderError(f"{index} has no weight_map")
        for fname in set(weight_map.values()):
            if not (folder / fname).is_file():
                raise ModelFolderError(f"{index} names {fname}, which is not in the folder")
        return dict(weight_map)
    files = [folder / SINGLE] if (folder / SINGLE).is_file() else sorted(folder.glob("*.safetensors"))
    out: dict[str, str] = {}
    for path in files:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for k in f.keys():
                if k in out:
                    raise ModelFolderError(f"{folder}: tensor {k!r} is in both {out[k]} and {path.name}; "
                                           f"add a {INDEX} to say which to use")
                out[k] = path.name
    return out


def _skeleton(folder: Path, dtype: torch.dtype) -> torch.nn.Module:
    """The model built from ``config.json`` with its parameters on ``meta`` and real buffers."""
    try:
        from accelerate import init_empty_weights
    except ImportError as e:  # transformers does not require accelerate
        raise ImportError("SafetensorsBlocks needs accelerate (pip install accelerate)") from e
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, **{key: dtype})
    return model.eval()


def _param_slots(module: torch.nn.Module) -> dict[str, list[tuple[torch.nn.Module, str]]]:
    """Parameter name -> every ``(module, attribute)`` holding that parameter (ties kept together)."""
    first: dict[int, str] = {}
    out: dict[str, list] = {}
    for mod_name, mod in module.named_modules(remove_duplicate=False):
        for attr, p in mod._parameters.items():
            if p is None:
                continue
            name = f"{mod_name}.{attr}" if mod_name else attr
            owner = first.setdefault(id(p), name)
            out.setdefault(owner, []).append((mod, attr))
    return out


def _buffers(module: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.Tensor]]:
    return [(mod, attr, b) for mod in module.modules() for attr, b in mod._buffers.items() if b is not None]


def _ties(model: torch.nn.Module) -> dict[str, str]:
    """Parameter name -> the parameter it is tied to, for parameters a checkpoint may leave out; only when
    the config ties the word embeddings (model classes declare ties whether or not a config uses them,
    and an untied checkpoint that lacks ``lm_head`` is broken)."""
    out: dict[str, str] = {}
    config: Any = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text, "tie_word_embeddings", False):
        declared = getattr(model, "_tied_weights_keys", None)
        if isinstance(declared, dict):  # transformers >= 5: {target: source}
            out.update({k: v for k, v in declared.items() if isinstance(k, str) and isinstance(v, str)})
        names = {id(m): n for n, m in model.named_modules()}
        # getattr: torch types unknown Module attributes as Tensor | Module, not as these methods.
        get_in = getattr(model, "get_input_embeddings", None)
        get_out = getattr(model, "get_output_embeddings", None)
        emb_in = get_in() if get_in is not None else None
        emb_out = get_out() if get_out is not None else None
        if emb_in is not None and emb_out is not None and id(emb_in) in names and id(emb_out) in names:
            out.setdefault(f"{names[id(emb_out)]}.weight", f"{names[id(emb_in)]}.weight")
    return out
