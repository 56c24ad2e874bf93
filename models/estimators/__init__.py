"""The estimator core: evidence estimators, their diagnostics and summaries, as pure functions of
log-weights ``[k, B]``. Nothing here knows about model families, files or HTTP."""

from ..plan import EstimatorSpec, parse_spec
from .compare import ReplicateSummary, summarize_replicates
from .core import JVIResult, elbo, iwae, jvi, jvi_coefficients
from .dataset import KHAT_EDGES, DatasetSummary
from .diagnostics import Diagnostics, diagnose, ess, jackknife_var
from .evidence import DEFAULT_SPEC, STD_ERR_FORMULAS, Estimate, estimate, point_estimate
from .jackknife import NotExact, jackknife_elements, max_exact_k
from .logspace import log_mean_exp
from .paired import CONFIDENCE, ModelScores, ModelSummary, PairedDifference, paired_difference, summarize_model
from .psis import khat, khat_threshold
from .units import bits_offset, bits_per_dim, bits_reading
from .verdict import Level, SamplerStats, Verdict, judge

__all__ = [
    "CONFIDENCE",
    "DEFAULT_SPEC",
    "KHAT_EDGES",
    "STD_ERR_FORMULAS",
    "DatasetSummary",
    "Diagnostics",
    "Estimate",
    "EstimatorSpec",
    "JVIResult",
    "Level",
    "ModelScores",
    "ModelSummary",
    "NotExact",
    "PairedDifference",
    "ReplicateSummary",
    "SamplerStats",
    "Verdict",
    "bits_offset",
    "bits_per_dim",
    "bits_reading",
    "diagnose",
    "elbo",
    "ess",
    "estimate",
    "iwae",
    "jackknife_elements",
    "jackknife_var",
    "judge",
    "jvi",
    "jvi_coefficients",
    "khat",
    "khat_threshold",
    "log_mean_exp",
    "max_exact_k",
    "paired_difference",
    "parse_spec",
    "point_estimate",
    "summarize_model",
    "summarize_replicates",
]
