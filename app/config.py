"""Service settings: one pydantic-settings class, every field an environment variable ``LOGPX_<NAME>``."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOGPX_", extra="ignore")

    checkpoint_dir: Path = Field(Path("checkpoints"), description="Directory whose *.safetensors files are served")
    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    default_model: str = Field(
        "vae1-iwae50", description="The model the page (and GET /v1/models's default_model) offers first, where served"
    )
    host: str = Field("127.0.0.1", description="Address uvicorn binds")
    port: int = Field(8000, ge=1, le=65535, description="Port uvicorn binds")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    http: Literal["h11", "httptools"] = Field(
        "h11",
        description="HTTP parser: 'h11' bounds header size (max_header_bytes); 'httptools' is faster but bounds "
        "nothing, for use behind nginx only",
    )
    max_header_bytes: int = Field(64 * 1024, ge=4096, description="Largest request head (line and headers) with h11")
    limit_concurrency: int = Field(
        256, ge=8, description="Requests in flight at once, health checks aside (they always answer); beyond, 503"
    )
    max_event_streams: int = Field(
        64, ge=1, description="Job event streams open at once, within limit_concurrency; beyond, 503 (poll instead)"
    )
    timeout_keep_alive_s: int = Field(5, ge=1, description="Idle keep-alive connections are closed after this")

    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)")
    max_batch: int = Field(256, ge=1, description="Most inputs in one request")
    max_k: int = Field(100_000, ge=2, description="Most importance samples per input")
    max_batch_k: int = Field(2_000_000, ge=2, description="Budget on inputs x samples x replicates of one request")
    max_replicates: int = Field(100, ge=1, description="Most replicates in one compare request")
    max_order: int = Field(8, ge=1, description="Highest JVI order accepted")
    max_jackknife_elements: int = Field(
        10_000_000_000,
        ge=1,
        description="Budget on a JVI's leave-j-out work: inputs x replicates x sum_j C(k, j) (order 2: k^2 / 2 per input); "
        "about 40 s on 2 CPU cores",
    )
    max_ais_steps: int = Field(10_000, ge=1, description="Most AIS temperatures per chain")
    max_ais_evals: int = Field(
        50_000_000,
        ge=1,
        description="Budget on AIS gradient evaluations: inputs x (chains + 8 tuning chains) x (1 + (steps - 1) x "
        "leapfrog), the tuning chains over fewer steps when the chains are few (AIS.evaluations)",
    )
    max_elements: int | None = Field(
        None,
        ge=2**16,
        description="Activation elements per chunk over k (unset: 2^23 on CPU, cache-sized; 2^28 on CUDA)",
    )
    deadline_s: float = Field(120.0, gt=0, description="Compute deadline per request (504 after it)")
    ray_address: str | None = Field(
        None,
        description="Run jobs' chunks on Ray (pip install 'logpx[ray]'): auto, ray://HOST:10001, HOST:6379, or local "
        "(a Ray instance of this machine, started with the server); unset: in the server process",
    )
    ray_actors: int = Field(
        0, ge=0, description="Ray: actors per model (0: one per GPU of the cluster, else one per CPU)"
    )
    ray_actor_threads: int = Field(1, ge=1, description="Ray: torch threads of each CPU actor")
    ray_actor_cpus: float = Field(
        1.0, gt=0, description="Ray: CPUs each CPU actor reserves (below 1, a node that dies can be covered by others)"
    )
    certify_deadline_s: float = Field(
        3600.0, gt=0, description="Compute deadline of one AIS certification (POST /v1/models/{name}/certify)"
    )
    queue_depth: int = Field(8, ge=1, description="Requests waiting per device before 503")
    retry_after_s: int = Field(2, ge=1, description="Retry-After sent with 503")
    batch_max_inputs: int = Field(0, ge=0, description="Dynamic batching: most inputs coalesced into one pass (0: off)")
    batch_delay_ms: float = Field(
        2.0,
        ge=0,
        description="Dynamic batching: longest wait for companions beyond those already queued (0: take only those)",
    )
    api_token: str | None = Field(None, description="Bearer token required on every endpoint but the health checks")
    allow_no_token: bool = Field(
        False, description="Serve on a non-loopback address without LOGPX_API_TOKEN (refused unless this is true)"
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (none by default)")
    torch_threads: int = Field(
        0,
        ge=0,
        description="most torch intra-op threads (0: the CPUs the cgroup allows); AIS passes of few chains use fewer",
    )
    # Evaluation jobs (docs/jobs.md).
    data_dir: Path = Field(Path("data"), description="Where the default SQLite job store lives (data_dir/logpx.db)")
    database_url: str | None = Field(
        None, description="Job store URL, e.g. postgresql+psycopg://user:pw@host/db (default: SQLite under data_dir)"
    )
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Largest POST /v1/jobs body (413 above)")
    max_job_inputs: int = Field(100_000, ge=1, description="Most inputs in one job's data set")
    max_active_jobs: int = Field(8, ge=1, description="Queued and running jobs per API token (429 above)")
    max_store_bytes: int = Field(
        4 * 1024**3, ge=1024, description="Bytes the job store may hold: data sets and result rows (507 above)"
    )
    job_chunk_evals: int = Field(
        50_000,
        ge=1,
        description="Model evaluations per job chunk (inputs x samples; AIS: inputs x chains x steps x leapfrog): how long a "
        "request may wait behind a job",
    )
    job_retention_s: float = Field(
        30 * 24 * 3600.0,
        ge=0,
        description="Finished jobs, their rows and data sets no other job uses are deleted this long after they end (0: kept)",
    )
    job_lease_s: float = Field(
        15.0, gt=0, description="A job's lease: another replica takes it over this long after its holder dies"
    )
    job_poll_s: float = Field(1.0, gt=0, description="How often an idle replica looks for queued jobs")
    job_store_wait_s: float = Field(
        60.0, ge=0, description="At start, how long to wait for a job database that does not answer yet"
    )

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'logpx.db'}"

    @field_validator("api_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        # An empty token must not silently turn authentication off: unset the variable for that.
        if value is not None and not value.strip():
            raise ValueError("LOGPX_API_TOKEN is set but empty or blank; unset it to run without authentication")
        # A token a header can never carry would lock every client out: a secret file's trailing newline, or
        # characters beyond printable ASCII (HTTP headers are bytes; clients encode them differently).
        if value is not None and (value != value.strip() or not all(" " < c <= "~" for c in value)):
            raise ValueError(
                "LOGPX_API_TOKEN must be printable ASCII with no spaces or surrounding whitespace (a secret file's "
                "trailing newline counts); strip it"
            )
        return value

    @model_validator(mode="after")
    def _secure_by_default(self) -> Settings:
        # Listening beyond this machine with nobody asked for a token is a choice to make out loud.
        if self.api_token is None and not self.allow_no_token and not _loopback(self.host):
            raise ValueError(
                f"LOGPX_HOST={self.host} listens beyond this machine, and LOGPX_API_TOKEN is not set: set a token, "
                "or LOGPX_ALLOW_NO_TOKEN=true to serve without one"
            )
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "auto" and value != "cpu" and not value.startswith("cuda"):
            raise ValueError("device must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


@lru_cache
def get_settings() -> Settings:
    return Settings()
