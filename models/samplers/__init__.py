"""Samplers: what turns a latent-variable model and inputs into log-weights ``[k, B]``, and the one
function that runs a ``Plan`` on a model (``run_plan``).

``Importance`` draws k latents from q(z | x); ``AIS`` runs k annealed chains (``logpx.samplers.ais``).
Either way the estimators and diagnostics of ``logpx.estimators`` apply to the result unchanged.
"""

from .ais import AISResult, HMCInfo, HMCState, ais, reverse_ais, schedule, tune
from .bdmc import BDMCResult, BDMCSummary, bdmc, simulate
from .bdmc import summarize as summarize_bdmc
from .certify import CERTIFY_CHAINS, CERTIFY_INPUTS, Certification, certify, certify_evaluations
from .draw import Draw, draw
from .run import Outcome, estimate_entry, run_plan
from .seeds import stream_seed
from .speed import Speed, duration, fit_within, measure

__all__ = [
    "CERTIFY_CHAINS",
    "CERTIFY_INPUTS",
    "AISResult",
    "BDMCResult",
    "BDMCSummary",
    "Certification",
    "Draw",
    "HMCInfo",
    "HMCState",
    "Outcome",
    "Speed",
    "ais",
    "bdmc",
    "certify",
    "certify_evaluations",
    "draw",
    "duration",
    "estimate_entry",
    "fit_within",
    "measure",
    "reverse_ais",
    "run_plan",
    "schedule",
    "simulate",
    "stream_seed",
    "summarize_bdmc",
    "tune",
]
