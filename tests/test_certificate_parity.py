"""One certificate assembly for both backends: the same run certified from the data (numpy) and from
float64 statistics on a device (torch) gets the same identity, the same allowance terms and the same
verdicts; the registry decides what each algorithm gets; the certificate modules import no cycle.

The allowance parity is what had drifted (issue 12): the torch certificate lacked I3's allowance for
the formed H (``formed_H``) while its docstring said the allowances were the numpy reference's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import ptqtheory as pt
from ptqtheory import bounds, identities, registry
from ptqtheory._context import RunContext
from ptqtheory.instances import make_instance

PKG = Path(pt.__file__).parent
F64 = torch.float64


def _T(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=F64)


def _runs(algorithm: str, variant: str | None, inst, lam: float, grid, rounding: str = "nearest"):
    """``(numpy run, torch run)`` with the same inputs, order and seed (float64 on the CPU)."""
    kw = dict(lam=lam, grid=grid, order="natural", rounding=rounding, seed=3)
    W, X, Xt = inst.W, inst.X, inst.Xt
    tW, tX, tXt = _T(W), _T(X), _T(Xt)
    if algorithm == "qronos":
        return pt.qronos(W, X, Xt, variant=variant, **kw), pt.qronos(tW, tX, tXt, variant=variant, **kw)
    if algorithm == "gpfq":
        kw = dict(grid=grid, order="natural", seed=3)
        return pt.gpfq(W, X, Xt, **kw), pt.gpfq(tW, tX, tXt, **kw)
    if algorithm == "rtn":
        return pt.rtn(W, grid=grid), pt.rtn(tW, grid=grid)
    fn = getattr(pt, algorithm)
    return fn(W, X, **kw), fn(tW, tX, **kw)


CASES = [("optq", None), ("ldlq", None), ("qronos", "paper"), ("qronos", "ls"), ("gpfq", None), ("rtn", None)]
# Terms whose value does not depend on how the context obtained its quantities (data or statistics):
# they must agree to rounding. "refit", "r0" and "first" carry the least-squares route (QR of the data,
# or normal equations of the statistics) and may differ in size, never in presence.
SHARED_TERMS = ("rounding", "formed_H")


@pytest.mark.parametrize(("algorithm", "variant"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_and_torch_certificates_share_identity_allowances_and_verdicts(algorithm, variant, seed):
    inst = make_instance(seed, "gaussian", m=40, N=12, n=3)
    lam = 0.1 * float(np.mean(np.sum(inst.X**2, axis=0)))
    grid = pt.Grid(0.05)
    ref, run = _runs(algorithm, variant, inst, lam, grid)
    np.testing.assert_allclose(run.Q.numpy(), ref.Q, rtol=0, atol=1e-12)
    uses_xt = registry.entry(algorithm).uses_xt
    r = pt.certify(ref, inst.X, inst.Xt if uses_xt else None)
    c = pt.certify(run, _T(inst.X), _T(inst.Xt) if uses_xt else None)
    assert c.identity == r.identity
    assert c.holds() and r.holds()
    assert [b.label for b in c.bounds] == [b.label for b in r.bounds]
    for a, b in zip(c.bounds, r.bounds, strict=True):
        np.testing.assert_array_equal(a.applies & a.holds, b.applies & b.holds, err_msg=a.label)
    if r.identity is None:
        assert c.identity_check is None and r.identity_check is None
        return
    ca, ra = c.identity_check.allowance, r.identity_check.allowance
    assert set(ca) == set(ra), (algorithm, sorted(ca), sorted(ra))
    for name in SHARED_TERMS:
        if name in ra:
            np.testing.assert_allclose(ca[name], ra[name], rtol=1e-6, atol=0, err_msg=name)
    if set(ra) <= set(SHARED_TERMS):  # no route-specific term: the whole allowance agrees
        np.testing.assert_allclose(c.identity_atol, r.identity_atol, rtol=1e-6, atol=0)
    if r.structure_atol is not None:
        assert c.structure_atol is not None
        if algorithm != "qronos":
            np.testing.assert_allclose(c.structure_atol, r.structure_atol, rtol=1e-6, atol=0)
    if r.pivot_check is not None:
        assert c.pivot_check.bounds_hold == r.pivot_check.bounds_hold
        np.testing.assert_allclose(c.pivot_check.D, r.pivot_check.D, rtol=1e-10)


def test_ldlq_formed_H_allowance_is_in_both_certificates_and_matters():
    """The term that had drifted: I3 reads the formed H in both paths, and its allowance is not negligible
    against the rest (so leaving it out of one path changes that path's verdicts near the tolerance)."""
    inst = make_instance(2, "ill_conditioned", m=60, N=16, n=4, cond=1e6)
    lam = 1e-6 * float(np.mean(np.sum(inst.X**2, axis=0)))
    ref, run = _runs("ldlq", None, inst, lam, pt.Grid(0.05))
    r = pt.certify(ref, inst.X)
    c = pt.certify(run, _T(inst.X))
    for cert in (r, c):
        terms = cert.identity_check.allowance
        assert "formed_H" in terms
        assert np.all(terms["formed_H"] > 0.01 * terms["rounding"])
    np.testing.assert_allclose(c.identity_atol, r.identity_atol, rtol=1e-6)


def test_statistics_only_certificate_uses_the_same_allowances_as_the_data():
    """A torch run certified from its accumulator (no samples) gets the same allowance terms."""
    from ptqtheory.torch_backend import TorchAccumulator

    inst = make_instance(4, "gaussian", m=50, N=10, n=2)
    lam = 0.05 * float(np.mean(np.sum(inst.X**2, axis=0)))
    for algorithm, variant in [("ldlq", None), ("qronos", "ls")]:
        _, run = _runs(algorithm, variant, inst, lam, pt.Grid(0.05))
        uses_xt = registry.entry(algorithm).uses_xt
        data = pt.certify(run, _T(inst.X), _T(inst.Xt) if uses_xt else None)
        acc = TorchAccumulator(10, "cpu", with_mismatch=uses_xt)
        acc.add_rows(_T(inst.X), _T(inst.Xt) if uses_xt else None)
        stats = pt.certify(run, acc)
        assert set(stats.identity_check.allowance) == set(data.identity_check.allowance)
        assert stats.holds() and data.holds()
        np.testing.assert_allclose(stats.identity_check.allowance["rounding"],
                                   data.identity_check.allowance["rounding"], rtol=1e-6)


@pytest.mark.parametrize(("algorithm", "variant"), CASES)
def test_the_registry_names_the_identity_and_the_bounds(algorithm, variant):
    inst = make_instance(5, "gaussian", m=30, N=8, n=2)
    lam = 0.1 * float(np.mean(np.sum(inst.X**2, axis=0)))
    ref, _ = _runs(algorithm, variant, inst, lam, pt.Grid(0.05))
    row = registry.entry(algorithm)
    ctx = RunContext.build(ref, inst.X, inst.Xt if row.uses_xt else None)
    name = row.identity(ref.variant)
    cert = pt.certify(ref, inst.X, inst.Xt if row.uses_xt else None)
    if name is None:
        assert cert.identity is None
    else:
        check = identities.IDENTITIES[name](ctx)
        assert cert.identity == check.label == name.upper()
        np.testing.assert_array_equal(np.asarray(cert.identity_rhs, float), np.asarray(check.rhs, float))
    expected = [b.label for fn in row.bound_names(ref.rounding) for b in bounds._BOUNDS[fn](ctx, 1e-3)]
    assert [b.label for b in cert.bounds] == expected


def test_registry_rows_are_complete_and_methods_resolve():
    for name, row in registry.ALGORITHMS.items():
        assert row.algorithm == name
        assert (row.factor is None) == (row.identity("paper") in (None, "i6"))
        for fn in {f for names in row.bounds.values() for f in names}:
            assert fn in bounds._BOUNDS
        for v in row.identities.values():
            assert v in identities.IDENTITIES
    from ptqtheory.models import METHODS

    assert set(registry.METHODS) == set(METHODS)
    assert registry.method("qronos-ls").variant == "ls" and registry.method("qronos-ls").uses_xt
    assert not registry.method("ldlq-incoherence").uses_xt
    with pytest.raises(ValueError, match="unknown algorithm"):
        registry.entry("sgd")


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (also inside functions)."""
    mod = "ptqtheory." + ".".join(path.relative_to(PKG).with_suffix("").parts)
    pkg = mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def test_the_torch_certificate_does_not_import_the_numpy_certificate_module():
    """``certificates`` imports the torch certifier lazily; the torch certifier must not import it back,
    and the shared modules (identities, registry, context, bounds) import neither."""
    assert "ptqtheory.certificates" not in _imports(PKG / "torch_backend" / "certify.py")
    for name in ("identities.py", "registry.py", "_context.py", "bounds.py", "tolerances.py"):
        imported = _imports(PKG / name)
        assert "ptqtheory.certificates" not in imported, name
        assert not any(m.startswith("ptqtheory.torch_backend") for m in imported), name


def test_incoherence_wrapped_runs_are_certified_as_their_inner_row():
    """``registry.unwrap``: a wrapped run gets its inner algorithm's identity and allowance terms in
    the transformed coordinates, from either backend."""
    inst = make_instance(6, "gaussian", m=40, N=8, n=4)
    lam = 0.1 * float(np.mean(np.sum(inst.X**2, axis=0)))
    kw = dict(lam=lam, grid=pt.Grid(0.05), incoherence="kron", seed=2)
    pairs = ((pt.ldlq(inst.W, inst.X, **kw), inst.X), (pt.ldlq(_T(inst.W), _T(inst.X), **kw), _T(inst.X)))
    for run, X in pairs:
        inner, transform = registry.unwrap(run)
        assert transform is not None and inner.algorithm == "ldlq"
        c = pt.certify(run, X)
        assert c.transformed and c.identity == "I3" and c.holds()
        assert set(c.identity_check.allowance) == {"rounding", "formed_H"}
