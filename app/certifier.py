"""The service's AIS certificates: which are known for each checkpoint (the job store keeps them; without a
store, this process remembers them), certifications running on the device worker below interactive
requests, and ``plan``: a request's ``steps: auto`` resolved at its door to the certified setting, or a 409
that starts the certification and says when to come back.

With a job store, no certification accepted is lost: it is stored when accepted and held by a lease, as a job
is (renewed every third of ``job_lease_s``); one whose server stopped or died is taken up by the next server
of the same checkpoint file to look (this one restarted, or another replica), and goes on from its stored
trials, which the search reuses as they stand (a trial is a function of the request's seed and its steps):
it ends where the uninterrupted search would have. Every replica sees every certification, so the same request
on two replicas runs once. Without a store a certification is this process's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from logpx.certificate import Certificate, Uncertified, resolve, weakest
from logpx.plan import AIS, Plan
from logpx.samplers import certify, certify_evaluations, duration

from . import presenter
from .config import Settings
from .errors import CertificatePending, InvalidInput, store_answers
from .jobs.store import CertificationRow, JobStore
from .registry import ModelEntry, ModelRegistry
from .schemas import CertifyRequest, CertifyResponse
from .usecases import latent_model
from .worker import DeviceWorker, TaskContext

__all__ = ["Certifier"]

log = logging.getLogger("logpx")
TYPICAL_STEPS = (50, 100, 200, 400, 800)  # the trials whose time a 202 states (more if the gap needs more)


@dataclass
class _Run:
    model: str
    checkpoint: str
    request: CertifyRequest
    status: str = "running"
    trials: list[Certificate] = field(default_factory=list)
    chosen: Certificate | None = None
    error: str | None = None
    expected_s: float | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def searches(self, cert: Certificate) -> bool:
        """``cert`` is one of the trials this search runs (or reuses): the same file, seed, inputs and chains, and
        a setting of its leapfrog count, start and schedule."""
        r, s = self.request, cert.setting
        data = (cert.checkpoint, cert.seed, cert.inputs, cert.chains) == (self.checkpoint, r.seed, r.inputs, r.chains)
        return data and (s.leapfrog, s.init, s.schedule) == (r.leapfrog, r.init, r.schedule)


def _stored(row: CertificationRow, known: list[Certificate]) -> _Run:
    """A stored certification as a run: its trials are the certificates it ran or reused (those it searches,
    measured before it ended: a later search with other tolerance may have added more of the same kind)."""
    request = CertifyRequest.model_validate(row.request)
    run = _Run(row.model, row.checkpoint, request, row.state, [], row.chosen, row.error, row.expected_s, row.id)
    run.trials = [c for c in known if run.searches(c) and (row.finished is None or c.created <= row.finished)]
    return run


F = TypeVar("F", bound=Callable[..., Any])


def _answers(method: F) -> F:
    """A method a request calls: the job store failing under it is a 503 (or a full disk a 507), not a 500."""

    @functools.wraps(method)
    def wrapped(self: Certifier, *args: Any, **kwargs: Any) -> Any:
        with store_answers(self.settings.retry_after_s):
            return method(self, *args, **kwargs)

    return wrapped  # type: ignore[return-value]


class Certifier:
    def __init__(self, worker: DeviceWorker, settings: Settings) -> None:
        self.worker, self.settings = worker, settings
        self.store: JobStore | None = None  # set by ``open`` once the job store opens
        self.replica = uuid.uuid4().hex  # this process, as lease holder
        self._known: dict[str, list[Certificate]] = {}
        self._runs: list[_Run] = []  # without a store, every run; with one, those running here
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    def known(self, entry: ModelEntry) -> list[Certificate]:
        """Every certificate of the entry's checkpoint file (by its sha256), oldest first."""
        assert entry.checkpoint is not None
        sha = entry.checkpoint.sha256
        with self._lock:
            cached = self._known.get(sha)
        if cached is None and self.store is not None:
            cached = self.store.certificates(sha)
            with self._lock:
                self._known[sha] = cached
        return list(cached or [])

    def refresh(self, entry: ModelEntry) -> None:
        """Forget the cached certificates of the entry's checkpoint: the next ``known`` reads the store."""
        assert entry.checkpoint is not None
        if self.store is not None:
            with self._lock:
                self._known.pop(entry.checkpoint.sha256, None)

    def _add(self, cert: Certificate) -> None:
        with self._lock:
            if self.store is not None:  # the store has them all: the next ``known`` reads it again
                self.store.add_certificate(cert)
                self._known.pop(cert.checkpoint, None)
            else:  # no store (jobs off): this process remembers them
                self._known.setdefault(cert.checkpoint, []).append(cert)

    @_answers
    def best(self, entry: ModelEntry, request: CertifyRequest) -> Certificate | None:
        """The stored certificate ``request`` would choose, if one meets its tolerance already."""
        try:
            plan = resolve(Plan.of(f"iwae:{request.chains}@{_auto(request)}"), self.known(entry))
        except Uncertified:
            return None
        setting = plan.entries[0].sampler
        return weakest(c for c in self.known(entry) if c.setting == setting)

    def finished(self, entry: ModelEntry, request: CertifyRequest, cert: Certificate) -> CertifyResponse:
        """The answer for a certificate already known: nothing runs."""
        return self.response(_Run(entry.name, cert.checkpoint, request, "certified", [], cert))

    def response(self, run: _Run) -> CertifyResponse:
        request = run.request
        if run.status == "running":
            note = f"certifying: {len(run.trials)} trial(s) done; poll GET /v1/models/{run.model}/certificates" + (
                f"; trials up to 800 steps take about {duration(run.expected_s)} here" if run.expected_s else ""
            )
        elif run.status == "certified":
            assert run.chosen is not None
            note = (
                f"{run.chosen.setting} keeps the BDMC gap under {request.tolerance:g} nats (95% bound "
                f"{run.chosen.gap_bound:.3f}); requests with steps auto now run it"
            )
        elif run.status == "uncertified":
            note = (
                f"no schedule up to {max(t.setting.temperatures for t in run.trials)} steps kept the gap under "
                f"{request.tolerance:g} nats: raise the tolerance or the leapfrog steps"
            )
        else:
            note = f"the certification failed: {run.error}"
        return CertifyResponse(
            model=run.model,
            status=run.status,
            tolerance=request.tolerance,
            request=request,
            certificate=presenter.certificate_out(run.chosen) if run.chosen is not None else None,
            trials=[presenter.certificate_out(t) for t in run.trials],
            expected_s=run.expected_s if run.status == "running" else None,
            error=run.error,
            note=note,
        )

    @_answers
    def runs(self, entry: ModelEntry) -> list[_Run]:
        """The certifications of the entry's checkpoint file asked of this model name, oldest first: with a store,
        every replica's (those running here as they stand now), else this process's."""
        assert entry.checkpoint is not None
        sha = entry.checkpoint.sha256
        if self.store is None:
            return [r for r in self._runs if r.model == entry.name and r.checkpoint == sha]
        mine = {r.id: r for r in self._runs}
        known = self.known(entry)
        return [
            mine.get(row.id) or _stored(row, known) for row in self.store.certifications(sha) if row.model == entry.name
        ]

    @_answers
    def start(self, entry: ModelEntry, request: CertifyRequest) -> _Run:
        """The certification of ``request`` on the entry: one running (here or on another replica, or stopped
        with its server and about to be taken up), or one that found no schedule (the same request, seed
        included, would search the same trials again to the same end), else a new one started now."""
        assert entry.checkpoint is not None
        for run in self.runs(entry):
            if run.status in ("running", "uncertified") and run.request == request:
                return run
        expected = None
        if entry.speed is not None:
            evals = sum(
                certify_evaluations(
                    AIS(steps=s, leapfrog=request.leapfrog, init=request.init, schedule=request.schedule),
                    request.inputs,
                    request.chains,
                )
                for s in TYPICAL_STEPS
            )
            expected = evals / entry.speed.gradient_per_s
        run = _Run(entry.name, entry.checkpoint.sha256, request, expected_s=expected)
        if self.store is not None:
            run.id = self.store.add_certification(
                entry.name, run.checkpoint, request.model_dump(), expected, self.replica, self.settings.job_lease_s
            )
        self._launch(entry, run)
        return run

    def _launch(self, entry: ModelEntry, run: _Run) -> None:
        self._runs.append(run)
        task = asyncio.create_task(self._certify(entry, run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _certify(self, entry: ModelEntry, run: _Run) -> None:
        request, model = run.request, latent_model(entry)
        stored = set(self.known(entry))  # trials already measured are reused, not stored again

        def trial_done(cert: Certificate) -> None:
            if cert not in stored:
                self._add(cert)
            run.trials.append(cert)

        def work(ctx: TaskContext) -> Certificate | None:
            return certify(
                model,
                request.tolerance,
                seed=request.seed,
                reuse=stored,
                leapfrog=request.leapfrog,
                init=request.init,
                schedule=request.schedule,
                inputs=request.inputs,
                chains=request.chains,
                checkpoint=run.checkpoint,
                max_steps=self.settings.max_ais_steps,  # never certify a schedule this server would refuse
                max_elements=self.settings.max_elements,
                check_fn=ctx.check,
                on_trial=trial_done,
            ).chosen

        try:
            result = await self.worker.submit_background(work, self.settings.certify_deadline_s)
            run.chosen = result.value
            run.status = "certified" if result.value is not None else "uncertified"
        except asyncio.CancelledError:  # the server is stopping: the lease goes back, the next server goes on
            if self.store is not None:
                await asyncio.to_thread(self.store.release_certification, run.id, self.replica)
            raise
        except Exception as exc:  # one failed certification never takes the service down: it says why
            log.exception("certification of %s failed", entry.name)
            run.status, run.error = "failed", getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        if self.store is not None:
            with contextlib.suppress(Exception):  # a store away: the lease runs out and another server goes on
                await asyncio.to_thread(
                    self.store.end_certification, run.id, self.replica, run.status, run.chosen, run.error
                )
            self._runs.remove(run)

    @_answers
    def plan(self, entry: ModelEntry, plan: Plan, sampler_fields: Sequence[str]) -> Plan:
        """``plan`` with ``steps: auto`` resolved by the entry's certificates. Without one, its certification
        starts (or is found running) and the request is a 409 naming the field, the certification and its time."""
        if not any(isinstance(e.sampler, AIS) and e.sampler.auto for e in plan.entries):
            return plan
        try:
            return resolve(plan, self.known(entry))
        except Uncertified:
            pass
        self.refresh(entry)  # another replica may have certified it since this one last read the store
        try:
            return resolve(plan, self.known(entry))
        except Uncertified as exc:
            s = exc.sampler
            request = CertifyRequest(tolerance=s.tolerance, leapfrog=s.leapfrog, init=s.init, schedule=s.schedule)
            run = self.start(entry, request)
            field_name = sampler_fields[exc.entry]
            if run.status == "uncertified":  # answered at once: retrying cannot help, a different request can
                raise InvalidInput(
                    f"{field_name}: {self.response(run).note}, or name the steps yourself",
                    field=f"{field_name}.steps",
                    limit={"tolerance": s.tolerance, "max_steps": self.settings.max_ais_steps},
                ) from None
            expected = f" (trials up to 800 steps take about {duration(run.expected_s)} here)" if run.expected_s else ""
            raise CertificatePending(
                f"{field_name}: {exc}; its certification is running{expected}: retry when GET "
                f"/v1/models/{entry.name}/certificates shows it certified, or name the steps yourself",
                field=f"{field_name}.steps",
                limit={"tolerance": s.tolerance, "expected_s": round(run.expected_s, 1) if run.expected_s else None},
            ) from None

    def open(self, store: JobStore, registry: ModelRegistry) -> None:
        """Keep certifications in ``store`` from now on, and take up those whose server stopped."""
        self.store = store
        task = asyncio.create_task(self._tend(registry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tend(self, registry: ModelRegistry) -> None:
        """Every third of a lease: renew the leases of the certifications running here, then take up one whose
        server stopped, if this server serves its checkpoint file."""
        assert self.store is not None
        store, lease_s = self.store, self.settings.job_lease_s
        while True:
            try:
                for run in [r for r in self._runs if r.status == "running"]:
                    await asyncio.to_thread(store.renew_certification, run.id, self.replica, lease_s)
                served = {e.checkpoint.sha256: e for e in registry.entries() if e.status == "ready" and e.checkpoint}
                row = await asyncio.to_thread(store.claim_certification, self.replica, lease_s, list(served))
                if row is not None and row.id not in {r.id for r in self._runs}:  # not one late renewing here
                    entry = served[row.checkpoint]
                    log.info("taking up the certification %s of %s (its server stopped)", row.id, row.model)
                    self._launch(entry, _stored(row, []))
            except Exception:  # a store away: try again next time; the leases held here may run out meanwhile
                log.warning("certifications: the job store did not answer", exc_info=True)
            await asyncio.sleep(lease_s / 3)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # Each run gives its lease back as it is cancelled (``_certify``).
        await asyncio.gather(*tasks, return_exceptions=True)


def _auto(request: CertifyRequest) -> str:
    return f"ais:auto:{request.leapfrog}:{request.init}:{request.schedule}:{request.tolerance}"
