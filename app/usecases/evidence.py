"""Evidence for a batch of inputs (one plan entry), and the comparison of several entries over replicates."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from logpx.certificate import Certificate
from logpx.estimators import Estimate, summarize_replicates
from logpx.plan import Entry, Importance, Plan
from logpx.samplers import Outcome, estimate_entry, run_plan

from .. import presenter
from ..config import Settings
from ..inputs import apply_binarization, finite_or_none, plan_binarization
from ..registry import ModelEntry
from ..schemas import CompareResponse, EstimatorOut, EstimatorSummary, EvidenceResponse, InputEstimate, RerunCost
from ..worker import BatchItem, DeviceWorker, TaskContext
from . import advising, latent_model, request_generator, submit, timing, units_of

__all__ = ["compare", "evidence"]


@dataclass
class _Evidence:
    """What the worker hands back for one evidence request."""

    estimator: EstimatorOut
    results: list[InputEstimate]
    reruns: list[RerunCost]


async def evidence(
    entry: ModelEntry,
    worker: DeviceWorker,
    settings: Settings,
    x: torch.Tensor,
    plan_entry: Entry,
    seed: int,
    binarize_method: str | None,
    with_diagnostics: bool,
    certificates: Sequence[Certificate] = (),
) -> EvidenceResponse:
    """One estimator on ``x``. Importance sampling goes through the worker's dynamic batcher (requests
    with the same entry share one forward pass, each with its own draws); other samplers run the plan."""
    started = time.monotonic()
    model = latent_model(entry)
    generator = request_generator(entry, seed)
    binarization = plan_binarization(x, model.likelihood, binarize_method, seed, entry.binarize, entry.binarize_seed)
    device = entry.device
    advice = advising(entry, settings, x.shape[0])

    def finish(est: Estimate, columns: slice, outcome: Outcome | None = None) -> _Evidence:
        return _Evidence(
            presenter.estimator_out(
                plan_entry, est.num_subsets, outcome.stats.certificate if outcome and outcome.stats else None
            ),
            presenter.input_estimates(outcome or (plan_entry, est), advice, with_diagnostics, columns, units_of(entry)),
            presenter.rerun_costs(est.verdicts[columns], advice),
        )

    work: BatchItem[Estimate, _Evidence] | Callable[[TaskContext], _Evidence]
    if isinstance(plan_entry.sampler, Importance):

        def prepare() -> tuple[torch.Tensor, torch.Tensor]:
            # On the worker thread: tensor work on the event loop would wait for the GIL behind the model.
            xb = apply_binarization(x, binarization, generator)
            return xb.to(device), model.sample_noise(plan_entry.spec.k, xb.shape[0], generator)

        def forward(x_all: torch.Tensor, noise: torch.Tensor, check: Callable[[], None]) -> torch.Tensor:
            return model.log_weights_from_noise(x_all, noise, max_elements=settings.max_elements, check_fn=check)

        def estimate_columns(log_w: torch.Tensor, check: Callable[[], None]) -> Estimate:
            return estimate_entry(plan_entry, log_w, discrete=model.discrete, stats=None, check_fn=check).estimate

        work = BatchItem(
            key=(entry.name, plan_entry, with_diagnostics),
            size=x.shape[0],
            prepare=prepare,
            forward=forward,
            estimate=estimate_columns,
            finish=finish,
        )
    else:

        def run(ctx: TaskContext) -> _Evidence:
            xd = apply_binarization(x, binarization, generator).to(device)
            (outcome,) = run_plan(
                model,
                xd,
                Plan((plan_entry,)),
                generator,
                max_elements=settings.max_elements,
                check=ctx.check,
                certificates=certificates,
            )
            return finish(outcome.estimate, slice(None), outcome)

        work = run
    result = await submit(worker, work, settings, entry, Plan((plan_entry,)), x.shape[0])
    return EvidenceResponse(
        model=entry.name,
        device=device,
        estimator=result.value.estimator,
        binarization=binarization,
        seed=seed,
        results=result.value.results,
        reruns=result.value.reruns,
        timing=timing(result, started),
    )


async def compare(
    entry: ModelEntry,
    worker: DeviceWorker,
    settings: Settings,
    x: torch.Tensor,
    plan: Plan,
    replicates: int,
    seed: int,
    binarize_method: str | None,
    has_reference: bool,
    certificates: Sequence[Certificate] = (),
) -> CompareResponse:
    """Every entry of ``plan`` on the same draws per replicate (common random numbers); the last entry is
    the reference when ``has_reference``. The verdict per input is that of the entry's first replicate."""
    started = time.monotonic()
    model = latent_model(entry)
    generator = request_generator(entry, seed)
    binarization = plan_binarization(x, model.likelihood, binarize_method, seed, entry.binarize, entry.binarize_seed)

    def work(ctx: TaskContext) -> tuple[torch.Tensor, list[Outcome]]:
        values = torch.empty(len(plan), replicates, x.shape[0], dtype=torch.float64)
        first: list[Outcome] = []
        xd = apply_binarization(x, binarization, generator).to(entry.device)
        for r in range(replicates):
            outcomes = run_plan(
                model,
                xd,
                plan,
                generator,
                max_elements=settings.max_elements,
                check=ctx.check,
                certificates=certificates,
            )
            for s, outcome in enumerate(outcomes):
                values[s, r] = outcome.estimate.log_px.cpu()
            if r == 0:
                first = outcomes
        return values, first

    result = await submit(worker, work, settings, entry, plan, x.shape[0], replicates)
    values, first = result.value
    reference = values[-1] if has_reference else None
    summaries = []
    for plan_entry, v, outcome in zip(plan.entries, values, first, strict=True):
        s, est = summarize_replicates(v, reference), outcome.estimate
        summaries.append(
            EstimatorSummary(
                estimator=presenter.estimator_out(
                    plan_entry, est.num_subsets, outcome.stats.certificate if outcome.stats else None
                ),
                mean=presenter.floats(s.mean),
                sd=presenter.floats(s.sd),
                diff_to_reference=presenter.floats(s.diff_to_reference) if s.diff_to_reference is not None else None,
                mean_over_inputs=finite_or_none(s.mean_over_inputs),
                sd_over_inputs=finite_or_none(s.sd_over_inputs),
                verdicts=presenter.verdicts_out(est.verdicts, advising(entry, settings, x.shape[0])),
            )
        )
    return CompareResponse(
        model=entry.name,
        device=entry.device,
        replicates=replicates,
        seed=seed,
        binarization=binarization,
        reference=summaries[-1] if has_reference else None,
        estimators=summaries[: len(summaries) - has_reference],
        reruns=presenter.rerun_costs(
            [v for o in first for v in o.estimate.verdicts], advising(entry, settings, x.shape[0])
        ),
        timing=timing(result, started),
    )
