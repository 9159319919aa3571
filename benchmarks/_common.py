"""What the benchmarks share: the machine record, timing, the same-results check, tables, JSON files.

Every benchmark is one command that prints a table and writes ``benchmarks/results/<name>.json``
holding the machine, the command, every measured time and every ratio. Times are wall-clock
seconds of :func:`time.perf_counter`, the minimum over ``repeats`` runs after one untimed run
(which is also the run whose results are checked).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine(device: str = "cpu") -> dict:
    """The machine a result was measured on: CPU model and cores, threads, library versions, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import scipy

    out = {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "torch": torch.__version__, "platform": platform.platform(),
    }
    try:
        import brevitas

        out["brevitas"] = brevitas.__version__
    except ImportError:
        out["brevitas"] = None
    if str(device).startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def command() -> str:
    """The command line that produced this result (to be written next to every number)."""
    return "python " + " ".join(shlex.quote(a) for a in [_script(), *sys.argv[1:]])


def _script() -> str:
    try:
        return str(Path(sys.argv[0]).resolve().relative_to(Path.cwd()))
    except ValueError:
        return sys.argv[0]


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], repeats: int, device="cpu") -> tuple[object, list[float]]:
    """Run ``fn`` once untimed (its result is returned for checking), then ``repeats`` timed runs."""
    result = fn()
    sync(device)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return result, times


def to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


def codes(Q, delta: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """Integer grid codes ``round(Q / delta + zero)`` (per-row ``delta`` and ``zero`` of shape (n, 1))."""
    return np.rint(to_numpy(Q) / delta + zero).astype(np.int64)


def agreement(Q, Q_ref, X: np.ndarray, W: np.ndarray, delta: np.ndarray, zero: np.ndarray) -> dict:
    """How equal two quantizations of the same layer are.

    ``codes``: the fraction of entries with the same grid code. ``loss_rel``: the relative difference
    of the layer-output errors :math:`\\|X(W-Q)^T\\|_F^2`. Float32 runs of the same algorithm may
    differ at near-ties (a flip then changes that row's later decisions), so "equal" is judged by
    :data:`MIN_CODES` and :data:`MAX_LOSS_REL`.
    """
    c, c_ref = codes(Q, delta, zero), codes(Q_ref, delta, zero)
    loss = float(np.sum((X @ (W - to_numpy(Q)).T) ** 2))
    loss_ref = float(np.sum((X @ (W - to_numpy(Q_ref)).T) ** 2))
    return {
        "codes": float(np.mean(c == c_ref)),
        "rows_differing": int(np.sum(np.any(c != c_ref, axis=1))),
        "loss": loss, "loss_ref": loss_ref, "loss_rel": abs(loss - loss_ref) / loss_ref,
    }


MIN_CODES = 0.999
MAX_LOSS_REL = 1e-3


def equal_enough(a: dict) -> bool:
    return a["codes"] >= MIN_CODES and a["loss_rel"] <= MAX_LOSS_REL


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """A plain-text table; ``columns`` are ``(key, header, format)``."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([("-" if r.get(k) is None else format(r[k], f)) for k, _, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write(name: str, payload: dict, out: Path | None = None) -> Path:
    """Write ``payload`` (with the machine and the command) to ``results/<name>.json``."""
    path = (out or RESULTS) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")
    return path


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def layer_data(n: int, N: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded layer: weights ``W`` (n, N) and correlated inputs ``X`` (m, N), float32 values.

    ``X = Z A`` with Gaussian ``Z`` and ``A = I + 0.3 G / sqrt(N)`` (correlated features), plus a few
    outlier features scaled 10x as in transformer activations; ``W`` is Gaussian with a per-row scale.
    Values are rounded to float32 so that float32 and float64 runs see the same numbers.
    """
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((m, N), dtype=np.float32)
    A = np.eye(N, dtype=np.float32) + 0.3 * rng.standard_normal((N, N), dtype=np.float32) / np.sqrt(N)
    X = Z @ A
    X[:, rng.choice(N, size=max(1, N // 128), replace=False)] *= 10
    W = rng.standard_normal((n, N), dtype=np.float32) * (0.02 * (1 + rng.random((n, 1), dtype=np.float32)))
    return W.astype(np.float64), X.astype(np.float64)
