"""The data plane: from validated inputs to responses. Limits are checked here, model work goes to the
device worker, and every number comes from ``models`` (the estimators, diagnostics and summaries). What a
model can do is asked of its type (``LatentVariableModel``, ``Classifier``), never of its family's name.

Every request's randomness comes from one generator on the model's device, seeded by the request."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import ValidationError

from logpx.estimators import (
    STD_ERR_FORMULAS,
    Estimate,
    EstimatorSpec,
    NotExact,
    estimate,
    jackknife_elements,
    khat_threshold,
    summarize_replicates,
)
from logpx.estimators import Diagnostics as DiagnosticValues
from logpx.estimators import SamplerStats as SamplerStatsValue
from logpx.estimators import Verdict as VerdictValue
from logpx.evaluation import grid_verdict, posterior_grid
from logpx.families import Classifier, LatentVariableModel, predictive_summary
from logpx.samplers import AISConfig, draw, summarize_bdmc
from logpx.samplers import bdmc as run_bdmc

from .config import Settings
from .errors import InvalidInput, PayloadTooLarge, WrongModelFamily
from .inputs import apply_binarization, finite_or_none, plan_binarization
from .registry import ModelEntry
from .schemas import (
    BDMCInput,
    BDMCRequest,
    BDMCResponse,
    CompareEstimatorIn,
    CompareRequest,
    CompareResponse,
    Diagnostics,
    Entropy,
    EstimateEstimatorIn,
    EstimateResponse,
    EstimatorIn,
    EstimatorOut,
    EstimatorResults,
    EstimatorSummary,
    EvidenceResponse,
    InputEstimate,
    LogLikelihood,
    PosteriorRequest,
    PosteriorResponse,
    Prediction,
    PredictResponse,
    Rerun,
    SamplerIn,
    SamplerStats,
    SubsetInfo,
    Timing,
    Verdict,
)
from .worker import BatchItem, DeviceWorker, JobContext

__all__ = [
    "Evidence",
    "bdmc",
    "check_limits",
    "classifier",
    "compare",
    "estimate_all",
    "estimate_log_weights",
    "estimator_out",
    "evidence",
    "input_estimates",
    "latent_model",
    "plan_estimators",
    "posterior",
    "predict",
    "request_generator",
]


def _floats(t: torch.Tensor) -> list[float | None]:
    return [finite_or_none(float(v)) for v in t.detach().double().cpu().tolist()]


def _spec(e: EstimatorIn, field: str, settings: Settings, inputs: int) -> EstimatorSpec:
    """The estimator to run; a JVI order whose terms cannot all be exact is a 422 naming the order,
    why, and the largest k at which it is exact; a JVI whose leave-j-out work is over the budget for
    ``inputs`` (inputs x replicates) is a 413, refused before any work starts."""
    try:
        spec = EstimatorSpec(e.name, e.k, e.order or 1)
    except NotExact as exc:
        raise InvalidInput(str(exc), field=_at(field, "order"), limit={"largest_k": exc.largest_k}) from None
    work = inputs * jackknife_elements(spec.k, spec.order) if spec.name == "jvi" else 0
    if work > settings.max_jackknife_elements:
        raise PayloadTooLarge(
            f"JVI of order {spec.order} at k={spec.k} averages {jackknife_elements(spec.k, spec.order):.3g} leave-j-out "
            f"terms per input, {work:.3g} for {inputs} inputs x replicates: over the budget "
            f"{settings.max_jackknife_elements:.3g}; lower k, the order or the batch",
            field=_at(field, "k"),
            limit=settings.max_jackknife_elements,
        )
    return spec


AIS_DEFAULTS = AISConfig()


def _sampler(s: SamplerIn) -> tuple[AISConfig | None, SamplerIn]:
    """The sampler to run (``None``: importance sampling) and its echo with defaults filled in."""
    if s.name == "importance":
        return None, s
    config = AISConfig(
        steps=s.steps or AIS_DEFAULTS.steps,
        leapfrog=s.leapfrog or AIS_DEFAULTS.leapfrog,
        init=s.init or AIS_DEFAULTS.init,
        schedule=s.schedule or AIS_DEFAULTS.schedule,
    )
    return config, SamplerIn(
        name="ais", steps=config.steps, leapfrog=config.leapfrog, init=config.init, schedule=config.schedule
    )


def estimator_out(spec: EstimatorSpec, num_subsets: tuple[int, ...], sampler: SamplerIn) -> EstimatorOut:
    return EstimatorOut(
        name=spec.name,
        k=spec.k,
        order=spec.order if spec.name == "jvi" else None,
        subsets=[SubsetInfo(left_out=j, num_subsets=n) for j, n in enumerate(num_subsets, start=1)],
        std_err_formula=STD_ERR_FORMULAS[spec.name],
        sampler=sampler,
    )


def verdict_out(v: VerdictValue, model: str | None) -> Verdict:
    """The verdict as the API returns it, its advice naming ``model`` (None: the client's own log-weights,
    whose advice names no model)."""
    return Verdict(
        level=v.level,
        reasons=list(v.reasons),
        advice=v.advice if model is None else v.advice.replace("{name}", model),
        rerun=Rerun.model_validate(v.rerun._asdict()) if v.rerun is not None else None,
    )


def _verdicts(verdicts: list[VerdictValue], model: str | None) -> list[Verdict]:
    return [verdict_out(v, model) for v in verdicts]


def _at(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def check_ais_limits(
    settings: Settings, batch: int, k: int, config: AISConfig | None, field: str, replicates: int = 1
) -> None:
    """AIS work is inputs x chains x temperatures x (leapfrog + 1) gradient evaluations, plus the tuning pass."""
    if config is None:
        return
    if config.steps > settings.max_ais_steps:
        raise InvalidInput(
            f"steps={config.steps} is over the limit {settings.max_ais_steps}",
            field=_at(field, "steps"),
            limit=settings.max_ais_steps,
        )
    work = replicates * batch * (k + 8) * config.steps * (config.leapfrog + 1)
    if work > settings.max_ais_evals:
        raise PayloadTooLarge(
            f"AIS work replicates x inputs x (chains + 8 tuning chains) x steps x (leapfrog + 1) = {work} gradient "
            f"evaluations, over the budget {settings.max_ais_evals}",
            field=field,
            limit=settings.max_ais_evals,
        )


def check_limits(
    settings: Settings,
    batch: int,
    estimators: list[tuple[str, EstimatorIn]],
    replicates: int = 1,
    *,
    inputs_field: str = "inputs",
) -> None:
    """Configurable limits: 413 for sizes over budget, 422 for values over their bound. Each estimator
    comes with the request field that holds it (``estimator``, ``estimators[2]``, ``parameters``, or
    ``""`` where k and order are top-level fields), so that an error names the field the client sent."""
    if batch > settings.max_batch:
        raise PayloadTooLarge(
            f"{batch} inputs, at most {settings.max_batch}", field=inputs_field, limit=settings.max_batch
        )
    for prefix, e in estimators:
        if e.k > settings.max_k:
            raise InvalidInput(
                f"k={e.k} is over the limit {settings.max_k}", field=_at(prefix, "k"), limit=settings.max_k
            )
        if (e.order or 0) > settings.max_order:
            raise InvalidInput(
                f"order={e.order} is over the limit {settings.max_order}",
                field=_at(prefix, "order"),
                limit=settings.max_order,
            )
    k_max = max(e.k for _, e in estimators)
    work = batch * k_max * replicates
    if work > settings.max_batch_k:
        raise PayloadTooLarge(
            f"inputs x k x replicates = {batch} x {k_max} x {replicates} = {work}, over the budget {settings.max_batch_k}",
            field=inputs_field,
            limit=settings.max_batch_k,
        )


def latent_model(entry: ModelEntry) -> LatentVariableModel:
    """The entry's model if it estimates evidence (a latent-variable model), else 422."""
    model = entry.model
    if not isinstance(model, LatentVariableModel):
        raise WrongModelFamily(
            f"model {entry.name!r} is a {entry.family!r} model: evidence does not apply; use POST /v1/models/{entry.name}/predict",
            field="name",
        )
    return model


def classifier(entry: ModelEntry) -> Classifier:
    """The entry's model if it is a Bayesian classifier, else 422."""
    model = entry.model
    if not isinstance(model, Classifier):
        raise WrongModelFamily(
            f"model {entry.name!r} is a {entry.family!r} model: predict applies to Bayesian classifiers; "
            f"use POST /v1/models/{entry.name}/evidence",
            field="name",
        )
    return model


def request_generator(entry: ModelEntry, seed: int) -> torch.Generator:
    """The request's one source of randomness, on the model's device; torch's global RNG is never used."""
    return torch.Generator(device=entry.device).manual_seed(seed)


@dataclass
class Evidence:
    """What the worker hands back for one evidence request."""

    estimate_out: EstimatorOut
    results: list[InputEstimate]


def _diagnostics(d: DiagnosticValues, k: int, columns: slice = slice(None)) -> list[Diagnostics]:
    """One ``Diagnostics`` per input of ``columns``, each field's values moved off the tensor at once."""
    values = {name: _floats(getattr(d, name)[columns]) for name in d._fields}
    count = len(next(iter(values.values())))
    return [
        Diagnostics(**{name: v[i] for name, v in values.items()}, khat_threshold=khat_threshold(k))
        for i in range(count)
    ]


def input_estimates(
    est: Estimate, k: int, columns: slice, with_diagnostics: bool, model: str | None
) -> list[InputEstimate]:
    """One ``InputEstimate`` per input of ``columns``: the number, its standard error, its verdict (its
    advice for ``model``, None for the client's own log-weights), and the diagnostics when asked for."""
    log_px, std_err = _floats(est.log_px[columns]), _floats(est.std_err[columns])
    verdicts = _verdicts(est.verdicts[columns], model)
    diagnostics: list[Diagnostics | None] = (
        list(_diagnostics(est.diagnostics, k, columns)) if with_diagnostics else [None] * len(log_px)
    )
    return [
        InputEstimate(log_px=v, std_err=e, diagnostics=d, verdict=verdict)
        for v, e, d, verdict in zip(log_px, std_err, diagnostics, verdicts, strict=True)
    ]


async def evidence(
    entry: ModelEntry,
    worker: DeviceWorker,
    settings: Settings,
    x: torch.Tensor,
    estimator: EstimatorIn,
    seed: int,
    binarize_method: str | None,
    with_diagnostics: bool,
    sampler: SamplerIn | None = None,
    estimator_field: str = "estimator",
) -> EvidenceResponse:
    started = time.monotonic()
    model = latent_model(entry)
    check_limits(settings, x.shape[0], [(estimator_field, estimator)])
    spec = _spec(estimator, estimator_field, settings, x.shape[0])
    ais_config, sampler_out = _sampler(sampler or SamplerIn())
    check_ais_limits(settings, x.shape[0], spec.k, ais_config, "sampler")
    generator = request_generator(entry, seed)
    binarization = plan_binarization(x, model.likelihood, binarize_method, seed, entry.binarize)
    device = entry.device

    def estimate_columns(
        log_w: torch.Tensor, check: Callable[[], None], stats: SamplerStatsValue | None = None
    ) -> Estimate:
        # The model runs in float32; the estimators get float64 so that nothing is lost after it.
        return estimate(
            log_w.double(),
            spec,
            discrete=model.discrete,
            sampler=sampler_out.name,
            stats=stats,
            flag_nonfinite=True,
            check_fn=check,
        )

    def finish(est: Estimate, columns: slice) -> Evidence:
        return Evidence(
            estimator_out(spec, est.num_subsets, sampler_out),
            input_estimates(est, spec.k, columns, with_diagnostics, entry.name),
        )

    work: BatchItem[Estimate, Evidence] | Callable[[JobContext], Evidence]
    if ais_config is None:

        def prepare() -> tuple[torch.Tensor, torch.Tensor]:
            # On the worker thread: tensor work on the event loop would wait for the GIL behind the model.
            xb = apply_binarization(x, binarization, generator)
            return xb.to(device), model.sample_noise(spec.k, xb.shape[0], generator)

        def forward(x_all: torch.Tensor, noise: torch.Tensor, check: Callable[[], None]) -> torch.Tensor:
            return model.log_weights_from_noise(x_all, noise, max_elements=settings.max_elements, check_fn=check)

        work = BatchItem(
            key=(entry.name, spec, with_diagnostics),
            size=x.shape[0],
            prepare=prepare,
            forward=forward,
            estimate=estimate_columns,
            finish=finish,
        )
    else:

        def run_ais(ctx: JobContext) -> Evidence:
            xd = apply_binarization(x, binarization, generator).to(device)
            log_w, stats = draw(
                model, xd, spec.k, ais_config, generator, max_elements=settings.max_elements, check_fn=ctx.check
            )
            out = finish(estimate_columns(log_w, ctx.check, stats), slice(None))
            assert stats is not None
            for r, a, h in zip(out.results, _floats(stats.acceptance), _floats(stats.step_size), strict=True):
                r.sampler_stats = SamplerStats(acceptance=a, step_size=h)
            return out

        work = run_ais
    job = await worker.submit(work, settings.deadline_s)
    return EvidenceResponse(
        model=entry.name,
        device=device,
        estimator=job.value.estimate_out,
        binarization=binarization,
        seed=seed,
        results=job.value.results,
        timing=Timing(queue_s=job.queue_s, compute_s=job.compute_s, total_s=time.monotonic() - started),
    )


def plan_estimators(
    settings: Settings, entries: list[CompareEstimatorIn], fields: list[str], inputs: int, replicates: int = 1
) -> tuple[list[EstimatorSpec], list[tuple[AISConfig | None, SamplerIn]]]:
    """Each entry's estimator and sampler, checked against the limits for ``inputs`` x ``replicates``;
    errors name the entry's ``fields`` item."""
    check_limits(settings, inputs, list(zip(fields, entries, strict=True)), replicates)
    specs = [_spec(e, f, settings, inputs * replicates) for e, f in zip(entries, fields, strict=True)]
    samplers = [_sampler(e.sampler) for e in entries]
    for f, spec, (config, _) in zip(fields, specs, samplers, strict=True):
        check_ais_limits(settings, inputs, spec.k, config, _at(f, "sampler"), replicates)
    return specs, samplers


def estimate_all(
    model: LatentVariableModel,
    x: torch.Tensor,
    specs: list[EstimatorSpec],
    samplers: list[tuple[AISConfig | None, SamplerIn]],
    generator: torch.Generator,
    settings: Settings,
    check: Callable[[], None],
) -> list[Estimate]:
    """Every estimator on ``x`` (on the model's device): importance entries use the first k of one shared
    draw (common random numbers); each AIS entry runs its own chains."""
    importance_k = [s.k for s, (c, _) in zip(specs, samplers, strict=True) if c is None]
    shared = (
        draw(model, x, max(importance_k), None, generator, max_elements=settings.max_elements, check_fn=check)
        if importance_k
        else None
    )
    out = []
    for spec, (config, sampler_out) in zip(specs, samplers, strict=True):
        result = (
            shared
            if config is None
            else draw(model, x, spec.k, config, generator, max_elements=settings.max_elements, check_fn=check)
        )
        assert result is not None
        log_w = result.log_w[: spec.k].double()
        out.append(
            estimate(log_w, spec, discrete=model.discrete, sampler=sampler_out.name, stats=result.stats, check_fn=check)
        )
    return out


async def compare(
    entry: ModelEntry, worker: DeviceWorker, settings: Settings, x: torch.Tensor, req: CompareRequest
) -> CompareResponse:
    """Importance entries of a replicate use the first k of the same draw (common random numbers); each
    AIS entry runs its own chains. The verdict per input is that of the entry's first replicate."""
    started = time.monotonic()
    model = latent_model(entry)
    entries: list[CompareEstimatorIn] = req.estimators + ([req.reference] if req.reference else [])
    if req.replicates > settings.max_replicates:
        raise InvalidInput(
            f"replicates={req.replicates} is over the limit {settings.max_replicates}",
            field="replicates",
            limit=settings.max_replicates,
        )
    fields = [f"estimators[{i}]" for i in range(len(req.estimators))] + (["reference"] if req.reference else [])
    specs, samplers = plan_estimators(settings, entries, fields, x.shape[0], req.replicates)
    generator = request_generator(entry, req.seed)
    binarization = plan_binarization(x, model.likelihood, req.binarize, req.seed, entry.binarize)
    device = entry.device

    def work(ctx: JobContext) -> tuple[torch.Tensor, list[Estimate]]:
        values = torch.empty(len(specs), req.replicates, x.shape[0], dtype=torch.float64)
        first: list[Estimate] = []
        xd = apply_binarization(x, binarization, generator).to(device)
        for r in range(req.replicates):
            estimates = estimate_all(model, xd, specs, samplers, generator, settings, ctx.check)
            for s, est in enumerate(estimates):
                values[s, r] = est.log_px.cpu()
            if r == 0:
                first = estimates
        return values, first

    job = await worker.submit(work, settings.deadline_s)
    values, first = job.value
    reference = values[-1] if req.reference else None
    summaries = []
    for spec, (_, sampler_out), v, est in zip(specs, samplers, values, first, strict=True):
        s = summarize_replicates(v, reference)
        summaries.append(
            EstimatorSummary(
                estimator=estimator_out(spec, est.num_subsets, sampler_out),
                mean=_floats(s.mean),
                sd=_floats(s.sd),
                diff_to_reference=_floats(s.diff_to_reference) if s.diff_to_reference is not None else None,
                mean_over_inputs=finite_or_none(s.mean_over_inputs),
                sd_over_inputs=finite_or_none(s.sd_over_inputs),
                verdicts=_verdicts(est.verdicts, entry.name),
            )
        )
    return CompareResponse(
        model=entry.name,
        device=device,
        replicates=req.replicates,
        seed=req.seed,
        binarization=binarization,
        reference=summaries[-1] if req.reference else None,
        estimators=summaries[: len(req.estimators)],
        timing=Timing(queue_s=job.queue_s, compute_s=job.compute_s, total_s=time.monotonic() - started),
    )


async def predict(
    entry: ModelEntry,
    worker: DeviceWorker,
    settings: Settings,
    x: torch.Tensor,
    labels: list[int] | None,
    k: int,
    order: int,
    seed: int,
    with_diagnostics: bool,
) -> PredictResponse:
    """Predictive class probabilities and entropy split from k posterior weight draws; with labels, the
    predictive log-likelihood by the iwae and jvi estimators on the per-draw log-likelihoods."""
    started = time.monotonic()
    model = classifier(entry)
    check_limits(settings, x.shape[0], [("", EstimatorIn.model_construct(name="jvi", k=k, order=order))])
    if order >= k:
        raise InvalidInput(f"order={order} must be below k={k}", field="order", limit=k - 1)
    jvi_spec = _spec(EstimatorIn.model_construct(name="jvi", k=k, order=order), "", settings, x.shape[0])
    classes = model.classes
    if labels is not None:
        if len(labels) != x.shape[0]:
            raise InvalidInput(f"{len(labels)} labels for {x.shape[0]} inputs", field="labels", limit=x.shape[0])
        bad = [i for i, y in enumerate(labels) if not 0 <= y < classes]
        if bad:
            raise InvalidInput(
                f"labels[{bad[0]}] = {labels[bad[0]]} is not a class 0..{classes - 1}",
                field=f"labels[{bad[0]}]",
                limit=f"0..{classes - 1}",
            )
    device = entry.device
    generator = request_generator(entry, seed)

    def work(ctx: JobContext) -> list[Prediction]:
        xd = x.to(device)
        log_probs, _ = model.sample_forward(xd, k, generator, check_fn=ctx.check)
        summary = predictive_summary(log_probs)
        loglik: list[LogLikelihood | None] = [None] * x.shape[0]
        if labels is not None:
            y = torch.tensor(labels, device=xd.device)
            per_draw = model.label_log_likelihoods(log_probs, y).double()  # [k, B]: log p(y | x, w_i) <= 0
            iw = estimate(per_draw, EstimatorSpec("iwae", k), discrete=True, flag_nonfinite=True, sampler="weights")
            jv = estimate(per_draw, jvi_spec, discrete=True, flag_nonfinite=True, check_fn=ctx.check, sampler="weights")
            iwae_v, jvi_v, se = _floats(iw.log_px), _floats(jv.log_px), _floats(jv.std_err)
            diagnostics = _diagnostics(iw.diagnostics, k) if with_diagnostics else [None] * x.shape[0]
            verdicts = _verdicts(jv.verdicts, entry.name)
            loglik = [
                LogLikelihood(
                    label=labels[i],
                    iwae=iwae_v[i],
                    jvi=jvi_v[i],
                    std_err=se[i],
                    diagnostics=diagnostics[i],
                    verdict=verdicts[i],
                )
                for i in range(x.shape[0])
            ]
        probs = summary.probs.cpu().tolist()
        return [
            Prediction(
                probs=probs[i],
                predicted=int(summary.predicted[i]),
                entropy=Entropy(
                    total=float(summary.entropy[i]),
                    aleatoric=float(summary.aleatoric[i]),
                    epistemic=float(summary.epistemic[i]),
                ),
                log_likelihood=loglik[i],
            )
            for i in range(x.shape[0])
        ]

    job = await worker.submit(work, settings.deadline_s)
    return PredictResponse(
        model=entry.name,
        device=device,
        k=k,
        order=order,
        seed=seed,
        predictions=job.value,
        timing=Timing(queue_s=job.queue_s, compute_s=job.compute_s, total_s=time.monotonic() - started),
    )


async def bdmc(entry: ModelEntry, worker: DeviceWorker, settings: Settings, req: BDMCRequest) -> BDMCResponse:
    """Forward and reverse AIS on inputs simulated from the model: a sandwich around log p(x)."""
    started = time.monotonic()
    model = latent_model(entry)
    if req.sampler.name != "ais":
        raise InvalidInput(
            "BDMC certifies an AIS setting: sampler.name must be 'ais'", field="sampler.name", limit="ais"
        )
    config, sampler_out = _sampler(req.sampler)
    check_limits(
        settings,
        req.num_inputs,
        [("", EstimatorIn.model_construct(name="iwae", k=req.k, order=None))],
        inputs_field="num_inputs",
    )
    check_ais_limits(settings, req.num_inputs, req.k, config, "sampler", replicates=2)
    assert config is not None
    generator = request_generator(entry, req.seed)

    def work(ctx: JobContext) -> BDMCResponse:
        result = run_bdmc(
            model, req.num_inputs, req.k, config, generator, max_elements=settings.max_elements, check_fn=ctx.check
        )
        spec = EstimatorSpec("iwae", req.k)
        stats = SamplerStatsValue(result.forward.acceptance, result.forward.step_size)
        lower = estimate(
            result.forward.log_w, spec, discrete=model.discrete, sampler="ais", stats=stats, flag_nonfinite=True
        )
        # The upper bound's standard error: the jackknife of -IWAE(-log w_rev), the same formula.
        upper_se = estimate(-result.reverse.log_w, spec, flag_nonfinite=True).std_err
        summary = summarize_bdmc(result, lower.std_err, upper_se)
        rows = zip(
            _floats(result.lower),
            _floats(result.upper),
            _floats(lower.std_err),
            _floats(upper_se),
            _floats(result.forward.acceptance),
            _verdicts(lower.verdicts, entry.name),
            strict=True,
        )
        results = [
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
        return BDMCResponse(
            model=entry.name,
            device=entry.device,
            k=req.k,
            seed=req.seed,
            sampler=sampler_out,
            results=results,
            mean_lower=finite_or_none(summary.mean_lower),
            mean_upper=finite_or_none(summary.mean_upper),
            mean_gap=finite_or_none(summary.mean_gap),
            mean_gap_std_err=finite_or_none(summary.mean_gap_std_err),
            timing=Timing(queue_s=0.0, compute_s=0.0, total_s=0.0),
        )

    job = await worker.submit(work, settings.deadline_s)
    job.value.timing = Timing(queue_s=job.queue_s, compute_s=job.compute_s, total_s=time.monotonic() - started)
    return job.value


async def estimate_log_weights(
    worker: DeviceWorker,
    settings: Settings,
    log_w: torch.Tensor,
    estimators: list[EstimateEstimatorIn],
    discrete: bool,
    with_diagnostics: bool,
    field: str = "estimators",
) -> EstimateResponse:
    """Every requested estimator on log-weights ``[k, B]`` the client computed (no model involved)."""
    started = time.monotonic()
    k, batch = log_w.shape
    specs_in = []
    for i, e in enumerate(estimators):
        if e.k is not None and e.k > k:
            raise InvalidInput(f"k={e.k} is more than the {k} rows sent", field=f"{field}[{i}].k", limit=k)
        specs_in.append(_estimator_in(e.name, e.k or k, e.order, f"{field}[{i}]"))
    fields = [f"{field}[{i}]" for i in range(len(estimators))]
    check_limits(settings, batch, list(zip(fields, specs_in, strict=True)), inputs_field="log_weights")
    specs = [_spec(e, f, settings, batch) for e, f in zip(specs_in, fields, strict=True)]
    sampler = SamplerIn()

    def work(ctx: JobContext) -> list[EstimatorResults]:
        out = []
        for spec in specs:
            est = estimate(log_w, spec, discrete=discrete, check_fn=ctx.check, sampler="external")
            out.append(
                EstimatorResults(
                    estimator=estimator_out(spec, est.num_subsets, sampler),
                    results=input_estimates(est, spec.k, slice(None), with_diagnostics, None),
                )
            )
        return out

    job = await worker.submit(work, settings.deadline_s)
    return EstimateResponse(
        k=k,
        inputs=batch,
        estimators=job.value,
        timing=Timing(queue_s=job.queue_s, compute_s=job.compute_s, total_s=time.monotonic() - started),
    )


def _estimator_in(name: str, k: int, order: int | None, field: str) -> EstimatorIn:
    """An ``EstimatorIn`` validated like a request's, its errors naming ``field``."""
    try:
        return EstimatorIn.model_validate({"name": name, "k": k, **({"order": order} if order is not None else {})})
    except ValidationError as exc:
        raise InvalidInput(f"{field}: {exc.errors()[0]['msg']}", field=field) from None


async def posterior(
    entry: ModelEntry, worker: DeviceWorker, settings: Settings, x: torch.Tensor, req: PosteriorRequest
) -> PosteriorResponse:
    """The posterior of one input on a grid over the latent plane, with q(z | x)'s moments: 2-D latents only."""
    started = time.monotonic()
    model = latent_model(entry)
    if model.latent_dim != 2:
        raise WrongModelFamily(
            f"model {entry.name!r} has a {model.latent_dim}-D latent; the posterior picture needs a 2-D one",
            field="name",
            limit="latent_dim 2",
        )
    generator = request_generator(entry, req.seed)
    binarization = plan_binarization(x, model.likelihood, req.binarize, req.seed, entry.binarize)

    def work(ctx: JobContext) -> PosteriorResponse:
        grid = posterior_grid(
            model, apply_binarization(x, binarization, generator).to(entry.device), generator, n=req.grid
        )
        verdict = grid_verdict(grid)
        return PosteriorResponse(
            model=entry.name,
            binarization=binarization,
            z1=grid.z1.tolist(),
            z2=grid.z2.tolist(),
            log_density=grid.log_density.clamp(min=-1e4).tolist(),  # JSON has no -inf; e^-10000 is 0 anyway
            log_px=grid.log_px,
            q_mean=grid.q_mean.tolist(),
            q_cov=grid.q_cov.tolist(),
            edge_mass=grid.edge_mass,
            verdict=verdict_out(verdict, entry.name),
            timing=Timing(queue_s=0.0, compute_s=0.0, total_s=0.0),
        )

    job = await worker.submit(work, settings.deadline_s)
    timing = Timing(queue_s=job.queue_s, compute_s=job.compute_s, total_s=time.monotonic() - started)
    return job.value.model_copy(update={"timing": timing})
