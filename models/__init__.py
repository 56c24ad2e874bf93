"""logpx models, in layers: ``estimators`` (pure functions of log-weights), ``plan`` (what to run: estimators
and their samplers, one text grammar, one cost model), ``families`` (model types), ``samplers`` (log-weights
from a model, and ``run_plan``), ``io`` (checkpoints and data), ``training`` and ``evaluation``; ``cli`` and
``client`` talk to the service, ``app`` is the service.

The estimator core and the plan are re-exported here for in-process use on your own log-weights or models."""

import os
import sys

# OpenMP reads its wait policy once, when torch loads it. Spinning (the default) lets an idle thread burn a
# core waiting for the next parallel region; on a CPU shared with anything else that multiplies wall time
# (an AIS pass at 2 threads beside one busy process: 7.0 s spinning, 3.2 s passive) for at most a 15% gain
# on an idle machine (docs/performance.md, "Threads"). A value the user set wins; importing logpx after
# torch changes nothing.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
