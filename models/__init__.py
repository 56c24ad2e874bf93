"""logpx models, in layers: ``estimators`` (pure functions of log-weights), ``families`` (model types),
``samplers`` (log-weights from a model), ``io`` (checkpoints and data), ``training`` and ``evaluation``.

The estimator core is re-exported here for in-process use on your own log-weights."""

from .estimators import (
    Diagnostics,
    Estimate,
    EstimatorSpec,
    diagnose,
    elbo,
    estimate,
    iwae,
    jvi,
    jvi_coefficients,
    khat,
)

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
