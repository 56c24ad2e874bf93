"""Request and response bodies of the job routes (docs/api.md, Jobs)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..schemas import SCALE_TEXT, Binarization, Binarize, CompareEstimatorIn, EstimatorOut, Image, Rerun, Scale, Verdict

__all__ = [
    "ComparisonBrief",
    "ComparisonList",
    "ComparisonRequest",
    "ComparisonStatus",
    "DifferenceOut",
    "JobList",
    "JobOptions",
    "JobRequest",
    "JobStatus",
    "JobSummary",
    "StandingOut",
]

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobOptions(BaseModel):
    """What to run over the data set; stored with the job."""

    model_config = ConfigDict(extra="forbid")

    estimators: list[CompareEstimatorIn] = Field(
        min_length=1,
        max_length=16,
        description="Importance entries share one draw per chunk (the first k of it); each AIS entry runs its own chains",
    )
    seed: int = Field(0, ge=0, lt=2**63, description="Same data, seed and settings: the same rows")
    binarize: Binarize | None = Field(None, description="Default: the checkpoint's (stated in the job)")


class JsonInputs(JobOptions):
    """The data set as JSON (for files, send multipart/form-data: docs/api.md)."""

    inputs: list[Image] = Field(min_length=1)
    scale: Scale = Field("unit", description=SCALE_TEXT)
    labels: list[Annotated[int, Field(ge=-(2**63), lt=2**63)]] | None = Field(
        None, description="One integer label per input (64-bit), returned in the rows"
    )


class JobRequest(JsonInputs):
    """A job over JSON inputs."""

    model: str


class ComparisonRequest(JobOptions):
    """A comparison over JSON inputs: the same plan, seed and binary inputs for every model."""

    models: list[str] = Field(
        min_length=2, max_length=8, description="The models, 2 to 8, of one input shape and likelihood"
    )
    inputs: list[Image] = Field(min_length=1)
    scale: Scale = Field("unit", description=SCALE_TEXT)
    labels: list[Annotated[int, Field(ge=-(2**63), lt=2**63)]] | None = Field(
        None, description="One integer label per input (64-bit), returned in the rows"
    )


class DatasetInfo(BaseModel):
    sha256: str = Field(description="Content hash of the stored inputs and labels: the data set's name")
    count: int
    source: str = Field(description="The format it was read from: idx, npy, npz, png-zip or json")
    labels: bool


class Progress(BaseModel):
    done: int
    total: int
    fraction: float
    elapsed_s: float | None = Field(description="Since the job started running (restarts included)")
    compute_s: float = Field(description="Worker time spent on its chunks")
    eta_s: float | None = Field(description="Remaining inputs at the rate of the chunks so far")


class KhatHistogram(BaseModel):
    edges: list[float]
    counts: list[int] = Field(description="len(edges) + 1 bins: below edges[0], [edges[i-1], edges[i]), above the last")


class JobSummary(BaseModel):
    """One estimator over the inputs done so far."""

    estimator: EstimatorOut
    mean: float | None = Field(description="Mean log p(x) over inputs with a finite estimate")
    std_err: float | None = Field(description="Standard error of that mean over inputs (the data set's spread)")
    count: int
    not_finite: int = Field(description="Inputs whose estimate is null (impossible or failed): see their verdicts")
    verdicts: dict[str, int]
    khat_histogram: KhatHistogram
    advice: str | None = Field(
        description="What to run instead, from the worst verdict so far (null if all are reliable)"
    )
    rerun: Rerun | None = Field(None, description="That advice as request settings, where it names them exactly")


class JobLinks(BaseModel):
    self: str
    events: str
    results: str


class ChunkProvenance(BaseModel):
    """Where one committed chunk ran (rows are a function of the seed and the chunk, never of this)."""

    start: int = Field(description="Its first input's index")
    count: int
    executor: str = Field(description="in-process (the server's device worker) or ray")
    node: str | None = Field(description="Ray node id (null in-process)")
    host: str
    device: str
    seconds: float = Field(description="Its compute time where it ran")
    pid: int | None = Field(None, description="Ray: the actor's process")


class RunsOn(BaseModel):
    """Where the job's chunks have run so far, from their provenance."""

    executor: str
    nodes: int = Field(description="Distinct Ray nodes (1 in-process)")
    actors: int = Field(description="Distinct actor processes (1 in-process)")


class JobStatus(BaseModel):
    id: str
    model: str
    comparison: str | None = Field(None, description="The comparison this job is one model of, if any")
    state: State
    dataset: DatasetInfo
    options: JobOptions
    binarization: Binarization | None
    chunk_size: int
    progress: Progress
    summary: list[JobSummary]
    error: str | None
    created: str
    started: str | None
    finished: str | None
    links: JobLinks
    runs_on: RunsOn | None = Field(None, description="Where its chunks ran (null before the first commits)")
    provenance: list[ChunkProvenance] = Field(default_factory=list, description="Per committed chunk, in order")


class JobList(BaseModel):
    jobs: list[JobStatus]
    total: int
    limit: int
    offset: int
    next: str | None = Field(description="The next page's URL, or null on the last page")


class StandingOut(BaseModel):
    """One model under one estimator, over the inputs it has scored."""

    estimator: str = Field(description="The plan entry, in its text form (NAME:K[:ORDER][@SAMPLER])")
    model: str
    count: int = Field(description="Inputs with a finite estimate")
    mean: float | None
    std_err: float | None = Field(description="Over inputs: the data set's spread (Monte Carlo error included)")
    mc_std_err: float | None = Field(description="The estimators' own Monte Carlo part of it")
    verdicts: dict[str, int]


class DifferenceOut(BaseModel):
    """Model a minus model b under one estimator, paired on the inputs both have scored."""

    estimator: str
    a: str
    b: str
    count: int = Field(description="Inputs with a finite estimate from both models")
    mean: float | None = Field(description="Mean over inputs of a's log p(x) minus b's")
    std_err: float | None = Field(description="sd of the per-input differences / sqrt(count)")
    mc_std_err: float | None = Field(description="The Monte Carlo part of it, from the per-input standard errors")
    unpaired_std_err: float | None = Field(
        description="What the two means' own standard errors would say, ignoring that the inputs are shared"
    )
    interval: list[float | None] = Field(description="Student's t interval at `confidence`")
    confidence: float
    a_better: float | None = Field(description="Share of inputs on which a's estimate is the higher")
    verdict: Verdict


class ComparisonStatus(BaseModel):
    id: str
    state: State
    models: list[str]
    estimators: list[str]
    done: int = Field(description="Inputs every model has scored")
    total: int
    active: int = Field(description="Its jobs still queued or running")
    jobs: list[JobStatus]
    standings: list[StandingOut]
    differences: list[DifferenceOut]
    links: dict[str, str]


class ComparisonBrief(BaseModel):
    id: str
    state: State
    models: list[str]
    estimators: list[str]
    done: int
    total: int
    created: str


class ComparisonList(BaseModel):
    comparisons: list[ComparisonBrief]
    total: int
    limit: int
    offset: int
    next: str | None
