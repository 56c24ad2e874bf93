"""The data plane: from validated inputs to responses. Limits are checked here, model work goes to the
device worker, and every number comes from ``models`` (the estimators, diagnostics and summaries)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from models import EstimatorSpec, estimate
from models.bbb import predictive_summary
from models.compare import summarize_replicates
from models.evidence import STD_ERR_FORMULAS, Estimate, point_estimate
from models.psis import khat_threshold

from .config import Settings
from .errors import InvalidInput, PayloadTooLarge, WrongModelFamily
from .inputs import apply_binarization, finite_or_none, parse_estimator, plan_binarization
from .registry import ModelEntry
from .schemas import (
    CompareRequest,
    CompareResponse,
    Diagnostics,
    Entropy,
    EstimatorIn,
    EstimatorOut,
    EstimatorSummary,
    EvidenceResponse,
    InputEstimate,
    LogLikelihood,
    Prediction,
    PredictResponse,
    SubsetInfo,
    Timing,
)
from .worker import BatchItem, DeviceWorker, JobContext

__all__ = ["Evidence", "evidence", "compare", "predict", "check_limits"]

EVIDENCE_FAMILIES = ("vae", "linear_gaussian")


def _floats(t: torch.Tensor) -> list[float | None]:
    return [finite_or_none(float(v)) for v in t.detach().double().cpu().tolist()]


def _spec(e: EstimatorIn) -> EstimatorSpec:
    return EstimatorSpec(e.name, e.k, e.order or 1)


def _estimator_out(spec: EstimatorSpec, subsets: tuple[tuple[str, int], ...] = ()) -> EstimatorOut:
    return EstimatorOut(
        name=spec.name,
        k=spec.k,
        order=spec.order if spec.name == "jvi" else None,
        subsets=[SubsetInfo(left_out=j, method=m, num_subsets=n) for j, (m, n) in enumerate(subsets, start=1)],
        std_err_formula=STD_ERR_FORMULAS[spec.name],
    )


def check_limits(settings: Settings, batch: int, estimators: list[EstimatorIn], replicates: int = 1) -> None:
    """Configurable limits: 413 for sizes over budget, 422 for values over their bound."""
    if batch > settings.max_batch:
        raise PayloadTooLarge(f"{batch} inputs, at most {settings.max_batch}", field="inputs", limit=settings.max_batch)
    for i, e in enumerate(estimators):
        if e.k > settings.max_k:
            raise InvalidInput(f"k={e.k} is over the limit {settings.max_k}", field=f"estimator[{i}].k", limit=settings.max_k)
        if (e.order or 0) > settings.max_order:
            raise InvalidInput(
                f"order={e.order} is over the limit {settings.max_order}", field=f"estimator[{i}].order", limit=settings.max_order
            )
    k_max = max(e.k for e in estimators)
    work = batch * k_max * replicates
    if work > settings.max_batch_k:
        raise PayloadTooLarge(
            f"inputs x k x replicates = {batch} x {k_max} x {replicates} = {work}, over the budget {settings.max_batch_k}",
            field="inputs", limit=settings.max_batch_k,
        )


def _model_for_evidence(entry: ModelEntry) -> torch.nn.Module:
    assert entry.checkpoint is not None
    if entry.family not in EVIDENCE_FAMILIES:
        raise WrongModelFamily(
            f"model {entry.name!r} is a {entry.family!r} model: evidence does not apply; use POST /v1/models/{entry.name}/predict",
            field="name",
        )
    return entry.checkpoint.model


@dataclass
class Evidence:
    """What the worker hands back for one evidence request."""

    estimate_out: EstimatorOut
    results: list[InputEstimate]


def _diagnostics(d: Any, k: int, columns: slice = slice(None)) -> list[Diagnostics]:
    """One ``Diagnostics`` per input of ``columns``, each field's values moved off the tensor at once."""
    values = {name: _floats(getattr(d, name)[columns]) for name in d._fields}
    count = len(next(iter(values.values())))
    return [Diagnostics(**{name: v[i] for name, v in values.items()}, khat_threshold=khat_threshold(k)) for i in range(count)]


async def evidence(
    entry: ModelEntry, worker: DeviceWorker, settings: Settings, x: torch.Tensor, estimator: EstimatorIn,
    seed: int, binarize_method: str | None, with_diagnostics: bool,
) -> EvidenceResponse:
    started = time.monotonic()
    model = _model_for_evidence(entry)
    check_limits(settings, x.shape[0], [estimator])
    spec = _spec(estimator)
    generator = torch.Generator().manual_seed(seed)
    binarization = plan_binarization(x, model.likelihood, binarize_method, seed)
    device = entry.device or "cpu"

    def prepare() -> tuple[torch.Tensor, list[torch.Tensor]]:
        # On the worker thread: tensor work on the event loop would wait for the GIL behind the model.
        xb = apply_binarization(x, binarization, generator)
        return xb.to(device), model.sample_noise(spec.k, xb.shape[0], generator)

    def forward(x_all: torch.Tensor, noise: list[torch.Tensor], check: Callable[[], None]) -> torch.Tensor:
        return model.log_weights_from_noise(x_all, noise, max_elements=settings.max_elements, before_chunk_fn=check)

    def estimate_columns(log_w: torch.Tensor) -> Estimate:
        # The model runs in float32; the estimators get float64 so that nothing is lost after it.
        return estimate(log_w.double(), spec, with_diagnostics=with_diagnostics, generator=generator)

    def finish(est: Estimate, columns: slice) -> Evidence:
        log_px, std_err = _floats(est.log_px[columns]), _floats(est.std_err[columns])
        diagnostics = _diagnostics(est.diagnostics, spec.k, columns) if est.diagnostics is not None else [None] * len(log_px)
        results = [InputEstimate(log_px=v, std_err=e, diagnostics=d) for v, e, d in zip(log_px, std_err, diagnostics)]
        return Evidence(_estimator_out(spec, est.subsets), results)

    work = BatchItem(key=(entry.name, spec, with_diagnostics), size=x.shape[0], prepare=prepare, forward=forward,
                     estimate=estimate_columns, finish=finish, shared_estimate=not spec.draws_subsets)
    job = await worker.submit(work, settings.deadline_s)
    return EvidenceResponse(
        model=entry.name, device=device, estimator=job.value.estimate_out, binarization=binarization, seed=seed,
        results=job.value.results,
        timing=Timing(queue_s=job.queue_s, compute_s=job.compute_s, total_s=time.monotonic() - started),
    )


def _summary(spec: EstimatorSpec, values: torch.Tensor, reference: torch.Tensor | None,
             subsets: tuple[tuple[str, int], ...]) -> EstimatorSummary:
    s = summarize_replicates(values, reference)
    return EstimatorSummary(
        estimator=_estimator_out(spec, subsets),
        mean=_floats(s.mean),
        sd=_floats(s.sd),
        diff_to_reference=_floats(s.diff_to_reference) if s.diff_to_reference is not None else None,
        mean_over_inputs=finite_or_none(float(s.mean.mean())),
        sd_over_inputs=finite_or_none(float(s.sd.pow(2).mean().sqrt())),
    )


async def compare(
    entry: ModelEntry, worker: DeviceWorker, settings: Settings, x: torch.Tensor, req: CompareRequest
) -> CompareResponse:
    """All estimators of a replicate use the first k of the same draw (common random numbers)."""
    started = time.monotonic()
    model = _model_for_evidence(entry)
    everything = req.estimators + ([req.reference] if req.reference else [])
    if req.replicates > settings.max_replicates:
        raise InvalidInput(
            f"replicates={req.replicates} is over the limit {settings.max_replicates}", field="replicates",
            limit=settings.max_replicates,
        )
    check_limits(settings, x.shape[0], everything, req.replicates)
    specs = [_spec(e) for e in everything]
    k_draw = max(s.k for s in specs)
    generator = torch.Generator().manual_seed(req.seed)
    binarization = plan_binarization(x, model.likelihood, req.binarize, req.seed)
    device = entry.device or "cpu"

    def work(ctx: JobContext) -> tuple[torch.Tensor, list[tuple[tuple[str, int], ...]]]:
        values = torch.empty(len(specs), req.replicates, x.shape[0], dtype=torch.float64)
        subsets: list[tuple[tuple[str, int], ...]] = [()] * len(specs)  # how each JVI's Lbar terms were computed
        xd = apply_binarization(x, binarization, generator).to(device)
        for r in range(req.replicates):
            log_w = model.log_weights(xd, k_draw, generator=generator, max_elements=settings.max_elements, before_chunk_fn=ctx.check)
            for s, spec in enumerate(specs):
                result = point_estimate(log_w.double(), spec, generator=generator)
                values[s, r], subsets[s] = result.value.cpu(), result.subsets
        return values, subsets

    job = await worker.submit(work, settings.deadline_s)
    values, subsets = job.value
    reference = values[-1] if req.reference else None
    summaries = [_summary(spec, v, reference, sub) for spec, v, sub in zip(specs, values, subsets)]
    return CompareResponse(
        model=entry.name, device=device, replicates=req.replicates, seed=req.seed, binarization=binarization,
        reference=summaries[-1] if req.reference else None,
        estimators=summaries[: len(req.estimators)],
        timing=Timing(queue_s=job.queue_s, compute_s=job.compute_s, total_s=time.monotonic() - started),
    )


def _model_for_predict(entry: ModelEntry) -> torch.nn.Module:
    assert entry.checkpoint is not None
    if entry.family != "bbb":
        raise WrongModelFamily(
            f"model {entry.name!r} is a {entry.family!r} model: predict applies to Bayesian classifiers (bbb); "
            f"use POST /v1/models/{entry.name}/evidence", field="name",
        )
    return entry.checkpoint.model


async def predict(
    entry: ModelEntry, worker: DeviceWorker, settings: Settings, x: torch.Tensor, labels: list[int] | None,
    k: int, order: int, seed: int, with_diagnostics: bool,
) -> PredictResponse:
    """Predictive class probabilities and entropy split from k posterior weight draws; with labels, the
    predictive log-likelihood by the iwae and jvi estimators on the per-draw log-likelihoods."""
    started = time.monotonic()
    model = _model_for_predict(entry)
    check_limits(settings, x.shape[0], [parse_estimator({"name": "jvi", "k": k, "order": order}, "order")])
    classes = model.config.classes
    if labels is not None:
        if len(labels) != x.shape[0]:
            raise InvalidInput(f"{len(labels)} labels for {x.shape[0]} inputs", field="labels", limit=x.shape[0])
        bad = [i for i, y in enumerate(labels) if not 0 <= y < classes]
        if bad:
            raise InvalidInput(f"labels[{bad[0]}] = {labels[bad[0]]} is not a class 0..{classes - 1}", field=f"labels[{bad[0]}]",
                               limit=f"0..{classes - 1}")
    device = entry.device or "cpu"
    generator = torch.Generator().manual_seed(seed)

    def work(ctx: JobContext) -> list[Prediction]:
        xd = x.to(device)
        log_probs, _ = model.sample_forward(xd, k, generator if device == "cpu" else None, before_chunk_fn=ctx.check)
        summary = predictive_summary(log_probs)
        loglik: list[LogLikelihood | None] = [None] * x.shape[0]
        if labels is not None:
            y = torch.tensor(labels, device=xd.device)
            per_draw = model.label_log_likelihoods(log_probs, y).double()  # [k, B]
            iw = estimate(per_draw, EstimatorSpec("iwae", k), with_diagnostics=with_diagnostics)
            jv = point_estimate(per_draw, EstimatorSpec("jvi", k, order), generator=generator)
            iwae_v, jvi_v, se = _floats(iw.log_px), _floats(jv.value), _floats((iw.std_err.pow(2) + jv.mc_var).sqrt())
            diagnostics = _diagnostics(iw.diagnostics, k) if iw.diagnostics is not None else [None] * x.shape[0]
            loglik = [
                LogLikelihood(label=labels[i], iwae=iwae_v[i], jvi=jvi_v[i], std_err=se[i], diagnostics=diagnostics[i])
                for i in range(x.shape[0])
            ]
        probs = summary.probs.cpu().tolist()
        return [
            Prediction(probs=probs[i], predicted=int(summary.predicted[i]),
                       entropy=Entropy(total=float(summary.entropy[i]), aleatoric=float(summary.aleatoric[i]),
                                       epistemic=float(summary.epistemic[i])),
                       log_likelihood=loglik[i])
            for i in range(x.shape[0])
        ]

    job = await worker.submit(work, settings.deadline_s)
    return PredictResponse(model=entry.name, device=device, k=k, order=order, seed=seed, predictions=job.value,
                           timing=Timing(queue_s=job.queue_s, compute_s=job.compute_s, total_s=time.monotonic() - started))
