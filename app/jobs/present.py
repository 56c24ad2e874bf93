"""A stored job as the API shows it: state, progress, ETA, and the per-estimator summary so far."""

from __future__ import annotations

from datetime import UTC, datetime

from logpx.estimators import KHAT_EDGES, DatasetSummary

from ..presenter import estimator_out
from .schemas import (
    ChunkProvenance,
    DatasetInfo,
    JobLinks,
    JobOptions,
    JobStatus,
    JobSummary,
    KhatHistogram,
    Progress,
    RunsOn,
)
from .store import JobRow

__all__ = ["iso", "status"]


def iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat() if t is not None else None


def status(job: JobRow) -> JobStatus:
    """A job's public state, progress and summary so far."""
    now = datetime.now(UTC).timestamp()
    end = job.finished if job.finished is not None else now
    rate = job.compute_s / job.done if job.done else None
    summary = []
    for entry in job.plan.entries:
        stored = job.summary.get(str(entry), {})
        s = DatasetSummary.from_dict(stored["values"]) if stored else DatasetSummary()
        worst = stored.get("worst") if stored else None
        summary.append(
            JobSummary(
                estimator=estimator_out(entry),
                mean=s.mean if s.count else None,
                std_err=s.std_err,
                count=s.count,
                not_finite=s.not_finite,
                verdicts=s.levels,
                khat_histogram=KhatHistogram(edges=list(KHAT_EDGES), counts=s.khat),
                advice=worst["advice"] if worst else None,
                rerun=worst.get("rerun") if worst else None,  # absent from summaries stored before it existed
            )
        )
    provenance = [ChunkProvenance.model_validate(p) for p in job.summary.get("provenance", [])]
    runs_on = None
    if provenance:
        runs_on = RunsOn(
            executor="+".join(dict.fromkeys(p.executor for p in provenance)),
            nodes=len({p.node or p.host for p in provenance}),
            actors=len({(p.node or p.host, p.pid) for p in provenance}),
        )
    base = f"/v1/jobs/{job.id}"
    return JobStatus(
        id=job.id,
        model=job.model,
        comparison=job.comparison,
        state=job.state,
        dataset=DatasetInfo(**job.request["dataset"]),
        options=JobOptions.model_validate(job.request["options"]),
        binarization=job.request["binarization"],
        chunk_size=job.chunk_size,
        progress=Progress(
            done=job.done,
            total=job.total,
            fraction=job.done / job.total,
            elapsed_s=end - job.started if job.started is not None else None,
            compute_s=job.compute_s,
            eta_s=rate * (job.total - job.done) if rate is not None and job.state == "running" else None,
        ),
        summary=summary,
        error=job.error,
        created=iso(job.created) or "",
        started=iso(job.started),
        finished=iso(job.finished),
        links=JobLinks(self=base, events=f"{base}/events", results=f"{base}/results"),
        runs_on=runs_on,
        provenance=provenance,
    )
