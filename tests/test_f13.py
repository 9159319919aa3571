"""F13 (BoA against OPTQ on real attention layers) builds at quick sizes on the real MiniLM, and its CSV
is right.

Expected values are computed here independently of ``ptqtheory.boa``: the attention output by a
direct softmax per paragraph and head, OPTQ's result with ``pt.optq``, and the value's BoA run as
OPTQ on :math:`A_hX` (BoA with :math:`H_{out} = I` is OPTQ, I7 part 4, checked bit for bit in
tests/test_boa.py), whose objective is evaluated from its definition.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

import ptqtheory as pt
from ptqtheory.figures import FIGURES
from ptqtheory.figures import f13_boa as f13
from ptqtheory.figures.common import failures


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("f10")
    result = f13.build(out, quick=True)
    with open(result["paths"]["csv"], newline="", encoding="ascii") as fh:
        rows = list(csv.DictReader(fh))
    sz = f13.QUICK
    data = f13.capture(sz["blocks"], sz["texts"], sz["held_texts"])
    return result, rows, data


def _softmax_out(X, lengths, Wq, Wk, Wv, bq, bk, bv, heads):
    """Attention output per head, written out directly (no ptqtheory code)."""
    dh = Wq.shape[0] // heads
    out, probs, t0 = [], [], 0
    for n in lengths:
        Xs = X[t0:t0 + n]
        t0 += n
        cols, ps = [], []
        for h in range(heads):
            c = slice(h * dh, (h + 1) * dh)
            S = (Xs @ Wq[c].T + bq[c]) @ (Xs @ Wk[c].T + bk[c]).T / np.sqrt(dh)
            P = np.exp(S - S.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            cols.append(P @ (Xs @ Wv[c].T + bv[c]))
            ps.append(P)
        out.append(np.hstack(cols))
        probs.append(ps)
    return np.vstack(out), probs


def test_registered_and_files_written(built):
    result, rows, _ = built
    assert FIGURES["F13"] is f13
    assert {p.suffix for p in result["paths"].values()} == {".pdf", ".png", ".csv"}
    assert result["paths"]["pdf"].read_bytes().startswith(b"%PDF")
    assert len(rows) == len(result["rows"]) and result["findings"] == []
    ident = [r for r in rows if r["panel"] == "identity"]
    assert len(ident) == 3 * f13.QUICK["heads"] and not failures(ident, f13.CHECKS)
    for r in ident:
        assert r["holds"] == "True" and float(r["rel_gap"]) <= float(r["rel_allowance"])


def test_optq_error_recomputed(built):
    _, rows, data = built
    heads = f13.QUICK["heads"]
    Wq, Wk, Wv, bq, bk, bv = data["weights"][0]
    dh = Wq.shape[0] // data["heads"]
    k = slice(0, heads * dh)
    Wq, Wk, Wv, bq, bk, bv = Wq[k], Wk[k], Wv[k], bq[k], bk[k], bv[k]
    X = data["cal"][0][0]
    damp = pt.Damping.percdamp(f13.PERCDAMP)
    Q = [pt.optq(W, X, lam=damp, grid=pt.Grid.minmax(W, bits=f13.BITS)).Q for W in (Wq, Wk, Wv)]
    top = next(r for r in rows if r["panel"] == "blocks")
    for split in ("cal", "held"):
        Xs, Ls = data[split][0]
        ref, _ = _softmax_out(Xs, Ls, Wq, Wk, Wv, bq, bk, bv, heads)
        got, _ = _softmax_out(Xs, Ls, *Q, bq, bk, bv, heads)
        expect = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert float(top[f"{split}_rel_err_optq"]) == pytest.approx(expect, rel=1e-9)
    per_head = [r for r in rows if r["panel"] == "heads"]
    assert len(per_head) == heads
    for r in per_head:
        assert float(r["ratio_boa_optq"]) == pytest.approx(float(r["rel_err_boa"]) / float(r["rel_err_optq"]))


def test_value_objective_recomputed(built):
    """The value's I7 left side, tr(E H_in E^T) with H_in = sum (A X)^T (A X) + lam I, from an OPTQ run on
    A X and a direct softmax."""
    _, rows, data = built
    heads = f13.QUICK["heads"]
    Wq, Wk, Wv, bq, bk, bv = data["weights"][0]
    dh = Wq.shape[0] // data["heads"]
    X, L = data["cal"][0]
    _, probs = _softmax_out(X, L, Wq[:heads * dh], Wk[:heads * dh], Wv[:heads * dh], bq[:heads * dh],
                            bk[:heads * dh], bv[:heads * dh], heads)
    starts = np.concatenate([[0], np.cumsum(L)])
    for h in range(heads):
        AX = np.vstack([probs[b][h] @ X[starts[b]:starts[b + 1]] for b in range(len(L))])
        W = Wv[h * dh:(h + 1) * dh]
        run = pt.optq(W, AX, lam=pt.Damping.percdamp(f13.PERCDAMP), grid=pt.Grid.minmax(W, bits=f13.BITS))
        E = W - run.Q
        lam = f13.PERCDAMP * float(np.mean(np.sum(AX * AX, axis=0)))
        expect = float(np.sum((E @ AX.T) ** 2) + lam * np.sum(E * E))
        row = next(r for r in rows
                   if r["panel"] == "identity" and r["projection"] == "v" and r["head"] == str(h))
        assert float(row["lhs"]) == pytest.approx(expect, rel=1e-8)
