"""ptqtheory: post-training quantization with exact error identities and provable bounds.

The public API (THEORY.md notation: ``W`` is ``(n, N)``, ``X`` is ``(m, N)``, the layer computes
``X @ W.T``)::

    import ptqtheory as pt
    g = pt.Grid.minmax(W, bits=4)
    r = pt.optq(W, X, lam=pt.Damping.percdamp(0.01), grid=g)
    c = pt.certify(r, X)          # I2 per row: c.identity_lhs, c.identity_rhs, c.identity_gap
"""

from .activations import ActivationInfo, ActivationQuantizer, quantize_activations
from .algorithms import gpfq, incoherence, ldlq, optq, qronos, random_orthogonal, rtn
from .alphabets import Alphabet
from .api import certify
from .aqas import AQASResult, aqas
from .boa import (
    AttentionBoA,
    BoACertificate,
    BoARun,
    apply_rope,
    attention_heads,
    boa,
    boa_attention,
    certify_boa,
    rope_average,
)
from .calibration import Accumulator, Damping, gram, hessian
from .certificates import Certificate, PivotCheck, relative_gap
from .factor import Pivots, SingularHessianError, pivots
from .grids import Grid, MinMax, round_nearest, round_stochastic
from .magr import MagRResult, magr, magr_bound
from .optimal import Optimum, optimal
from .orders import ORDERS, min_pivot_order, resolve_order
from .owq import OWQRun, effective_bits, keep_for_bits, owq, owq_sensitivity
from .records import Run, Transform

__version__ = "0.1.0"

__all__ = [
    "ORDERS",
    "AQASResult",
    "Accumulator",
    "ActivationInfo",
    "ActivationQuantizer",
    "Alphabet",
    "AttentionBoA",
    "BoACertificate",
    "BoARun",
    "Certificate",
    "Damping",
    "Grid",
    "MagRResult",
    "MinMax",
    "OWQRun",
    "Optimum",
    "PivotCheck",
    "Pivots",
    "Run",
    "SingularHessianError",
    "Transform",
    "apply_rope",
    "aqas",
    "attention_heads",
    "boa",
    "boa_attention",
    "certify",
    "certify_boa",
    "effective_bits",
    "gpfq",
    "gram",
    "hessian",
    "incoherence",
    "keep_for_bits",
    "ldlq",
    "magr",
    "magr_bound",
    "min_pivot_order",
    "optimal",
    "optq",
    "owq",
    "owq_sensitivity",
    "pivots",
    "qronos",
    "quantize_activations",
    "random_orthogonal",
    "relative_gap",
    "resolve_order",
    "rope_average",
    "round_nearest",
    "round_stochastic",
    "rtn",
]
