"""One entry point from log-weights to an evidence estimate: used by the service, the training loop,
the CLI and the benchmarks alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from ..plan import IMPORTANCE, EstimatorSpec, Sampler
from ._validate import check_log_weights
from .core import JVIResult, _jvi
from .diagnostics import Diagnostics, _diagnose, _log_weight_var, jackknife_var_from_loo
from .jackknife import leave_one_out
from .logspace import log_mean_exp
from .verdict import SamplerStats, Verdict, judge

__all__ = ["DEFAULT_SPEC", "STD_ERR_FORMULAS", "Estimate", "estimate", "point_estimate"]

# What `Estimate.std_err` is, per estimator; the service reports this text with each answer.
STD_ERR_FORMULAS: dict[str, str] = {
    "elbo": "sqrt(var(log w) / k): the standard error of a mean of k i.i.d. log-weights",
    "iwae": "sqrt(jackknife_var): jackknife estimate of the standard deviation of L_k",
    "jvi": (
        "sqrt(jackknife_var): to first order every JVI order has the variance of L_k (its coefficients sum "
        "to 1), and every leave-j-out average is exact"
    ),
}


DEFAULT_SPEC = EstimatorSpec("iwae", 1000)  # what a request that names no estimator gets


class Estimate(NamedTuple):
    """``log_px`` and ``std_err``: ``[B]``; ``num_subsets``: per leave-out size j = 1..m of a JVI, the
    subsets averaged; ``diagnostics``: every diagnostic, ``[B]`` each; ``verdicts``: one per input."""

    log_px: torch.Tensor
    std_err: torch.Tensor
    num_subsets: tuple[int, ...]
    diagnostics: Diagnostics
    verdicts: list[Verdict]


def point_estimate(log_w: torch.Tensor, spec: EstimatorSpec, *, loo: torch.Tensor | None = None) -> JVIResult:
    """The estimate alone (differentiable: the training objectives call this). ``log_w`` is
    ``[>= k, B]``; only its first ``spec.k`` rows are used (the rest belong to a larger estimator on the
    same common-random-number draw). Returns a ``JVIResult``; for ``elbo`` / ``iwae`` its
    ``num_subsets`` is empty."""
    return _point_estimate(_first_k(log_w, spec), spec, loo)


def _first_k(log_w: torch.Tensor, spec: EstimatorSpec, *, finite: bool = True) -> torch.Tensor:
    """The first ``spec.k`` rows of ``log_w``, validated once for every estimator and diagnostic
    (``finite=False``: NaN and +inf are let through, for the caller to flag)."""
    if isinstance(log_w, torch.Tensor) and log_w.dim() == 2 and log_w.shape[0] < spec.k:
        raise ValueError(f"estimator needs log_w of shape [>={spec.k}, B], got {tuple(log_w.shape)}")
    check_log_weights(log_w, min_k=min(spec.k, 2), finite=finite)
    return log_w[: spec.k]


def _point_estimate(
    lw: torch.Tensor, spec: EstimatorSpec, loo: torch.Tensor | None, check_fn: Callable[[], None] | None = None
) -> JVIResult:
    if spec.is_jackknife:
        return _jvi(lw, spec.order, loo, check_fn)
    value = lw.mean(dim=0) if spec.name == "elbo" else log_mean_exp(lw, dim=0)
    return JVIResult(value, ())


def estimate(
    log_w: torch.Tensor,
    spec: EstimatorSpec,
    *,
    discrete: bool = False,
    sampler: Sampler = IMPORTANCE,
    stats: SamplerStats | None = None,
    flag_nonfinite: bool = False,
    check_fn: Callable[[], None] | None = None,
) -> Estimate:
    """Estimate, standard error (``STD_ERR_FORMULAS``), diagnostics and a verdict per input; ``spec.k >= 2``.

    ``discrete``: the model's likelihood is a probability mass (log p(x) > 0 is then impossible);
    ``sampler`` and ``stats``: what produced the log-weights (``Importance``, ``AIS`` with its acceptance
    and step sizes, ``WeightDraws``: a classifier's draws from q(w), ``External``), for the verdict and its advice. ``flag_nonfinite``: a column holding
    NaN or +inf (a model that fails on that input) gets NaN and an ``unreliable`` verdict instead of a
    ``ValueError`` for the whole batch. ``check_fn``: called inside the long loops (leave-j-out chunks);
    it may raise to stop the work (deadlines, cancellation).
    """
    if spec.k < 2:
        raise ValueError(f"a standard error needs k >= 2, got {spec.k}")
    lw = _first_k(log_w, spec, finite=not flag_nonfinite)  # the one validation of this call
    broken = (torch.isnan(lw) | torch.isposinf(lw)).any(dim=0) if flag_nonfinite else None  # [B]
    if broken is not None and bool(broken.any()):
        lw = lw.masked_fill(broken.unsqueeze(0), 0.0)  # estimated as if harmless, then discarded below
    loo = leave_one_out(lw)  # computed once, used by JVI, the standard error and the diagnostics
    result = _point_estimate(lw, spec, loo, check_fn)
    if spec.name == "elbo":
        std_err = (_log_weight_var(lw) / spec.k).sqrt()
    else:
        std_err = jackknife_var_from_loo(loo).to(lw.dtype).sqrt()
    diagnostics = _diagnose(lw, loo)
    value = result.value
    if broken is not None:
        value, std_err = value.masked_fill(broken, float("nan")), std_err.masked_fill(broken, float("nan"))
    verdicts = judge(spec, value, std_err, diagnostics, discrete=discrete, sampler=sampler, stats=stats)
    # A probability mass is at most 1: such a value is no estimate of log p(x) and is not returned as one
    # (its verdict keeps it, and says why).
    value = value.masked_fill(value > 0, float("nan")) if discrete else value
    return Estimate(value, std_err, result.num_subsets, diagnostics, verdicts)
