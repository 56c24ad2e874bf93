"""BDMC: certify an AIS setting by forward and reverse AIS on inputs simulated from the model."""

from __future__ import annotations

import time

from logpx.estimators import SamplerStats, estimate
from logpx.plan import AIS, EstimatorSpec, Plan
from logpx.samplers import bdmc as run_bdmc
from logpx.samplers import summarize_bdmc

from .. import presenter
from ..config import Settings
from ..errors import PayloadTooLarge
from ..inputs import finite_or_none
from ..plans import sampler_out
from ..registry import ModelEntry
from ..schemas import BDMCInput, BDMCResponse
from ..worker import DeviceWorker, TaskContext
from . import REFUSE_OVER, advising, latent_model, request_generator, timing

__all__ = ["bdmc"]


async def bdmc(
    entry: ModelEntry, worker: DeviceWorker, settings: Settings, sampler: AIS, num_inputs: int, k: int, seed: int
) -> BDMCResponse:
    """Forward and reverse AIS with ``k`` chains each on ``num_inputs`` simulated inputs: a sandwich around
    log p(x) whose gap bounds the setting's error on such data."""
    started = time.monotonic()
    model = latent_model(entry)
    if entry.speed is not None:  # forward and reverse chains: the gradient work of 2k chains and one tuning pass
        seconds = entry.speed.seconds(Plan.of(EstimatorSpec("iwae", 2 * k), sampler=sampler).cost(num_inputs))
        if seconds > REFUSE_OVER * settings.deadline_s:
            raise PayloadTooLarge(
                f"BDMC of {sampler} with {k} chains each way on {num_inputs} inputs needs about {seconds:.0f} s of "
                f"compute here, over {REFUSE_OVER}x the {settings.deadline_s:g} s deadline; lower num_inputs, k or "
                "steps (the gap of a setting is the same on fewer inputs, with a wider error)",
                field="deadline_s",
                limit={"deadline_s": settings.deadline_s, "expected_s": round(seconds, 1)},
            )
    generator = request_generator(entry, seed)
    spec = EstimatorSpec("iwae", k)

    def work(ctx: TaskContext) -> tuple[list[BDMCInput], tuple[float, float, float, float]]:
        result = run_bdmc(
            model, num_inputs, k, sampler, generator, max_elements=settings.max_elements, check_fn=ctx.check
        )
        stats = SamplerStats(result.forward.acceptance, result.forward.step_size)
        lower = estimate(
            result.forward.log_w, spec, discrete=model.discrete, sampler=sampler, stats=stats, flag_nonfinite=True
        )
        # The upper bound's standard error: the jackknife of -IWAE(-log w_rev), the same formula.
        upper_se = estimate(-result.reverse.log_w, spec, flag_nonfinite=True).std_err
        summary = summarize_bdmc(result, lower.std_err, upper_se)
        rows = zip(
            presenter.floats(result.lower),
            presenter.floats(result.upper),
            presenter.floats(lower.std_err),
            presenter.floats(upper_se),
            presenter.floats(result.forward.acceptance),
            presenter.verdicts_out(lower.verdicts, advising(entry, settings, num_inputs)),
            strict=True,
        )
        inputs = [
            BDMCInput(
                lower=lo,
                upper=hi,
                gap=None if lo is None or hi is None else hi - lo,
                lower_std_err=lse,
                upper_std_err=use,
                acceptance=acc,
                verdict=v,
            )
            for lo, hi, lse, use, acc, v in rows
        ]
        return inputs, (summary.mean_lower, summary.mean_upper, summary.mean_gap, summary.mean_gap_std_err)

    result = await worker.submit(work, settings.deadline_s)
    inputs, (mean_lower, mean_upper, mean_gap, mean_gap_se) = result.value
    return BDMCResponse(
        model=entry.name,
        device=entry.device,
        k=k,
        seed=seed,
        sampler=sampler_out(sampler),
        results=inputs,
        mean_lower=finite_or_none(mean_lower),
        mean_upper=finite_or_none(mean_upper),
        mean_gap=finite_or_none(mean_gap),
        mean_gap_std_err=finite_or_none(mean_gap_se),
        timing=timing(result, started),
    )
