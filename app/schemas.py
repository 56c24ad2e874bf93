"""Request and response bodies of the HTTP contract (docs/api.md), in pairs.

Static bounds live on the fields; the configurable limits (batch size, k, budgets) are checked per
request against the settings and reported with the limit that was broken.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from logpx.estimators import DEFAULT_SPEC
from logpx.plan import Sampler

Image = list[float] | list[list[float]] | list[list[list[float]]]  # flat, [H][W] or [C][H][W]


class EstimatorIn(BaseModel):
    """One estimator: ``{"name": "iwae", "k": 1000}``, ``{"name": "jvi", "k": 1000, "order": 2}``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "jvi", "k": 1000, "order": 1}]})

    name: Literal["elbo", "iwae", "jvi"]
    k: int = Field(ge=2, description="Importance samples per input (at most the server's max_k)")
    order: int | None = Field(None, ge=1, description="JVI order m, 1 <= m < k; jvi only (default 1)")

    @model_validator(mode="after")
    def _order(self) -> EstimatorIn:
        if self.name != "jvi" and self.order is not None:
            raise ValueError("order applies to the jvi estimator only")
        if self.name == "jvi":
            self.order = self.order or 1
            if self.order >= self.k:
                raise ValueError(f"jvi needs order < k, got order={self.order}, k={self.k}")
        return self


Binarize = Literal["threshold", "sample", "resample", "none"]
Scale = Literal["unit", "byte", "real"]
SCALE_TEXT = (
    "'unit': values in [0, 1]; 'byte': integers 0..255; 'real': any finite value, for a model whose domain is "
    "real (GET /v1/models/{name}: domain)"
)


class SamplerIn(BaseModel):
    """What produces the log-weights: ``{"name": "importance"}`` (k draws from the encoder) or
    ``{"name": "ais", "steps": 1000, "leapfrog": 10, "init": "encoder", "schedule": "sigmoid"}`` (k
    annealed chains)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "ais", "steps": 1000, "leapfrog": 10, "init": "encoder"}]},
    )

    name: str = Field(
        "importance",
        description="A sampler logpx runs: importance or ais (and any registered with logpx.plan.Sampler)",
        json_schema_extra={"examples": ["importance", "ais"]},
    )
    steps: int | str | None = Field(
        None,
        description='AIS: intermediate temperatures T >= 1 (default 1000), or "auto": the fewest a certificate of the '
        "model bounds by tolerance nats of BDMC gap (POST /v1/models/{name}/certify)",
        json_schema_extra={"examples": [1000, "auto"]},
    )
    leapfrog: int | None = Field(None, ge=1, le=100, description="AIS: leapfrog steps per HMC move (default 10)")
    init: Literal["encoder", "prior"] | None = Field(None, description="AIS: start chains at q(z|x) (default) or p(z)")
    schedule: Literal["sigmoid", "linear", "geometric"] | None = Field(
        None, description="AIS: temperatures (default sigmoid)"
    )
    tolerance: float | None = Field(
        None,
        gt=0,
        le=5,
        description="AIS with steps auto: the BDMC gap (nats) its certificate must bound (default 0.1)",
    )

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: int | str | None) -> int | str | None:
        if v is None or v == "auto" or (isinstance(v, int) and v >= 1):
            return v
        raise ValueError(f"steps must be a whole number >= 1 or 'auto', got {v!r}")

    @model_serializer(mode="wrap")
    def _without_tolerance(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``tolerance`` is stated where it applies (steps auto), not as a null on every fixed schedule."""
        out: dict[str, Any] = handler(self)
        if self.tolerance is None:
            out.pop("tolerance", None)
        return out

    @model_validator(mode="after")
    def _known(self) -> SamplerIn:
        cls = Sampler.registry.get(self.name)
        if cls is None or not cls.requestable:
            choices = sorted(n for n, c in Sampler.registry.items() if c.requestable)
            raise ValueError(f"unknown sampler {self.name!r}; choose one of {choices}")
        given = {key for key, value in self.model_dump(exclude={"name"}).items() if value is not None}
        known = set(cls.setting_names())
        if given - known:
            raise ValueError(
                f"{', '.join(sorted(given - known))} do not apply to the {self.name} sampler"
                + (f" (it takes {', '.join(sorted(known))})" if known else "")
            )
        return self


class Rerun(BaseModel):
    """What to run instead, as this API's own objects: send them in place of the request's."""

    estimator: EstimatorIn
    sampler: SamplerIn


class Verdict(BaseModel):
    """Whether to trust the number: the level, every reason for it, and what to run instead."""

    level: Literal["reliable", "caution", "unreliable"]
    reasons: list[str]
    advice: str
    rerun: Rerun | None = Field(
        None, description="the advice as request settings, where it names them exactly (else null)"
    )


class RerunCost(BaseModel):
    """What a verdict's ``rerun`` costs on this server for the request's inputs, and how to run it: the
    verdicts themselves stay the same on any machine; this is this server's estimate."""

    plan: str = Field(description="The rerun in the plan's text (docs/estimators.md), e.g. iwae:100@ais:1000")
    rerun: Rerun
    seconds: float = Field(description="Expected compute time on this request's inputs, at the model's measured speed")
    run_as: Literal["request", "job"] = Field(
        description="request: one request finishes it within the deadline and limits; job: POST /v1/jobs (no deadline)"
    )
    note: str = Field(description="The same in words")


class SamplerStats(BaseModel):
    acceptance: float | None = Field(description="AIS: mean HMC acceptance over chains and temperatures")
    step_size: float | None = Field(description="AIS: HMC step size at b = 1 (fixed by the tuning pass)")


class EvidenceRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"inputs": [[0.0] * 784], "estimator": {"name": "iwae", "k": 1000}, "seed": 0}]
        },
    )

    inputs: list[Image] = Field(
        min_length=1, description="Inputs of the model's input_shape: flat, or nested (28 x 28 lists for MNIST models)"
    )
    scale: Scale = Field("unit", description=SCALE_TEXT)
    estimator: EstimatorIn = Field(
        default_factory=lambda: EstimatorIn(name=DEFAULT_SPEC.name, k=DEFAULT_SPEC.k, order=None)
    )
    seed: int = Field(0, ge=0, lt=2**63, description="Same seed, same request, same answer")
    binarize: Binarize | None = Field(
        None,
        description="Bernoulli models: 'sample' (the default: Bernoulli(x) draws that are a function of each input "
        "and the checkpoint's protocol seed, the same whatever the request's seed), 'resample' (fresh draws from the "
        "request's seed), or 'threshold' (x > 0.5); "
        "'none' only for inputs that are already 0/1 or for models with a continuous likelihood (their default)",
    )
    diagnostics: bool = Field(True, description="Include the variance diagnostics per input")
    sampler: SamplerIn = Field(
        default_factory=SamplerIn, description="importance (default) or ais; k is then the chains"
    )


class Diagnostics(BaseModel):
    """docs/estimators.md; ``null`` where undefined (k-hat needs k >= 25)."""

    ess: float | None
    ess_fraction: float | None
    max_weight: float | None
    log_weight_var: float | None
    khat: float | None
    khat_threshold: float = Field(description="k-hat above this: the estimate is unreliable")
    delta_bias: float | None
    delta_var: float | None
    jackknife_var: float | None


class SubsetInfo(BaseModel):
    left_out: int = Field(description="j: the Lbar_{k-j} term")
    method: Literal["exact"] = Field("exact", description="always exact: a JVI that cannot be is refused with 422")
    num_subsets: int


class CertificateOut(BaseModel):
    """A BDMC measurement of an AIS setting on inputs simulated from the checkpoint (docs/estimators.md,
    "Certified AIS"): the gap between reverse and forward AIS bounds the mean bias of ``chains`` chains."""

    setting: SamplerIn
    plan: str = Field(description="The setting in the plan's text, e.g. ais:400")
    checkpoint: str = Field(description="sha256 of the checkpoint file it was measured on")
    chains: int = Field(description="Chains each way; it covers estimates with at least this many")
    inputs: int = Field(description="Inputs simulated from the model")
    mean_gap: float = Field(description="Mean BDMC gap (nats) over the simulated inputs")
    gap_std_err: float = Field(description="Its standard error over inputs")
    gap_bound: float = Field(description="mean_gap + 1.645 gap_std_err: the gap's one-sided 95% upper bound")
    log_w_var: float = Field(description="Forward log-weights' variance over chains, averaged over the inputs")
    seed: int
    seconds: float = Field(description="Compute time of this measurement")
    created: str = Field(description="When it was measured (UTC, ISO 8601)")


class EstimatorOut(BaseModel):
    name: str
    k: int
    order: int | None = None
    subsets: list[SubsetInfo] = Field(default_factory=list, description="How each leave-j-out average was computed")
    std_err_formula: str
    sampler: SamplerIn = Field(
        default_factory=SamplerIn, description="What produced the log-weights, defaults filled in"
    )
    certificate: CertificateOut | None = Field(
        None, description="AIS: the model's certificate of the setting that ran, where one covers these chains"
    )


class Binarization(BaseModel):
    """Which binarisation ran: ``sample`` draws Bernoulli(x) as a function of each input and the
    checkpoint's protocol ``seed`` (identical in every request, batch, route, job chunk and replica);
    ``resample`` draws them from the request's ``seed``; ``threshold`` is x > ``threshold``."""

    method: Binarize
    threshold: float | None = None
    seed: int | None = Field(None, description="sample: the checkpoint's protocol seed; resample: the request's")


class InputEstimate(BaseModel):
    log_px: float | None = Field(description="Estimate of log p(x) in nats (null if not finite)")
    std_err: float | None = Field(description="Monte Carlo standard error of log_px (see std_err_formula)")
    diagnostics: Diagnostics | None = None
    verdict: Verdict
    sampler_stats: SamplerStats | None = None
    bits_per_dim: float | None = Field(
        None,
        description="-log2 p(x) per dimension: for binary and 8-bit data as it is, for a density on [0, 1] read at 8-bit "
        "resolution (+8 bits); null for real-valued data or where log_px is null",
    )


class Timing(BaseModel):
    queue_s: float
    compute_s: float
    total_s: float


class EvidenceResponse(BaseModel):
    model: str
    device: str
    estimator: EstimatorOut
    binarization: Binarization
    seed: int
    results: list[InputEstimate]
    reruns: list[RerunCost] = Field(
        default_factory=list, description="What each distinct rerun the verdicts advise costs here, and how to run it"
    )
    timing: Timing


class CompareEstimatorIn(EstimatorIn):
    """An estimator of a comparison, with its sampler: importance entries share each replicate's draw
    (the first k of it), each AIS entry runs its own k chains."""

    model_config = ConfigDict(extra="forbid")

    sampler: SamplerIn = Field(default_factory=SamplerIn)


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Image] = Field(min_length=1)
    scale: Scale = Field("unit", description=SCALE_TEXT)
    estimators: list[CompareEstimatorIn] = Field(min_length=1, max_length=16)
    replicates: int = Field(10, ge=2, description="Independent draws; at most the server's max_replicates")
    seed: int = Field(0, ge=0, lt=2**63)
    reference: CompareEstimatorIn | None = Field(
        None,
        description="e.g. {'name': 'iwae', 'k': 5000} (shares each replicate's draw) or "
        "{'name': 'iwae', 'k': 32, 'sampler': {'name': 'ais', 'steps': 1000}}",
    )
    binarize: Binarize | None = None


class EstimatorSummary(BaseModel):
    estimator: EstimatorOut
    mean: list[float | None] = Field(description="Per input: mean over replicates")
    sd: list[float | None] = Field(description="Per input: standard deviation across replicates")
    diff_to_reference: list[float | None] | None = Field(None, description="Per input: mean(estimator - reference)")
    mean_over_inputs: float | None
    sd_over_inputs: float | None = Field(description="Root mean square of the per-input sd")
    verdicts: list[Verdict] = Field(description="Per input: the verdict on this estimator's first replicate")


class CompareResponse(BaseModel):
    model: str
    device: str
    replicates: int
    seed: int
    binarization: Binarization
    reference: EstimatorSummary | None
    estimators: list[EstimatorSummary]
    reruns: list[RerunCost] = Field(
        default_factory=list, description="What each distinct rerun the verdicts advise costs here, and how to run it"
    )
    timing: Timing


class ModelSummary(BaseModel):
    name: str
    family: str | None
    status: Literal["loading", "ready", "failed"]
    reason: str | None = None
    device: str | None = None
    capabilities: list[Literal["evidence", "compare", "bdmc", "jobs", "posterior", "predict"]] = Field(
        default_factory=list, description="What the model's type can answer (the endpoints of the same names)"
    )
    dataset: str | None = Field(None, description="The data set it was trained on, as its checkpoint names it")
    domain: str | None = Field(
        None, description="What its inputs are: binary (binarised on the way in), unit ([0, 1]), uint8 or real"
    )


class SkippedFile(BaseModel):
    file: str = Field(description="The file's name in the checkpoint directory")
    reason: str


class ModelList(BaseModel):
    models: list[ModelSummary]
    default_model: str | None = Field(
        None, description="The model a client offers first (LOGPX_DEFAULT_MODEL), where it is served and ready"
    )
    skipped: list[SkippedFile] = Field(default_factory=list, description="Checkpoint files not served, and why")


class ModelDetail(ModelSummary):
    sha256: str | None = None
    input_shape: list[int] | None = None
    likelihood: str | None = None
    bits_per_dim: str | None = Field(
        None, description="How results' bits_per_dim are read for this model, with every constant in them"
    )
    metadata: dict[str, Any] | None = Field(
        None, description="The checkpoint's metadata document (docs/checkpoints.md)"
    )
    defaults: dict[str, Any]


class Health(BaseModel):
    status: str
    models: dict[str, str] | None = None
    jobs: str | None = Field(None, description="What is wrong with the job runner or its store (null: nothing)")


# Open Inference Protocol (KServe v2) subset.
class InferTensor(BaseModel):
    name: str
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=2, description="[B, *input_shape] or [B, D]")
    datatype: Literal["FP32", "FP64", "UINT8", "INT32", "INT64"]
    data: list[float] | list[list[float]] | list[list[list[float]]]
    parameters: dict[str, Any] | None = None


class InferParameters(BaseModel):
    """The request's ``parameters``: validated as strictly as the JSON routes' fields."""

    model_config = ConfigDict(extra="forbid")

    estimator: Literal["elbo", "iwae", "jvi"] = DEFAULT_SPEC.name
    k: int = Field(DEFAULT_SPEC.k, ge=2, description="Importance samples or AIS chains per input")
    order: int | None = Field(None, ge=1, description="JVI order, below k (jvi only)")
    seed: int = Field(0, ge=0, lt=2**63)
    binarize: Binarize | None = None
    scale: Scale | None = Field(None, description="default 'byte' for UINT8 data, else 'unit'; " + SCALE_TEXT)
    sampler: SamplerIn = Field(default_factory=SamplerIn)


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferTensor] = Field(min_length=1, max_length=1)
    parameters: InferParameters = Field(default_factory=InferParameters)


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Literal["FP64", "BYTES"]
    data: list[float | None] | list[str]


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[InferOutput]


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = Field(None, description="The request field at fault")
    limit: Any = Field(None, description="The limit that field broke")
    errors: list[dict[str, Any]] | None = None
    instance: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    return {
        s: {
            "model": Problem,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for s in statuses
    }


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Image] = Field(min_length=1, description="Inputs of the model's input_shape, flat or nested")
    scale: Scale = Field("unit", description=SCALE_TEXT)
    labels: list[int] | None = Field(None, description="True classes (0..9), one per input: adds log p(y | x, D)")
    k: int = Field(100, ge=2, description="Posterior weight samples (at most the server's max_k)")
    order: int = Field(1, ge=1, description="JVI order for the predictive log-likelihood, < k")
    seed: int = Field(0, ge=0, lt=2**63)
    diagnostics: bool = True


class Entropy(BaseModel):
    total: float = Field(description="Entropy of the predictive distribution, nats")
    aleatoric: float = Field(description="Expected entropy under the posterior")
    epistemic: float = Field(description="Mutual information between the label and the weights (total - aleatoric)")


class LogLikelihood(BaseModel):
    label: int
    iwae: float | None = Field(description="log (1/k) sum_i p(y | x, w_i): biased low by O(1/k)")
    jvi: float | None = Field(description="Jackknife-corrected estimate of the given order")
    std_err: float | None
    diagnostics: Diagnostics | None = None
    verdict: Verdict


class Prediction(BaseModel):
    probs: list[float]
    predicted: int
    entropy: Entropy
    log_likelihood: LogLikelihood | None = None


class PredictResponse(BaseModel):
    model: str
    device: str
    k: int
    order: int
    seed: int
    predictions: list[Prediction]
    timing: Timing


class PosteriorRequest(BaseModel):
    """One input of a model with a 2-D latent: its posterior on a grid, for the page's heat map."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Image] = Field(min_length=1, max_length=1, description="Exactly one input")
    scale: Scale = Field("unit", description=SCALE_TEXT)
    seed: int = Field(0, ge=0, lt=2**63)
    binarize: Binarize | None = None
    grid: int = Field(80, ge=10, le=200, description="Cells per axis")


class PosteriorResponse(BaseModel):
    model: str
    binarization: Binarization
    z1: list[float] = Field(description="Cell midpoints along the first latent axis (the rows of log_density)")
    z2: list[float] = Field(description="Cell midpoints along the second latent axis (the columns)")
    log_density: list[list[float]] = Field(description="log p(z | x) at each cell: log p(x, z) - log_px")
    log_px: float = Field(description="log p(x) by the midpoint rule on this grid")
    q_mean: list[float] = Field(description="Mean of q(z | x), from draws")
    q_cov: list[list[float]] = Field(description="Covariance of q(z | x), from draws: the page's ellipse")
    edge_mass: float = Field(
        description="Posterior mass in the grid's outer ring of cells: near 0 when the grid holds it"
    )
    verdict: Verdict
    timing: Timing


class BDMCRequest(BaseModel):
    """Certify an AIS setting on data simulated from the model itself (Grosse et al. 2015)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"num_inputs": 8, "k": 16, "sampler": {"name": "ais", "steps": 1000}, "seed": 0}]
        },
    )

    num_inputs: int = Field(8, ge=1, description="Inputs simulated from the model: z ~ p(z), x ~ p(x | z)")
    k: int = Field(16, ge=2, description="AIS chains per input, forward and reverse each")
    sampler: SamplerIn = Field(
        default_factory=lambda: SamplerIn(name="ais"), description="The AIS setting to certify (name must be 'ais')"
    )
    seed: int = Field(0, ge=0, lt=2**63)


class BDMCInput(BaseModel):
    lower: float | None = Field(description="Forward AIS: a stochastic lower bound on log p(x)")
    upper: float | None = Field(description="Reverse AIS from the exact posterior sample: a stochastic upper bound")
    gap: float | None = Field(description="upper - lower: bounds this AIS setting's error on such data")
    lower_std_err: float | None
    upper_std_err: float | None
    acceptance: float | None = Field(description="Forward AIS mean HMC acceptance")
    verdict: Verdict = Field(description="The verdict on the forward AIS estimate (lower)")


class BDMCResponse(BaseModel):
    model: str
    device: str
    k: int
    seed: int
    sampler: SamplerIn
    results: list[BDMCInput]
    mean_lower: float | None
    mean_upper: float | None
    mean_gap: float | None = Field(description="The gap averaged over inputs: the setting's certificate")
    mean_gap_std_err: float | None = Field(
        description="Monte Carlo standard error of mean_gap (a gap within ~2 of 0 is 0)"
    )
    timing: Timing


class EstimateEstimatorIn(BaseModel):
    """An estimator on the given log-weights: ``k`` defaults to every row."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["elbo", "iwae", "jvi"]
    k: int | None = Field(None, ge=2, description="Use the first k rows (default: all)")
    order: int | None = Field(None, ge=1, description="JVI order m, 1 <= m < k; jvi only (default 1)")


class EstimateRequest(BaseModel):
    """Log-weights you computed with any model: ``log_weights[i][b]`` = log p(x_b, z_i) - log q(z_i | x_b)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"log_weights": [[-90.1, -88.7], [-89.5, -91.0], [-90.3, -87.9]], "estimators": [{"name": "iwae"}]}
            ]
        },
    )

    log_weights: list[list[float]] = Field(min_length=2, description="[k, B]: k rows of B columns; -Infinity allowed")
    estimators: list[EstimateEstimatorIn] = Field(
        default_factory=lambda: [EstimateEstimatorIn(name="iwae")], min_length=1, max_length=16
    )
    discrete: bool = Field(False, description="The likelihood is a probability mass: log p(x) > 0 is impossible")
    diagnostics: bool = True


class EstimatorResults(BaseModel):
    estimator: EstimatorOut
    results: list[InputEstimate]


class EstimateResponse(BaseModel):
    k: int = Field(description="Rows of the log-weights received")
    inputs: int = Field(description="Columns (B)")
    estimators: list[EstimatorResults]
    timing: Timing


class CertifyRequest(BaseModel):
    """Find the fewest AIS temperatures whose BDMC gap on data simulated from the model is under ``tolerance``
    nats at 95% confidence, for the given leapfrog count, start and schedule."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tolerance": 0.1}]})

    tolerance: float = Field(0.1, gt=0, le=5, description="Nats of BDMC gap the setting must stay under")
    leapfrog: int = Field(10, ge=1, le=100)
    init: Literal["encoder", "prior"] = "encoder"
    schedule: Literal["sigmoid", "linear", "geometric"] = "sigmoid"
    inputs: int = Field(16, ge=2, le=256, description="Inputs simulated from the model")
    chains: int = Field(16, ge=2, le=1000, description="Chains each way; the certificate covers at least this many")
    seed: int = Field(0, ge=0, le=2**63 - 1)


class CertifyResponse(BaseModel):
    """Where a certification stands: ``certified`` (a stored certificate meets the tolerance: ``certificate``),
    ``running`` (poll ``GET /v1/models/{name}/certificates``), ``uncertified`` (no setting up to the largest
    tried meets it) or ``failed`` (``error``)."""

    model: str
    status: Literal["certified", "running", "uncertified", "failed"]
    tolerance: float
    request: CertifyRequest
    certificate: CertificateOut | None = None
    trials: list[CertificateOut] = Field(default_factory=list, description="Settings measured so far, in order")
    expected_s: float | None = Field(
        None, description="running: expected compute time of the trials up to 800 steps at this server's speed"
    )
    error: str | None = None
    note: str


class CertificatesResponse(BaseModel):
    model: str
    checkpoint: str
    certificates: list[CertificateOut]
    certifications: list[CertifyResponse] = Field(
        description="Certifications of this file asked of this model, oldest first (with a job store, every replica's)"
    )
