"""The job store: SQLAlchemy Core over SQLite (one file, WAL mode) or PostgreSQL, its schema made by the
Alembic migrations beside this file. Every write is one transaction; a chunk's result rows, the job's
progress and its running summary commit together, so that a killed server loses no finished row and
writes none twice (the rows' primary key is (job, index)).

Several replicas share one database: a job is run by whoever holds its lease (``lease_owner`` until
``lease_expires``), taken with one conditional UPDATE and renewed while the job runs; a replica that dies
stops renewing, and another takes the job over from its last committed chunk once the lease runs out.
Certifications (searches for a certified AIS setting) are held the same way, and go on from their stored trials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from logpx.certificate import Certificate
from logpx.plan import Plan

__all__ = ["ACTIVE", "TERMINAL", "CertificationRow", "DatasetRow", "JobRow", "JobStore", "open_store"]

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 74_105_230  # PostgreSQL advisory lock: replicas starting together migrate one at a time

metadata = sa.MetaData()
datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("input_shape", sa.Text, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("labels", sa.LargeBinary, nullable=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("dataset", sa.String(64), sa.ForeignKey("datasets.sha256"), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("plan", sa.Text, nullable=False, server_default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False),
    sa.Column("chunk_size", sa.Integer, nullable=False),
    sa.Column("compute_s", sa.Float, nullable=False),
    sa.Column("result_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("cancel", sa.Boolean, nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires", sa.Float, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("started", sa.Float, nullable=True),
    sa.Column("finished", sa.Float, nullable=True),
    sa.Column("comparison", sa.String(32), nullable=True),
    sa.Index("jobs_created", "created"),
    sa.Index("jobs_owner_state", "owner", "state"),
    sa.Index("jobs_comparison", "comparison"),
)
results = sa.Table(
    "results",
    metadata,
    sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("row", sa.Text, nullable=False),
)
certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("checkpoint", sa.String(64), nullable=False),
    sa.Column("setting", sa.String(128), nullable=False),
    sa.Column("certificate", sa.Text, nullable=False),  # Certificate.to_json()
    sa.Column("created", sa.Float, nullable=False),
    sa.Index("certificates_checkpoint", "checkpoint"),
)
certifications = sa.Table(
    "certifications",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("checkpoint", sa.String(64), nullable=False),
    sa.Column("request", sa.Text, nullable=False),  # the certify request's JSON
    sa.Column("state", sa.String(16), nullable=False),  # running, certified, uncertified, failed
    sa.Column("chosen", sa.Text, nullable=True),  # Certificate.to_json() of the certified setting
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("expected_s", sa.Float, nullable=True),
    sa.Column("lease_owner", sa.String(32), nullable=True),
    sa.Column("lease_expires", sa.Float, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("finished", sa.Float, nullable=True),
    sa.Index("certifications_checkpoint", "checkpoint"),
)


class QuotaExceeded(Exception):
    """The owner has ``active`` queued or running jobs already."""

    def __init__(self, active: int) -> None:
        super().__init__(f"{active} active jobs")
        self.active = active


@dataclass(frozen=True)
class DatasetRow:
    sha256: str
    count: int
    input_shape: list[int]
    source: str
    size_bytes: int


@dataclass(frozen=True)
class JobRow:
    id: str
    owner: str
    model: str
    dataset: str
    request: dict[str, Any]
    plan_text: str  # the job's plan (logpx.plan grammar); empty for jobs stored before it had a column
    state: str
    total: int
    done: int
    chunk_size: int
    compute_s: float
    result_bytes: int
    summary: dict[str, Any]
    error: str | None
    cancel: bool
    lease_owner: str | None
    lease_expires: float | None
    created: float
    started: float | None
    finished: float | None
    comparison: str | None  # the comparison it is one model of (None: a job of its own)

    @property
    def plan(self) -> Plan:
        """What the job runs; jobs stored before the plan column name their entries in the same grammar."""
        return Plan.parse(self.plan_text or " ".join(self.request["names"]))


@dataclass(frozen=True)
class CertificationRow:
    """A certification: ``model`` (the name it was asked of) and the ``checkpoint`` file's sha256, the certify
    ``request``, its ``state`` and, once ended, the ``chosen`` certificate or the ``error``."""

    id: str
    model: str
    checkpoint: str
    request: dict[str, Any]
    state: str
    chosen: Certificate | None
    error: str | None
    expected_s: float | None
    lease_owner: str | None
    lease_expires: float | None
    created: float
    finished: float | None


def _certification(row: sa.Row[Any]) -> CertificationRow:
    m = dict(row._mapping)
    chosen = Certificate.from_json(json.loads(m["chosen"])) if m["chosen"] else None
    return CertificationRow(**{**m, "request": json.loads(m["request"]), "chosen": chosen})


def _job(row: sa.Row[Any]) -> JobRow:
    m = dict(row._mapping)
    m["plan_text"] = m.pop("plan")
    return JobRow(**{**m, "request": json.loads(m["request"]), "summary": json.loads(m["summary"])})


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (status, results, events) never wait for the chunk being committed; NORMAL sync is
    # durable across a killed process (only a power loss can drop the last commits).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class JobStore:
    """All reads and writes of jobs, data sets and results. Blocking: call from threads, not the event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        # SQLite serves one process (replicas use PostgreSQL): a lock here makes a quota's count and insert atomic.
        self._quota_lock = threading.Lock()
        if url.startswith("sqlite"):
            database = sa.engine.make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(url, connect_args={"check_same_thread": False})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is there already)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    # Data sets ---------------------------------------------------------------------------------------

    def put_dataset(
        self, sha256: str, count: int, input_shape: list[int], source: str, data: bytes, labels: bytes | None
    ) -> DatasetRow:
        """Store a data set once: a second upload of the same content finds the first."""
        size = len(data) + len(labels or b"")
        with self.engine.begin() as c:
            if c.execute(sa.select(datasets.c.sha256).where(datasets.c.sha256 == sha256)).first() is None:
                try:
                    with c.begin_nested():
                        c.execute(
                            datasets.insert().values(
                                sha256=sha256,
                                count=count,
                                input_shape=json.dumps(input_shape),
                                source=source,
                                data=data,
                                labels=labels,
                                size_bytes=size,
                                created=time.time(),
                            )
                        )
                except sa.exc.IntegrityError:
                    pass  # the same data set, stored by another request just now
        return DatasetRow(sha256, count, input_shape, source, size)

    def has_dataset(self, sha256: str) -> bool:
        with self.engine.connect() as c:
            return c.execute(sa.select(datasets.c.sha256).where(datasets.c.sha256 == sha256)).first() is not None

    def dataset_bytes(self, sha256: str) -> tuple[bytes, bytes | None]:
        with self.engine.connect() as c:
            row = c.execute(sa.select(datasets.c.data, datasets.c.labels).where(datasets.c.sha256 == sha256)).one()
        return bytes(row.data), (bytes(row.labels) if row.labels is not None else None)

    def data_bytes(self) -> int:
        """The stored data sets' bytes."""
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.coalesce(sa.func.sum(datasets.c.size_bytes), 0))).scalar_one())

    def stored_bytes(self) -> int:
        """Data sets and result rows: what ``LOGPX_MAX_STORE_BYTES`` bounds."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(sa.func.coalesce(sa.func.sum(jobs.c.result_bytes), 0))).scalar_one()
        return self.data_bytes() + int(rows)

    def delete(self, job_id: str) -> bool:
        """Delete a finished job with its result rows, and its data set if no other job uses it; False (and
        nothing deleted) if the job is queued or running."""
        with self.engine.begin() as c:
            row = c.execute(sa.select(jobs.c.state, jobs.c.dataset).where(jobs.c.id == job_id)).first()
            if row is None or row.state not in TERMINAL:
                return False
            c.execute(results.delete().where(results.c.job_id == job_id))
            c.execute(jobs.delete().where(jobs.c.id == job_id))
            if c.execute(sa.select(jobs.c.id).where(jobs.c.dataset == row.dataset).limit(1)).first() is None:
                c.execute(datasets.delete().where(datasets.c.sha256 == row.dataset))
        return True

    def expired(self, before: float, limit: int = 100) -> list[str]:
        """Finished jobs that ended before ``before`` (a retention cut-off), oldest first."""
        with self.engine.connect() as c:
            q = (
                sa.select(jobs.c.id)
                .where(jobs.c.state.in_(TERMINAL), jobs.c.finished < before)
                .order_by(jobs.c.finished)
                .limit(limit)
            )
            return [r.id for r in c.execute(q)]

    # Jobs --------------------------------------------------------------------------------------------

    def create_job(
        self,
        owner: str,
        model: str,
        dataset: str,
        plan: Plan,
        request: dict[str, Any],
        total: int,
        chunk_size: int,
        max_active: int | None = None,
    ) -> JobRow:
        """A new queued job; with ``max_active``, ``QuotaExceeded`` if ``owner`` has that many queued or
        running already. The count and the insert are one step: concurrent submissions cannot overshoot."""
        return self.create_jobs(owner, [model], dataset, plan, request, total, chunk_size, max_active)[0]

    def create_jobs(
        self,
        owner: str,
        models: list[str],
        dataset: str,
        plan: Plan,
        request: dict[str, Any],
        total: int,
        chunk_size: int,
        max_active: int | None = None,
        comparison: str | None = None,
    ) -> list[JobRow]:
        """One queued job per model, all or none, in one transaction (a comparison's, when ``comparison``
        is given); with ``max_active``, ``QuotaExceeded`` unless ``owner`` has room for all of them."""
        ids = [uuid.uuid4().hex for _ in models]
        with self._quota_lock, self.engine.begin() as c:
            if max_active is not None:
                if c.dialect.name == "postgresql":  # replicas: one submitter per owner at a time, database-wide
                    key = int.from_bytes(hashlib.sha256(owner.encode()).digest()[:7], "big")
                    c.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
                active = c.execute(
                    sa.select(sa.func.count()).select_from(jobs).where(jobs.c.owner == owner, jobs.c.state.in_(ACTIVE))
                ).scalar_one()
                if active + len(models) > max_active:
                    raise QuotaExceeded(int(active))
            now = time.time()
            for job_id, model in zip(ids, models, strict=True):
                c.execute(
                    jobs.insert().values(
                        id=job_id,
                        owner=owner,
                        model=model,
                        dataset=dataset,
                        request=json.dumps(request),
                        plan=str(plan),
                        state="queued",
                        total=total,
                        done=0,
                        chunk_size=chunk_size,
                        compute_s=0.0,
                        summary="{}",
                        cancel=False,
                        created=now,
                        comparison=comparison,
                    )
                )
        created = [self.get(job_id) for job_id in ids]
        assert all(job is not None for job in created)
        return [job for job in created if job is not None]

    def comparison_jobs(self, prefix: str) -> list[JobRow]:
        """The jobs of the comparisons whose id starts with ``prefix`` (hex, checked by the caller), in the
        order their models were given; more than one comparison id among them means an ambiguous prefix."""
        with self.engine.connect() as c:
            found = c.execute(
                jobs.select()
                .where(jobs.c.comparison.startswith(prefix, autoescape=True))
                .order_by(jobs.c.comparison, jobs.c.created, jobs.c.model)
                .limit(1000)
            ).all()
        return [_job(row) for row in found]

    def comparisons(self, limit: int, offset: int) -> tuple[list[str], int]:
        """Comparison ids, newest first, a page at a time, and how many there are in all."""
        newest = sa.func.max(jobs.c.created)
        with self.engine.connect() as c:
            ids = c.execute(
                sa.select(jobs.c.comparison)
                .where(jobs.c.comparison.is_not(None))
                .group_by(jobs.c.comparison)
                .order_by(newest.desc(), jobs.c.comparison)
                .limit(limit)
                .offset(offset)
            ).all()
            total = c.execute(
                sa.select(sa.func.count(sa.distinct(jobs.c.comparison))).where(jobs.c.comparison.is_not(None))
            ).scalar_one()
        return [r[0] for r in ids], int(total)

    def get(self, job_id: str) -> JobRow | None:
        with self.engine.connect() as c:
            row = c.execute(jobs.select().where(jobs.c.id == job_id)).first()
        return _job(row) if row is not None else None

    def find(self, prefix: str) -> list[JobRow]:
        """The jobs whose id starts with ``prefix`` (hex digits, checked by the caller), two at most: one
        names the job, two say the prefix is ambiguous."""
        with self.engine.connect() as c:
            found = c.execute(jobs.select().where(jobs.c.id.startswith(prefix, autoescape=True)).limit(2)).all()
        return [_job(row) for row in found]

    def page(self, limit: int, offset: int, owner: str | None = None) -> tuple[list[JobRow], int]:
        """A page of jobs, newest first, and how many there are in all."""
        where = [] if owner is None else [jobs.c.owner == owner]
        with self.engine.connect() as c:
            rows = c.execute(
                jobs.select().where(*where).order_by(jobs.c.created.desc(), jobs.c.id).limit(limit).offset(offset)
            ).all()
            total = c.execute(sa.select(sa.func.count()).select_from(jobs).where(*where)).scalar_one()
        return [_job(r) for r in rows], int(total)

    def cancel(self, job_id: str) -> JobRow | None:
        """Ask a job to stop: a queued one is cancelled at once, a running one at its next chunk."""
        with self.engine.begin() as c:
            c.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.state == "queued")
                .values(state="cancelled", cancel=True, finished=time.time())
            )
            c.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "running").values(cancel=True))
        return self.get(job_id)

    def claim_next(self, replica: str, lease_s: float) -> JobRow | None:
        """Take the lease of the oldest active job that nobody holds (or whose holder stopped renewing)."""
        now = time.time()
        job_id = self._claim(
            jobs,
            jobs.c.state.in_(ACTIVE),
            now,
            lease_owner=replica,
            lease_expires=now + lease_s,
            state="running",
            started=sa.func.coalesce(jobs.c.started, now),
        )
        return self.get(job_id) if job_id is not None else None

    def _claim(self, table: sa.Table, eligible: sa.ColumnElement[bool], now: float, **values: Any) -> str | None:
        """The id of the oldest ``eligible`` row of ``table`` that nobody holds (or whose holder stopped renewing
        it), now set to ``values`` (its new lease) by one conditional UPDATE, so that one replica takes it."""
        free = sa.and_(eligible, sa.or_(table.c.lease_owner.is_(None), table.c.lease_expires < now))
        with self.engine.connect() as c:
            candidates = c.execute(sa.select(table.c.id).where(free).order_by(table.c.created).limit(8)).all()
        for (row_id,) in candidates:
            with self.engine.begin() as c:
                if c.execute(table.update().where(table.c.id == row_id, free).values(**values)).rowcount == 1:
                    return str(row_id)
        return None

    def renew(self, job_id: str, replica: str, lease_s: float) -> bool:
        with self.engine.begin() as c:
            return (
                c.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id, jobs.c.lease_owner == replica, jobs.c.state == "running")
                    .values(lease_expires=time.time() + lease_s)
                ).rowcount
                == 1
            )

    def commit_chunk(
        self,
        job: JobRow,
        replica: str,
        start: int,
        rows: list[dict[str, Any]],
        summary: dict[str, Any],
        compute_s: float,
        lease_s: float,
    ) -> str:
        """Commit one chunk's rows with the job's progress: ``"ok"``, ``"cancelled"`` (asked to stop: the
        chunk is kept and the job ends), or ``"lost"`` (another replica holds the job now: nothing written)."""
        stop = start + len(rows)
        with self.engine.begin() as c:
            current = c.execute(
                sa.select(jobs.c.done, jobs.c.cancel, jobs.c.lease_owner, jobs.c.state).where(jobs.c.id == job.id)
            ).one()
            if current.lease_owner != replica or current.done != start or current.state != "running":
                return "lost"
            texts = [json.dumps(r, allow_nan=False) for r in rows]
            c.execute(
                results.insert(),
                [{"job_id": job.id, "idx": r["index"], "row": t} for r, t in zip(rows, texts, strict=True)],
            )
            finished = stop >= job.total
            values: dict[str, Any] = {
                "done": stop,
                "result_bytes": jobs.c.result_bytes + sum(len(t) for t in texts),
                "summary": json.dumps(summary, allow_nan=False),
                "compute_s": jobs.c.compute_s + compute_s,
                "lease_expires": time.time() + lease_s,
            }
            outcome = "ok"
            if finished or current.cancel:
                values |= {
                    "state": "succeeded" if finished else "cancelled",
                    "finished": time.time(),
                    "lease_owner": None,
                    "lease_expires": None,
                }
                outcome = "ok" if finished else "cancelled"
            taken = c.execute(
                jobs.update()
                .where(jobs.c.id == job.id, jobs.c.lease_owner == replica, jobs.c.done == start)
                .values(**values)
            ).rowcount
            if taken != 1:  # changed hands between the read and the write: roll the rows back
                c.rollback()
                return "lost"
        return outcome

    def finish(self, job_id: str, replica: str, state: str, error: str | None = None) -> None:
        """End a job this replica holds: ``failed`` with the reason, or ``cancelled``."""
        with self.engine.begin() as c:
            c.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.lease_owner == replica)
                .values(state=state, error=error, finished=time.time(), lease_owner=None, lease_expires=None)
            )

    def release(self, job_id: str, replica: str) -> None:
        """Give a job's lease back without ending it (this replica is stopping, or cannot run it now)."""
        with self.engine.begin() as c:
            c.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.lease_owner == replica)
                .values(lease_owner=None, lease_expires=None)
            )

    def results(self, job_id: str, after: int, limit: int) -> list[str]:
        """Up to ``limit`` result rows (JSON text) with index > ``after``, in index order."""
        with self.engine.connect() as c:
            q = (
                sa.select(results.c.row)
                .where(results.c.job_id == job_id, results.c.idx > after)
                .order_by(results.c.idx)
                .limit(limit)
            )
            return [r.row for r in c.execute(q)]

    def add_certificate(self, cert: Certificate) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                certificates.insert().values(
                    checkpoint=cert.checkpoint,
                    setting=str(cert.setting),
                    certificate=json.dumps(cert.to_json()),
                    created=cert.created,
                )
            )

    def certificates(self, checkpoint: str) -> list[Certificate]:
        """Every certificate measured on the checkpoint with this sha256, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(certificates.c.certificate)
                .where(certificates.c.checkpoint == checkpoint)
                .order_by(certificates.c.id)
            ).all()
        return [Certificate.from_json(json.loads(r.certificate)) for r in rows]

    # Certifications ----------------------------------------------------------------------------------

    def add_certification(
        self,
        model: str,
        checkpoint: str,
        request: dict[str, Any],
        expected_s: float | None,
        replica: str,
        lease_s: float,
    ) -> str:
        """A certification accepted now, running here (this replica holds its lease): its id."""
        now = time.time()
        values = {
            "id": uuid.uuid4().hex,
            "model": model,
            "checkpoint": checkpoint,
            "request": json.dumps(request),
            "state": "running",
            "expected_s": expected_s,
            "lease_owner": replica,
            "lease_expires": now + lease_s,
            "created": now,
        }
        with self.engine.begin() as c:
            c.execute(certifications.insert().values(**values))
        return str(values["id"])

    def certifications(self, checkpoint: str) -> list[CertificationRow]:
        """Every certification of the checkpoint file with this sha256, oldest first."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(certifications)
                .where(certifications.c.checkpoint == checkpoint)
                .order_by(certifications.c.created)
            ).all()
        return [_certification(r) for r in rows]

    def claim_certification(self, replica: str, lease_s: float, checkpoints: list[str]) -> CertificationRow | None:
        """Take the lease of the oldest running certification of one of ``checkpoints`` whose holder stopped
        renewing it (a server stopped or killed mid-search)."""
        now = time.time()
        running = sa.and_(certifications.c.state == "running", certifications.c.checkpoint.in_(checkpoints))
        taken = self._claim(certifications, running, now, lease_owner=replica, lease_expires=now + lease_s)
        if taken is None:
            return None
        with self.engine.connect() as c:
            return _certification(c.execute(sa.select(certifications).where(certifications.c.id == taken)).one())

    def renew_certification(self, certification_id: str, replica: str, lease_s: float) -> bool:
        """Hold a running certification for ``lease_s`` more; False if another replica holds it now."""
        return self._held_certification(certification_id, replica, lease_expires=time.time() + lease_s)

    def end_certification(
        self, certification_id: str, replica: str, state: str, chosen: Certificate | None, error: str | None
    ) -> bool:
        """Record how a certification this replica holds ended; False if another replica holds it now."""
        return self._held_certification(
            certification_id,
            replica,
            state=state,
            chosen=json.dumps(chosen.to_json()) if chosen is not None else None,
            error=error,
            finished=time.time(),
            lease_owner=None,
            lease_expires=None,
        )

    def release_certification(self, certification_id: str, replica: str) -> None:
        """Give a running certification's lease back (this replica is stopping): the next to look takes it up."""
        self._held_certification(certification_id, replica, lease_owner=None, lease_expires=None)

    def _held_certification(self, certification_id: str, replica: str, **values: Any) -> bool:
        with self.engine.begin() as c:
            held = sa.and_(
                certifications.c.id == certification_id,
                certifications.c.lease_owner == replica,
                certifications.c.state == "running",
            )
            return c.execute(certifications.update().where(held).values(**values)).rowcount == 1


def open_store(url: str, wait_s: float) -> JobStore:
    """The job store, waiting up to ``wait_s`` for a database that is still starting (a PostgreSQL container
    started beside this one); any other error, or one that outlasts the wait, stops the service."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return JobStore(url)
        except sa.exc.OperationalError as exc:
            if time.monotonic() > deadline:
                raise
            logging.getLogger("logpx").warning("job store not reachable yet, retrying: %s", str(exc.orig).strip()[:200])
            time.sleep(1.0)
