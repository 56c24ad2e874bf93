"""Annealed importance sampling (Neal 2001) with HMC transitions, and its reverse for BDMC.

k independent chains per input start at z_0 ~ pi_0 (the encoder q(z | x), or the prior p(z)) and move
through pi_t(z) ~ pi_0(z)^(1 - b_t) p(x, z)^(b_t), 0 = b_0 < ... < b_T = 1 (prior start:
p(z) p(x | z)^(b_t)). Chain i's log-weight is

    log w_i = sum_{t=1..T} (b_t - b_{t-1}) f(z_{t-1}),   f = log p(x, z) - log pi_0(z)

(prior start: f = log p(x | z)), and E[w_i] = p(x) exactly, so the chains' log-weights ``[k, B]`` go to
the same estimators and diagnostics as importance weights (their IWAE is a stochastic lower bound).

Step sizes: a tuning pass (its own chains, the same kind of schedule, with fewer temperatures when the
estimate runs few chains: ``tune``) adapts one step size per input and temperature towards
``TARGET_ACCEPTANCE``; the estimating pass then uses those step sizes, interpolated onto its own
temperatures, fixed. Adapting inside the estimating pass from the same chains' acceptances would break
E[w] = p(x); any fixed step sizes keep it, so the coarser tuning pass changes what AIS costs, never what it
estimates.

Reverse AIS (Grosse et al. 2015): started at an exact posterior sample z* of simulated data and run
from b = 1 to 0, the same increments give log w_rev with E[1/w_rev] = 1/p(x); -log-mean-exp(-log w_rev)
is then a stochastic upper bound on log p(x).

Everything runs in the model's dtype on its device; log-weights accumulate in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from ..families import LatentVariableModel, chunks_over_k
from ..plan import AIS, AIS_TUNE_CHAINS, AISInit, AISSchedule
from ..runtime import CheckFn, threads_for_rows

__all__ = ["TARGET_ACCEPTANCE", "AISResult", "HMCInfo", "HMCState", "ais", "reverse_ais", "schedule", "tune"]

TARGET_ACCEPTANCE = 0.65  # Neal (2011), section 4.4: HMC's optimal acceptance is about 0.65
SIGMOID_RADIUS = 4.0  # Wu et al. (2017): r = 4
GEOMETRIC_START = 1e-4  # the geometric schedule's first nonzero temperature
INITIAL_STEP = 0.05
# Multiplicative step-size change per temperature in the tuning pass: 1.02 as in Wu et al. (2017) for
# long schedules, faster for short ones so that the step can still travel a factor of e^2 or so.
ADAPT_MIN = 0.02
STEP_BOUNDS = (1e-4, 1.0)


class AISResult(NamedTuple):
    """``log_w``: ``[k, B]`` float64 chain log-weights; ``acceptance``: ``[B]`` mean HMC acceptance of
    the estimating pass; ``step_size``: ``[B]`` its step size at b = 1."""

    log_w: torch.Tensor
    acceptance: torch.Tensor
    step_size: torch.Tensor


def schedule(steps: int, kind: AISSchedule, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Temperatures ``[T + 1]`` from b_0 = 0 to b_T = 1."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    if kind == "linear":
        b = t
    elif kind == "sigmoid":  # Wu et al. (2017): (s(r(2t - 1)) - s(-r)) / (s(r) - s(-r))
        r = SIGMOID_RADIUS
        b = (torch.sigmoid(r * (2 * t - 1)) - torch.sigmoid(torch.tensor(-r))) / (
            torch.sigmoid(torch.tensor(r)) - torch.sigmoid(torch.tensor(-r))
        )
    else:
        b = torch.cat(
            [
                torch.zeros(1, dtype=torch.float64),
                torch.logspace(math.log10(GEOMETRIC_START), 0, steps, dtype=torch.float64),
            ]
        )
    b[0], b[-1] = 0.0, 1.0
    return b.to(dtype)


class _Target:
    """The tempered log-density and its gradient for one batch of inputs: ``base(z) + b f(z)``, with
    ``base`` = log pi_0 and ``f`` the annealed term. Both are kept apart with their gradients, so that the
    chains' state at a new temperature is a sum, not another evaluation of the model (one in L + 1 saved per
    temperature), and q(z | x)'s parameters are computed once per batch (``LatentVariableModel.q_for``)."""

    def __init__(self, model: LatentVariableModel, x: torch.Tensor, init: AISInit) -> None:
        self.model, self.x, self.init = model, x, init
        self.log_q = model.q_for(x) if init == "encoder" else None

    def parts(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log pi_0(z), f(z))``, each ``[k, B]``."""
        if self.log_q is None:
            return self.model.log_prior(z), self.model.log_likelihood(self.x, z)
        log_q = self.log_q(z)
        return log_q, self.model.log_joint(self.x, z) - log_q

    def state(self, z: torch.Tensor) -> HMCState:
        """The chains at ``z``: both terms and their gradients, for any temperature."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            base, f = self.parts(z)
            # Two backward passes: base's touches only log pi_0 (elementwise for a Gaussian q or prior).
            (grad_base,) = torch.autograd.grad(base.sum(), z, retain_graph=True)
            (grad_f,) = torch.autograd.grad(f.sum(), z)
        return HMCState(z.detach(), base.detach(), f.detach(), grad_base, grad_f)


class HMCState(NamedTuple):
    """Chains ``position`` ``[k, B, d]`` with the two terms of log pi_beta there, ``base`` = log pi_0 and the
    annealed ``f`` (``[k, B]``), and their gradients: the density and gradient at any temperature."""

    position: torch.Tensor
    base: torch.Tensor
    f: torch.Tensor
    grad_base: torch.Tensor
    grad_f: torch.Tensor

    def log_density(self, beta: float) -> torch.Tensor:
        return self.base + beta * self.f

    def grad(self, beta: float) -> torch.Tensor:
        return self.grad_base + beta * self.grad_f


class HMCInfo(NamedTuple):
    """One move's acceptance probability per chain ``[k, B]`` and whether it was accepted."""

    acceptance: torch.Tensor
    accepted: torch.Tensor


def _hmc(
    target: _Target, state: HMCState, beta: float, step: torch.Tensor, leapfrog: int, generator: torch.Generator
) -> tuple[HMCState, HMCInfo]:
    """One HMC move leaving pi_beta invariant from ``state``; ``step`` ``[1, B, 1]``. Returns the chains'
    new state and the move's ``HMCInfo``."""
    z = state.position
    # Random numbers are drawn in float32 whatever the chains' dtype, so that float32 and float64 chains of one
    # seed share them (common random numbers: how the float32 chains are validated against float64 ones).
    p = torch.randn(z.shape, generator=generator, device=z.device).to(z.dtype)
    h0 = state.log_density(beta) - 0.5 * (p * p).sum(-1)
    z_new, p_new = z, p + 0.5 * step * state.grad(beta)
    for i in range(leapfrog):
        z_new = z_new + step * p_new
        proposal = target.state(z_new)
        if i < leapfrog - 1:
            p_new = p_new + step * proposal.grad(beta)
    p_new = p_new + 0.5 * step * proposal.grad(beta)
    h1 = proposal.log_density(beta) - 0.5 * (p_new * p_new).sum(-1)
    log_accept = torch.nan_to_num(h1 - h0, nan=-math.inf).clamp(max=0.0)
    accept = torch.rand(log_accept.shape, generator=generator, device=z.device).log().to(z.dtype) < log_accept
    keep = accept.unsqueeze(-1)
    new = HMCState(
        torch.where(keep, proposal.position, state.position),
        torch.where(accept, proposal.base, state.base),
        torch.where(accept, proposal.f, state.f),
        torch.where(keep, proposal.grad_base, state.grad_base),
        torch.where(keep, proposal.grad_f, state.grad_f),
    )
    return new, HMCInfo(log_accept.exp(), accept)


def _anneal(
    target: _Target,
    z: torch.Tensor,
    betas: torch.Tensor,
    steps: torch.Tensor | None,
    leapfrog: int,
    generator: torch.Generator,
    check_fn: CheckFn | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run chains ``z`` ``[k, B, d]`` through ``betas`` (ascending: AIS; descending: reverse AIS).

    ``steps``: ``[T, B]`` fixed step sizes, one per input and transition; ``None`` for a tuning pass,
    which adapts them and returns them. Returns ``(log_w [k, B] float64, acceptance [B], steps [T, B])``.
    """
    with threads_for_rows(z.shape[0] * z.shape[1], z.device):  # few chains: one thread is faster on a CPU
        k, batch = z.shape[:2]
        num = betas.shape[0] - 1
        tuning = steps is None
        step_sizes = torch.empty(num, batch, dtype=z.dtype, device=z.device) if tuning else steps
        assert step_sizes is not None
        step = torch.full((batch,), INITIAL_STEP, dtype=z.dtype, device=z.device)
        adapt = 1 + max(ADAPT_MIN, 2 / num)
        log_w = torch.zeros(k, batch, dtype=torch.float64, device=z.device)
        accept_sum = torch.zeros(batch, dtype=torch.float64, device=z.device)
        state = target.state(z)
        for t in range(1, num + 1):
            if check_fn is not None:
                check_fn()
            beta = float(betas[t])
            log_w += (float(betas[t]) - float(betas[t - 1])) * state.f.double()
            if t == num:  # the last transition would not change any weight
                step_sizes[t - 1] = step if tuning else step_sizes[t - 1]
                break
            current = step if tuning else step_sizes[t - 1]
            state, info = _hmc(target, state, beta, current.view(1, batch, 1), leapfrog, generator)
            rate = info.acceptance.double().mean(dim=0)  # [B]
            accept_sum += rate
            if tuning:
                step_sizes[t - 1] = step
                factor = torch.where(rate > TARGET_ACCEPTANCE, adapt, 1 / adapt).to(z.dtype)
                step = (step * factor).clamp(*STEP_BOUNDS)
        acceptance = accept_sum / max(1, num - 1)
        return log_w, acceptance.to(z.dtype), step_sizes


def tune(
    model: LatentVariableModel,
    x: torch.Tensor,
    config: AIS,
    generator: torch.Generator,
    check_fn: CheckFn | None,
    estimating: int | None = None,
) -> torch.Tensor:
    """The tuning pass: ``[T, B]`` step sizes (one per input and temperature) from ``AIS_TUNE_CHAINS`` chains
    of their own, adapted towards ``TARGET_ACCEPTANCE``; ``ais`` and ``reverse_ais`` then hold them fixed. For an
    estimate of ``estimating`` chains the pass runs a schedule of the same kind with
    ``config.tuning_temperatures(estimating)`` temperatures (about a tenth of the estimate's cost), interpolated
    onto all T."""
    target = _Target(model, x, config.init)
    z0 = _start(model, x, AIS_TUNE_CHAINS, config.init, generator)
    full = config.temperatures
    coarse = config.tuning_temperatures(estimating)
    steps = _anneal(target, z0, schedule(coarse, config.schedule), None, config.leapfrog, generator, check_fn)[2]
    return steps if coarse == full else _stretch(steps, full)


def _stretch(steps: torch.Tensor, full: int) -> torch.Tensor:
    """Step sizes ``[T', B]`` of a schedule with T' transitions onto one of the same kind with ``full``: at the
    same fraction of the way, log-linearly between the two nearest (the schedules are one function of t / T)."""
    coarse = steps.shape[0]
    where = (torch.arange(1, full + 1, dtype=torch.float64) * coarse / full - 1).clamp(0, coarse - 1)
    lo = where.floor().long().clamp(max=coarse - 2)
    frac = (where - lo).to(steps.dtype).unsqueeze(-1).to(steps.device)
    log_steps = steps.log()
    return torch.exp((1 - frac) * log_steps[lo] + frac * log_steps[lo + 1])


def _start(
    model: LatentVariableModel, x: torch.Tensor, k: int, init: AISInit, generator: torch.Generator
) -> torch.Tensor:
    if init == "prior":
        return model.sample_prior((k, x.shape[0]), generator).to(x.dtype)
    return model.sample_q(x, model.sample_noise(k, x.shape[0], generator).to(x.dtype))


def ais(
    model: LatentVariableModel,
    x: torch.Tensor,
    k: int,
    config: AIS,
    generator: torch.Generator,
    *,
    step_sizes: torch.Tensor | None = None,
    max_elements: int | None = None,
    check_fn: CheckFn | None = None,
) -> AISResult:
    """AIS log-weights of ``x`` ``[B, input_dim]`` (on the model's device) from ``k`` chains per input.

    A tuning pass of ``AIS_TUNE_CHAINS`` chains fixes the step sizes first (unless ``step_sizes``, a ``tune``
    result, are given); the estimating pass then draws
    k fresh chains, in chunks of chains whose activations (kept for the gradient) stay within
    ``max_elements`` (default: ``chunk_elements`` of the device). ``check_fn`` is called before every
    temperature (deadlines, cancellation)."""
    steps = tune(model, x, config, generator, check_fn, estimating=k) if step_sizes is None else step_sizes
    target = _Target(model, x, config.init)
    betas = schedule(config.temperatures, config.schedule)

    def run(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        z0 = _start(model, x, rows, config.init, generator)
        log_w, acceptance, _ = _anneal(target, z0, betas, steps, config.leapfrog, generator, check_fn)
        return log_w, acceptance

    log_w, acceptance = _in_chunks(model, x, k, max_elements, run)
    return AISResult(log_w, acceptance, steps[-1])


def _in_chunks(
    model: LatentVariableModel,
    x: torch.Tensor,
    k: int,
    max_elements: int | None,
    run: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``run(rows)`` over chunks of the k chains (independent, so chunking changes no distribution);
    the log-weights concatenated ``[k, B]`` and the acceptance averaged over all chains ``[B]``."""
    # Autograd keeps the forward activations and builds their gradients: about three times a forward pass.
    slices = list(chunks_over_k(k, x.shape[0], 3 * model.elements_per_sample(), max_elements, x.device))
    parts = [run(s.stop - s.start) for s in slices]
    weights = torch.tensor([s.stop - s.start for s in slices], dtype=parts[0][1].dtype, device=x.device) / k
    acceptance = sum((w * a for w, (_, a) in zip(weights, parts, strict=True)), torch.zeros_like(parts[0][1]))
    return torch.cat([lw for lw, _ in parts]), acceptance


def reverse_ais(
    model: LatentVariableModel,
    x: torch.Tensor,
    z_star: torch.Tensor,
    k: int,
    config: AIS,
    generator: torch.Generator,
    *,
    step_sizes: torch.Tensor | None = None,
    max_elements: int | None = None,
    check_fn: CheckFn | None = None,
) -> AISResult:
    """Reverse AIS from exact posterior samples ``z_star`` ``[B, latent_dim]`` of simulated ``x``: k
    chains per input, all started at z*, run from b = 1 to 0. Returns ``log_w`` ``[k, B]`` whose
    ``-log_w`` are the log-weights of 1/p(x): ``-log_mean_exp(-log_w)`` is a stochastic upper bound."""
    # Tuned forwards (or given: ``tune``'s result), used backwards.
    steps = tune(model, x, config, generator, check_fn, estimating=k) if step_sizes is None else step_sizes
    target = _Target(model, x, config.init)
    betas = schedule(config.temperatures, config.schedule).flip(0)
    # Reverse transition t uses the step size tuned for the same temperature going forwards.
    reverse_steps = torch.cat([steps[:-1].flip(0), steps[-1:]])

    def run(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        z0 = z_star.to(x.dtype).unsqueeze(0).expand(rows, -1, -1).contiguous()
        log_w_inv, acceptance, _ = _anneal(target, z0, betas, reverse_steps, config.leapfrog, generator, check_fn)
        return -log_w_inv, acceptance

    log_w, acceptance = _in_chunks(model, x, k, max_elements, run)
    return AISResult(log_w, acceptance, steps[-1])
