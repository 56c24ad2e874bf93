"""logpx models, in layers: ``estimators`` (pure functions of log-weights), ``plan`` (what to run: estimators
and their samplers, one text grammar, one cost model), ``families`` (model types), ``samplers`` (log-weights
from a model, and ``run_plan``), ``io`` (checkpoints and data), ``training`` and ``evaluation``; ``cli`` and
``client`` talk to the service, ``app`` is the service.

The estimator core and the plan are re-exported here for in-process use on your own log-weights or models."""

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
from .plan import AIS, Entry, Importance, Plan

__all__ = [
    "AIS",
    "Diagnostics",
    "Entry",
    "Estimate",
    "EstimatorSpec",
    "Importance",
    "Plan",
    "diagnose",
    "elbo",
    "estimate",
    "iwae",
    "jvi",
    "jvi_coefficients",
    "khat",
]
