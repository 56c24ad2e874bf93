"""One entry point from log-weights to an evidence estimate: used by the service, the training loop,
the CLI and the benchmarks alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from ._validate import check_log_weights
from .core import JVIResult, _jvi
from .diagnostics import Diagnostics, _diagnose, _log_weight_var, jackknife_var_from_loo
from .jackknife import DEFAULT_EXACT_BUDGET, DEFAULT_NUM_SAMPLED_SUBSETS, exact_cost, leave_one_out
from .logspace import log_mean_exp

__all__ = ["DEFAULT_SPEC", "STD_ERR_FORMULAS", "Estimate", "EstimatorSpec", "estimate", "parse_spec", "point_estimate"]

EstimatorName = Literal["elbo", "iwae", "jvi"]

# What `Estimate.std_err` is, per estimator; the service reports this text with each answer.
STD_ERR_FORMULAS: dict[str, str] = {
    "elbo": "sqrt(var(log w) / k): the standard error of a mean of k i.i.d. log-weights",
    "iwae": "sqrt(jackknife_var): jackknife estimate of the standard deviation of L_k",
    "jvi": (
        "sqrt(jackknife_var + subset_mc_var): to first order every JVI order has the variance of "
        "L_k (its coefficients sum to 1), plus the Monte Carlo variance of any sampled subsets"
    ),
}


@dataclass(frozen=True)
class EstimatorSpec:
    """Which estimator to run: ``name``, number of samples ``k``, JVI ``order`` (ignored otherwise)."""

    name: EstimatorName
    k: int
    order: int = 1
    exact_budget: int = DEFAULT_EXACT_BUDGET
    num_sampled_subsets: int = DEFAULT_NUM_SAMPLED_SUBSETS

    def __post_init__(self) -> None:
        if self.name not in STD_ERR_FORMULAS:
            raise ValueError(f"unknown estimator {self.name!r}; choose one of {sorted(STD_ERR_FORMULAS)}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.name == "jvi" and not 1 <= self.order < self.k:
            raise ValueError(f"jvi needs 1 <= order < k, got order={self.order}, k={self.k}")

    def __str__(self) -> str:
        """``NAME:K`` or ``jvi:K:ORDER``, the syntax ``parse_spec`` reads."""
        return f"{self.name}:{self.k}" + (f":{self.order}" if self.name == "jvi" else "")

    @property
    def draws_subsets(self) -> bool:
        """Whether ``estimate`` draws random subsets (a JVI term over ``exact_budget``, as in
        ``jackknife.lbar``). Otherwise every column's estimate is a function of that column alone."""
        return self.name == "jvi" and any(exact_cost(self.k, j) > self.exact_budget for j in range(1, self.order + 1))


DEFAULT_SPEC = EstimatorSpec("iwae", 1000)  # what a request that names no estimator gets


def parse_spec(text: str) -> EstimatorSpec:
    """``iwae:1000``, ``elbo:100`` or ``jvi:1000:2`` -> an ``EstimatorSpec``; ``ValueError`` otherwise."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]) or (len(parts) == 3) != (parts[0] == "jvi"):
        raise ValueError(f"estimator {text!r}: expected NAME:K (elbo, iwae) or jvi:K:ORDER")
    return EstimatorSpec(parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 1)  # type: ignore[arg-type]


class Estimate(NamedTuple):
    """``log_px`` and ``std_err``: ``[B]``; ``subsets``: per leave-out size j = 1..m of a JVI,
    ``(method, num_subsets)``; ``diagnostics``: ``None`` unless asked for."""

    log_px: torch.Tensor
    std_err: torch.Tensor
    subsets: tuple[tuple[str, int], ...]
    diagnostics: Diagnostics | None


def point_estimate(
    log_w: torch.Tensor,
    spec: EstimatorSpec,
    *,
    generator: torch.Generator | None = None,
    loo: torch.Tensor | None = None,
) -> JVIResult:
    """The estimate alone (differentiable: the training objectives call this). ``log_w`` is
    ``[>= k, B]``; only its first ``spec.k`` rows are used (the rest belong to a larger estimator on the
    same common-random-number draw). Returns a ``JVIResult``; for ``elbo`` / ``iwae`` its ``mc_var`` is
    zero and ``subsets`` empty."""
    lw = _first_k(log_w, spec)
    return _point_estimate(lw, spec, generator, loo)


def _first_k(log_w: torch.Tensor, spec: EstimatorSpec) -> torch.Tensor:
    """The first ``spec.k`` rows of ``log_w``, validated once for every estimator and diagnostic."""
    if isinstance(log_w, torch.Tensor) and log_w.dim() == 2 and log_w.shape[0] < spec.k:
        raise ValueError(f"estimator needs log_w of shape [>={spec.k}, B], got {tuple(log_w.shape)}")
    check_log_weights(log_w, min_k=min(spec.k, 2))
    return log_w[: spec.k]


def _point_estimate(
    lw: torch.Tensor, spec: EstimatorSpec, generator: torch.Generator | None, loo: torch.Tensor | None
) -> JVIResult:
    if spec.name == "jvi":
        return _jvi(
            lw,
            spec.order,
            exact_budget=spec.exact_budget,
            num_sampled_subsets=spec.num_sampled_subsets,
            generator=generator,
            loo=loo,
        )
    value = lw.mean(dim=0) if spec.name == "elbo" else log_mean_exp(lw, dim=0)
    return JVIResult(value, torch.zeros_like(value), ())


def estimate(
    log_w: torch.Tensor,
    spec: EstimatorSpec,
    *,
    with_diagnostics: bool = False,
    generator: torch.Generator | None = None,
) -> Estimate:
    """Estimate, standard error (``STD_ERR_FORMULAS``) and optionally diagnostics; ``spec.k >= 2``."""
    if spec.k < 2:
        raise ValueError(f"a standard error needs k >= 2, got {spec.k}")
    lw = _first_k(log_w, spec)  # the one validation of this call
    loo = leave_one_out(lw) if spec.name != "elbo" or with_diagnostics else None  # computed once, used thrice
    result = _point_estimate(lw, spec, generator, loo)
    if spec.name == "elbo":
        std_err = (_log_weight_var(lw) / spec.k).sqrt()
    else:
        assert loo is not None
        std_err = (jackknife_var_from_loo(loo).to(lw.dtype) + result.mc_var).sqrt()
    return Estimate(result.value, std_err, result.subsets, _diagnose(lw, loo) if with_diagnostics else None)
