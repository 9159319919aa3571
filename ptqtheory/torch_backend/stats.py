r"""Calibration statistics on the device: :math:`X^TX`, :math:`\tilde X^T\tilde X`, :math:`\tilde X^TX`.

:class:`TorchAccumulator` streams batches of rows, so a layer's inputs are never held at once. With
the mismatch statistics (Qronos, A4) it stores :math:`\tilde X^T\tilde X`, :math:`\tilde X^T\Delta`
and :math:`\Delta^T\Delta` with :math:`\Delta = X - \tilde X` formed per batch, and derives
:math:`X^TX` and :math:`\tilde X^TX` from them. The quantities Qronos and its certificate need are
small when :math:`\tilde X \approx X` (:math:`w_{LS} - w = \tilde H^{-1}\tilde X^T\Delta w`,
:math:`\|r_0\|^2 \le \|\Delta w\|^2`); computing them from these statistics avoids the cancellation
of :math:`G w - \tilde H w` or :math:`w^THw - w^TG^T\tilde H^{-1}Gw` formed from large terms.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from scipy.linalg import blas

from .._validate import check_bool, check_lam, check_positive_int
from ..calibration import Damping
from ..tolerances import FLOAT32_GRAM_EXP, GRAM_CHUNK_ROWS, gram_rounding
from .device import as_data, check_data_range, mixed_error, tf32_guard

__all__ = ["GRAMS", "TorchAccumulator", "is_identity", "resolve_lam", "statistics", "sym_perm"]

ROWS_PER_CHUNK = 8192
GRAMS = ("float64", "float32")
_NARROW = (torch.float32, torch.float16, torch.bfloat16)  # exact in float32


class TorchAccumulator:
    r"""Streams the calibration statistics of one layer on a device, in float64.

    Parameters
    ----------
    N : int
        Number of input features (columns of ``X``).
    device : str or torch.device
        Where the ``N x N`` statistics live (the device the layer is quantized on).
    with_mismatch : bool
        Also track the quantized-model inputs ``Xt`` (Qronos, THEORY.md A4).
    gram : {"float64", "float32"}
        How :math:`X^TX` is formed (without the mismatch statistics; those are always float64).
        ``"float64"`` (default): float64 products of the rows widened to float64. ``"float32"``:
        float32 products of chunks of :data:`~ptqtheory.tolerances.GRAM_CHUNK_ROWS` rows, each added
        into the float64 accumulator, about 1.5x faster on a CPU (and more on GPUs), for batches exact
        in float32 (float32, float16, bfloat16) with largest magnitude within :math:`2^{\pm 40}`
        (others, float64 ones in particular, are never rounded: added in float64). The entrywise error
        is then at most :math:`\gamma_c(u_{32})\approx 6\cdot 10^{-5}` of :math:`|X|^T|X|`
        (:attr:`gram_rounding`), which the certificates add to their allowances.

    Attributes
    ----------
    m : int
        Rows (tokens) seen so far.
    gram_X, gram_Xt, cross_Xt_X : torch.Tensor
        :math:`X^TX`, :math:`\tilde X^T\tilde X`, :math:`\tilde X^TX` (float64, ``N x N``).
    cross_Xt_mismatch, gram_mismatch : torch.Tensor
        :math:`\tilde X^T(X - \tilde X)` and :math:`(X - \tilde X)^T(X - \tilde X)` (mismatch only).

    Notes
    -----
    The torch algorithms accept an accumulator in place of ``X`` (statistics only; GPFQ needs the data).
    Batches: any floating dtype, any shape ``(..., N)`` (e.g. ``(batch, tokens, N)``), flattened into rows.
    """

    __ptqtheory_torch__ = True

    def __init__(self, N: int, device="cpu", with_mismatch: bool = False, gram: str = "float64"):
        self.N = check_positive_int("N", N)
        if gram not in GRAMS:
            raise ValueError(f"gram must be one of {GRAMS} (how X^T X is formed); got {gram!r}")
        self.gram = gram
        # X^T X's parts for E4 (ptqtheory.tolerances): float64 rows, float32 rows, float32 chunk products.
        self.rows64 = self.rows32 = self.chunks32 = 0
        # A concrete device ("cuda:0", not "cuda"), so that it compares equal to a tensor's device.
        try:
            self.device = torch.empty(0, device=device).device
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0'; got {device!r} "
                             f"({exc})") from None
        self.with_mismatch = check_bool("with_mismatch", with_mismatch)
        self.m = self.batches = 0
        zeros = lambda: torch.zeros(self.N, self.N, dtype=torch.float64, device=self.device)  # noqa: E731
        mismatch = self.with_mismatch
        self._gram_X: torch.Tensor | None = None if mismatch else zeros()
        self._gram_Xt: torch.Tensor | None = zeros() if mismatch else None
        self._cross_Xt_mismatch: torch.Tensor | None = zeros() if mismatch else None
        self._gram_mismatch: torch.Tensor | None = zeros() if mismatch else None

    def rows(self, name: str, b, index: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``b`` as rows ``(-1, N)`` of ``dtype`` (float64, or float32 for a batch that is exact in
        float32) on this device, checked for shape and NaN/Inf."""
        if not isinstance(b, torch.Tensor):
            raise mixed_error(name, b)
        if not b.is_floating_point():
            raise TypeError(f"{name} has dtype {b.dtype}; pass floating point activations")
        if b.ndim < 2 or b.shape[-1] != self.N:
            raise ValueError(f"{name} must have shape (..., {self.N}) (one column per input feature); "
                             f"got {tuple(b.shape)}")
        rows = b.detach().reshape(-1, self.N).to(device=self.device, dtype=dtype)
        top = check_data_range(f"{name} (batch {index} of this accumulator)", rows)
        if dtype == torch.float32 and not _in_float32_gram_range(top):
            return rows.to(torch.float64)  # outside the float32 Gram's range: the float64 route
        return rows

    def update(self, X_batch, Xt_batch=None) -> None:
        """Add one batch of rows of ``X`` (and the same rows of ``Xt`` when tracking the mismatch)."""
        index = self.batches
        if Xt_batch is not None and not self.with_mismatch:
            raise ValueError("Xt_batch given but the accumulator was built with with_mismatch=False")
        narrow = isinstance(X_batch, torch.Tensor) and X_batch.dtype in _NARROW
        if self.gram == "float32" and not self.with_mismatch and narrow and _float32_products_exact():
            self.add_rows(self.rows("X_batch", X_batch, index, dtype=torch.float32))
            return
        Xb = self.rows("X_batch", X_batch, index)
        Xtb = None
        if self.with_mismatch:
            if Xt_batch is None:
                raise ValueError("Xt_batch is required: this accumulator tracks the mismatch (Qronos)")
            Xtb = self.rows("Xt_batch", Xt_batch, index)
        self.add_rows(Xb, Xtb)

    def add_rows(self, Xb: torch.Tensor, Xtb: torch.Tensor | None = None) -> None:
        """Add rows on the device, checked as by :meth:`rows`: float64, or float32 for the chunked Gram."""
        if self.with_mismatch:
            if Xtb is None:
                raise ValueError("Xtb is required: this accumulator tracks the mismatch (Qronos)")
            if Xtb.shape[0] != Xb.shape[0]:
                raise ValueError(
                    f"Xt_batch has {Xtb.shape[0]} rows but X_batch has {Xb.shape[0]}: the quantized-model "
                    "inputs must be the same samples as the float-model inputs, row for row"
                )
            mismatch_b = Xb - Xtb
            add_gram_(self.gram_Xt, Xtb)
            self.cross_Xt_mismatch.addmm_(Xtb.T, mismatch_b)
            add_gram_(self.gram_mismatch, mismatch_b)
            self.rows64 += Xb.shape[0]
        elif Xb.dtype == torch.float32:
            with tf32_guard(self.device, False):
                self.chunks32 += add_gram_chunked_(self.gram_X, Xb)
            self.rows32 += Xb.shape[0]
        else:
            add_gram_(self.gram_X, Xb)
            self.rows64 += Xb.shape[0]
        self.m += Xb.shape[0]
        self.batches += 1

    @property
    def gram_rounding(self) -> tuple[float, float] | None:
        r"""``(rel, abs)`` of :func:`ptqtheory.tolerances.gram_rounding` for :math:`X^TX` when float32
        chunk products went into it; ``None`` for statistics formed in float64 (whose rounding,
        :math:`\gamma_m(u_{64})`, the identities' relative tolerance absorbs)."""
        if not self.chunks32:
            return None
        return gram_rounding(GRAM_CHUNK_ROWS, self.chunks32, self.rows32, self.rows64)

    @classmethod
    def from_data(cls, X: torch.Tensor, Xt: torch.Tensor | None = None, device=None,
                  gram: str = "float64") -> TorchAccumulator:
        """The statistics of whole tensors, accumulated in chunks of rows (bounded float64 copies)."""
        acc = cls(X.shape[-1], X.device if device is None else device, with_mismatch=Xt is not None,
                  gram=gram)
        for Xb, Xtb in batches_of(X, Xt):
            acc.update(Xb, Xtb)
        return acc

    def _need_data(self) -> None:
        if self.m == 0:
            raise ValueError("the accumulator has seen no rows; call update(X_batch) first")

    def _need_mismatch(self) -> None:
        if not self.with_mismatch:
            raise ValueError(
                "this accumulator was built with with_mismatch=False; Qronos needs the statistics of "
                "the quantized-model inputs too: TorchAccumulator(N, device, with_mismatch=True)"
            )

    @property
    def gram_X(self) -> torch.Tensor:
        if not self.with_mismatch:
            assert self._gram_X is not None  # set without the mismatch
            return self._gram_X
        return self.gram_mismatch + self.cross_Xt_mismatch + self.cross_Xt_mismatch.T + self.gram_Xt

    def _mismatch_stat(self, name: str) -> torch.Tensor:
        """The statistic ``name`` that only an accumulator with the mismatch holds."""
        self._need_mismatch()
        S = getattr(self, name)
        assert S is not None  # set with the mismatch
        return S

    @property
    def gram_Xt(self) -> torch.Tensor:
        return self._mismatch_stat("_gram_Xt")

    @property
    def cross_Xt_mismatch(self) -> torch.Tensor:
        return self._mismatch_stat("_cross_Xt_mismatch")

    @property
    def gram_mismatch(self) -> torch.Tensor:
        return self._mismatch_stat("_gram_mismatch")

    @property
    def cross_Xt_X(self) -> torch.Tensor:
        return self.gram_Xt + self.cross_Xt_mismatch

    def H(self, lam=0.0) -> torch.Tensor:
        r""":math:`H = X^TX + \lambda I` (float64)."""
        self._need_data()
        return _damped(self.gram_X, resolve_lam(lam, self)[0])

    def Ht_G(self, lam=0.0) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\tilde H, G) = (\tilde X^T\tilde X + \lambda I, \tilde X^T X + \lambda I)`."""
        self._need_mismatch()
        self._need_data()
        lam_abs, _ = resolve_lam(lam, self)
        return _damped(self.gram_Xt, lam_abs), _damped(self.cross_Xt_X, lam_abs)

    def transformed(self, V: torch.Tensor) -> TorchAccumulator:
        r"""The statistics of :math:`XV^T` (and :math:`\tilde XV^T`): each matrix :math:`S \to VSV^T`."""
        out = TorchAccumulator(self.N, self.device, self.with_mismatch, self.gram)
        out.m = self.m
        # The rounding of V S V^T itself is float64's; the bound of the statistics carries over in the
        # contracted form the certificates read (tolerances.gram_statistics_allowance, V orthogonal).
        out.rows64, out.rows32, out.chunks32 = self.rows64, self.rows32, self.chunks32
        V = V.to(device=self.device, dtype=torch.float64)
        for name in ("_gram_X", "_gram_Xt", "_cross_Xt_mismatch", "_gram_mismatch"):
            S = getattr(self, name)
            if S is not None:
                setattr(out, name, V @ S @ V.T)
        return out

    def __repr__(self) -> str:
        return (f"TorchAccumulator(N={self.N}, device={self.device}, m={self.m}, "
                f"with_mismatch={self.with_mismatch}, gram={self.gram!r})")


def add_gram_(S: torch.Tensor, A: torch.Tensor, panels: int = 8) -> None:
    r""":math:`S \mathrel{+}= A^TA` for symmetric ``S``, at about half the flops of one product.

    On the CPU in float64 this is BLAS ``dsyrk`` (through :mod:`scipy.linalg.blas`, on the arrays'
    own memory): exactly half the flops, the symmetric rank-k update that torch lacks. Elsewhere by
    ``panels`` row panels (:func:`_upper_panels_`: a fraction :math:`(k+1)/2k` of the full product's
    flops). Either way one triangle is computed and mirrored into the other, so ``S`` stays exactly symmetric.
    """
    N = A.shape[1]
    if S.device.type == "cpu" and S.dtype == A.dtype == torch.float64 and S.is_contiguous():
        # S is symmetric, so its row-major memory read column-major is S itself: dsyrk updates it in
        # place (its upper triangle in column-major order is S's lower triangle in row-major order).
        c = S.numpy().T
        out = blas.dsyrk(1.0, A.detach().contiguous().numpy().T, beta=1.0, c=c, overwrite_c=1)
        if out is not c:
            c[...] = out
        _mirror_(S, lower=True)
        return
    width = max(256, -(-N // panels))
    _upper_panels_(S, A, width)  # one panel (width >= N): the full product, symmetric as it is
    if width < N:
        _mirror_(S)


def add_gram_chunked_(S: torch.Tensor, A: torch.Tensor, chunk: int = GRAM_CHUNK_ROWS, panels: int = 8) -> int:
    r""":math:`S \mathrel{+}= A^TA` for float64 symmetric ``S`` and float32 rows ``A``: float32 products
    of chunks of ``chunk`` rows, each widened (exactly) and added into ``S``. Returns the number of
    chunks (the float64 additions that :func:`ptqtheory.tolerances.gram_rounding` counts).

    Each chunk's upper triangle is computed by row panels, as in :func:`add_gram_`, into a float32
    scratch matrix, widened into a float64 one and added (several times faster than a mixed-dtype
    addition); the lower triangle is mirrored once at the end.
    """
    m, N = A.shape
    if m == 0:
        return 0
    width = max(256, -(-N // panels))
    buf = torch.zeros(N, N, dtype=torch.float32, device=S.device)
    wide = torch.empty(N, N, dtype=torch.float64, device=S.device)
    count = 0
    for r0 in range(0, m, chunk):
        Ac = A[r0:r0 + chunk]
        if width >= N:
            torch.mm(Ac.T, Ac, out=buf)
        else:
            _upper_panels_(buf, Ac, width, beta=0)
        wide.copy_(buf)
        S.add_(wide)
        count += 1
    _mirror_(S)
    return count


def _upper_panels_(S: torch.Tensor, A: torch.Tensor, width: int, beta: float = 1) -> None:
    r""":math:`S_{P, \ge P} \leftarrow \beta S_{P, \ge P} + A_P^TA_{\ge P}` for the row panels :math:`P` of
    ``width`` rows: the upper triangle of :math:`A^TA` (and the part of the lower one inside the panels)."""
    for p0 in range(0, A.shape[1], width):
        S[p0 : p0 + width, p0:].addmm_(A[:, p0 : p0 + width].T, A[:, p0:], beta=beta)


def _mirror_(S: torch.Tensor, lower: bool = False, width: int = 256) -> None:
    """Copy the strict upper (``lower``: lower) triangle of ``S`` into the other, by panels of ``width`` rows:
    ``S`` exactly symmetric in about half a pass (whole-matrix ``triu``/``tril`` copies take several)."""
    for p0 in range(0, S.shape[0], width):
        p1 = p0 + width
        if lower:
            S[p0:p1, p1:] = S[p1:, p0:p1].T
        else:
            S[p1:, p0:p1] = S[p0:p1, p1:].T
        B = S[p0:p1, p0:p1]
        B.copy_(torch.tril(B) + torch.tril(B, -1).T if lower else torch.triu(B) + torch.triu(B, 1).T)


def _float32_products_exact() -> bool:
    """float32 products are IEEE float32 (not bfloat16/TF32 fast modes): the matmul precision is
    "highest" (on CUDA, :func:`~ptqtheory.torch_backend.device.tf32_guard` also turns TF32 off)."""
    return torch.get_float32_matmul_precision() == "highest"


def _in_float32_gram_range(top: float) -> bool:
    """The largest magnitude of a batch within the float32 Gram's range (or zero)."""
    return top == 0.0 or 2.0**-FLOAT32_GRAM_EXP <= top <= 2.0**FLOAT32_GRAM_EXP


def _damped(S: torch.Tensor, lam: float) -> torch.Tensor:
    """``S + lam I`` (a new tensor)."""
    out = S.clone()
    out.diagonal().add_(lam)
    return out


def is_identity(perm: torch.Tensor) -> bool:
    """True for the natural order (then permuting is a copy that can be skipped)."""
    return bool(torch.equal(perm, torch.arange(perm.numel(), device=perm.device, dtype=perm.dtype)))


def sym_perm(S: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``S[perm][:, perm]`` (processing order); ``S`` itself for the natural order (callers only read it)."""
    return S if is_identity(perm) else S.index_select(0, perm).index_select(1, perm)


def resolve_lam(lam, acc: TorchAccumulator) -> tuple[float, Damping | None]:
    """Absolute ``lam`` from a number or a :class:`~ptqtheory.Damping` by
    :meth:`ptqtheory.Damping.resolve_with` (as in the numpy backend), fed with ``mean(diag(X^T X))``
    and ``lambda_max(X^T X)`` computed on the device (no host copy of ``X^T X``)."""
    if isinstance(lam, Damping):
        value = lam.resolve_with(lambda: float(torch.diagonal(acc.gram_X).mean()),
                                 lambda: float(torch.linalg.eigvalsh(acc.gram_X)[-1]))
        return check_lam(value), lam
    return check_lam(lam), None


def statistics(X, Xt, N: int, device: torch.device, *, mismatch: bool, algorithm: str, data: bool = False):
    """``(accumulator, X data or None, Xt data or None)`` from tensors or from an accumulator;
    ``data=True`` (GPFQ) refuses an accumulator and returns the checked tensors without statistics."""
    if isinstance(X, TorchAccumulator):
        if data:
            raise ValueError(
                f"{algorithm.upper()} needs the calibration data X and Xt themselves, not statistics: "
                "its state u_t = X_{<=t} w_{<=t} - Xt_{<=t} q_{<=t} lives in R^m. Pass the tensors "
                "X (m, N) and Xt (m, N); a TorchAccumulator serves OPTQ, LDLQ and Qronos only"
            )
        if X.N != N:
            raise ValueError(f"the accumulator has N = {X.N} columns but W has {N}")
        if X.device != device:
            raise ValueError(f"the accumulator is on {X.device} but W is on {device}")
        X._need_data()
        if Xt is not None:
            raise ValueError(
                "Xt was given with statistics (a TorchAccumulator) for X: feed Xt's batches into the "
                "accumulator instead (TorchAccumulator(N, device, with_mismatch=True).update(X_b, Xt_b))"
            )
        if mismatch:
            X._need_mismatch()
        return X, None, None
    Xd = as_data("X", X, N, device)
    Xtd = None
    if mismatch:
        if Xt is None:
            raise ValueError("Xt is required: the inputs from the partly quantized model (use Xt=X if none)")
        Xtd = as_data("Xt", Xt, N, device, m=Xd.shape[0])
    elif Xt is not None:
        raise ValueError(f"{algorithm} takes no Xt")
    return None if data else TorchAccumulator.from_data(Xd, Xtd), Xd, Xtd


def batches_of(X: torch.Tensor, Xt: torch.Tensor | None) -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]:
    """Row chunks of whole tensors, so a streamed computation never holds more than one chunk."""
    for r0 in range(0, X.shape[0], ROWS_PER_CHUNK):
        r1 = min(r0 + ROWS_PER_CHUNK, X.shape[0])
        yield X[r0:r1], None if Xt is None else Xt[r0:r1]
