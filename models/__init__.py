"""logpx models: evidence estimators, diagnostics, model families, training and checkpoint I/O."""

from .diagnostics import Diagnostics, diagnose
from .estimators import elbo, iwae, jvi, jvi_coefficients
from .evidence import Estimate, EstimatorSpec, estimate
from .psis import khat

__all__ = [
    "Diagnostics",
    "Estimate",
    "EstimatorSpec",
    "diagnose",
    "elbo",
    "estimate",
    "iwae",
    "jvi",
    "jvi_coefficients",
    "khat",
]
