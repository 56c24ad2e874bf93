"""Python client for the logpx HTTP API (httpx).

from logpx.client import LogpxClient
with LogpxClient("http://127.0.0.1:8000") as client:
    result = client.evidence("vae1-iwae50", images, estimator={"name": "jvi", "k": 1000, "order": 1})
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from .plan import Entry, EstimatorSpec, Sampler, parse_sampler

__all__ = ["LogpxClient", "LogpxError", "entry_from_request", "estimator_request", "sampler_request"]


def sampler_request(sampler: Sampler) -> dict[str, Any]:
    """A plan's sampler as the HTTP API's ``sampler`` object, every setting stated."""
    return {"name": sampler.name, **sampler.settings()}


def estimator_request(entry: Entry | str) -> dict[str, Any]:
    """A plan entry (or its text, ``jvi:1000:1`` or ``iwae:100@ais:1000``) as the HTTP API's estimator
    object with its ``sampler``."""
    e = Entry.parse(entry) if isinstance(entry, str) else entry
    order = {"order": e.spec.order} if e.spec.is_jackknife else {}
    return {"name": e.spec.name, "k": e.spec.k, **order, "sampler": sampler_request(e.sampler)}


def entry_from_request(estimator: dict[str, Any], sampler: dict[str, Any] | None = None) -> Entry:
    """The inverse of ``estimator_request``: an estimator object (and its sampler object) of the API as a
    plan entry, so that a response's ``rerun`` prints in the plan's text grammar."""
    sampler = sampler or estimator.get("sampler") or {"name": "importance"}
    settings = {key: value for key, value in sampler.items() if key != "name"}
    spec = EstimatorSpec(estimator["name"], estimator["k"], estimator.get("order") or 1)
    return Entry(spec, Sampler.registry[sampler["name"]].from_settings(settings))


class LogpxError(RuntimeError):
    """An error response; ``problem`` holds its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")
        self.status = status
        self.problem = problem


EstimatorArg = Entry | str | dict[str, Any]
SamplerArg = Sampler | str | dict[str, Any]


def _estimator(e: EstimatorArg) -> dict[str, Any]:
    """An estimator as plan text (``jvi:1000:1``, ``iwae:100@ais:1000``), a plan ``Entry``, or the API's object."""
    return e if isinstance(e, dict) else estimator_request(e)


def _estimator_with(estimator: EstimatorArg | None, k: int | None, order: int | None) -> dict[str, Any] | None:
    """An estimator from the plan's text or the API's object, or from a bare name with ``k`` and ``order``
    (the keyword form of ``evidence_images`` and the CLI); ``None`` leaves the server's default."""
    if isinstance(estimator, str) and ":" not in estimator:  # a bare name: elbo, iwae or jvi
        if k is None:
            raise TypeError(f"estimator {estimator!r} needs k (or write it as the plan's text, {estimator}:1000)")
        return {"name": estimator, "k": k, **({"order": order} if order is not None else {})}
    if k is not None or order is not None:
        if estimator is None:
            raise TypeError("k and order go with an estimator name: estimator='iwae', k=1000")
        raise TypeError("k and order go with a bare estimator name, not with the plan's text or an object")
    return None if estimator is None else dict(_estimator(estimator))


def _sampler(s: SamplerArg) -> dict[str, Any]:
    """A sampler as plan text (``ais:1000:10``), a plan ``Sampler``, or the API's object."""
    if isinstance(s, dict):
        return s
    return sampler_request(parse_sampler(s) if isinstance(s, str) else s)


def _as_lists(inputs: Any) -> list[Any]:
    """Inputs as JSON lists: a numpy array or torch tensor ``[B, ...]`` (anything with ``tolist``), or lists."""
    return inputs.tolist() if hasattr(inputs, "tolist") else list(inputs)


class LogpxClient:
    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", *, token: str | None = None, timeout: float = 300.0
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> LogpxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:500]}
            raise LogpxError(response.status_code, problem)
        return response.json()

    def ready(self) -> bool:
        try:
            return self._http.get("/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service not ready after {timeout} s")
            time.sleep(interval)

    def models(self) -> list[dict[str, Any]]:
        return self._json(self._http.get("/v1/models"))["models"]

    def model(self, name: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/models/{name}"))

    def evidence(
        self,
        model: str,
        inputs: Any,
        *,
        estimator: EstimatorArg | None = None,
        k: int | None = None,
        order: int | None = None,
        sampler: SamplerArg | None = None,
        seed: int = 0,
        binarize: str | None = None,
        scale: str = "unit",
        diagnostics: bool = True,
    ) -> dict[str, Any]:
        """``inputs`` (lists, a numpy array or a tensor) scored by ``estimator``: the plan's text
        (``iwae:1000``, ``jvi:1000:1``, ``iwae:100@ais:1000``), the API's object, or a name with ``k`` and
        ``order`` as ``evidence_images`` and ``logpx score`` take them; ``sampler`` (``"ais:1000"``) for an
        estimator that names none. The server's defaults where nothing is given."""
        body: dict[str, Any] = {"inputs": _as_lists(inputs), "seed": seed, "scale": scale, "diagnostics": diagnostics}
        chosen = _estimator_with(estimator, k, order)
        if chosen:
            body["estimator"] = chosen
            if "sampler" in chosen:
                body["sampler"] = chosen.pop("sampler")
        if sampler:
            body["sampler"] = _sampler(sampler)
        if binarize:
            body["binarize"] = binarize
        return self._json(self._http.post(f"/v1/models/{model}/evidence", json=body))

    def evidence_images(
        self,
        model: str,
        paths: Sequence[str | Path],
        *,
        estimator: str | None = None,
        k: int | None = None,
        order: int | None = None,
        seed: int = 0,
        binarize: str | None = None,
        sampler: SamplerArg | None = None,
    ) -> dict[str, Any]:
        """Image files scored by ``estimator`` (a name with ``k`` and ``order``, or the plan's text such as
        ``iwae:100@ais:1000``; the server's defaults where ``None``); ``sampler`` such as ``"ais:1000"`` or
        ``{"name": "ais", "steps": 1000}``."""
        form: dict[str, Any] = {"seed": str(seed)}
        if estimator is not None and ":" in estimator:  # the plan's text, its own k, order and sampler
            chosen = _estimator_with(estimator, k, order)
            assert chosen is not None
            sampler = chosen["sampler"] if sampler is None else sampler
            estimator, k, order = chosen["name"], chosen["k"], chosen.get("order")
        for key, value in (("estimator", estimator), ("k", k), ("order", order)):
            if value is not None:  # each left out takes the server's default
                form[key] = str(value)
        for key, value in (_sampler(sampler) if sampler else {}).items():
            if key in ("name", "steps", "leapfrog", "tolerance"):  # the form's; init and schedule keep their defaults
                form["sampler" if key == "name" else key] = str(value)
        if binarize:
            form["binarize"] = binarize
        files = []
        for p in map(Path, paths):
            kind = "image/png" if p.suffix.lower() == ".png" else "image/jpeg"
            files.append(("files", (p.name, p.read_bytes(), kind)))
        return self._json(self._http.post(f"/v1/models/{model}/evidence/images", data=form, files=files))

    def compare(
        self,
        model: str,
        inputs: Any,
        estimators: Sequence[EstimatorArg],
        *,
        replicates: int = 10,
        seed: int = 0,
        reference: EstimatorArg | None = None,
        binarize: str | None = None,
        scale: str = "unit",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "inputs": _as_lists(inputs),
            "estimators": [_estimator(e) for e in estimators],
            "replicates": replicates,
            "seed": seed,
            "scale": scale,
        }
        if reference:
            body["reference"] = _estimator(reference)
        if binarize:
            body["binarize"] = binarize
        return self._json(self._http.post(f"/v1/models/{model}/compare", json=body))

    def bdmc(
        self, model: str, *, num_inputs: int = 8, k: int = 16, sampler: SamplerArg | None = None, seed: int = 0
    ) -> dict[str, Any]:
        """Forward and reverse AIS on inputs simulated from the model: the AIS setting's gap."""
        body: dict[str, Any] = {"num_inputs": num_inputs, "k": k, "seed": seed}
        if sampler:
            body["sampler"] = _sampler(sampler)
        return self._json(self._http.post(f"/v1/models/{model}/bdmc", json=body))

    def certify(
        self,
        model: str,
        *,
        tolerance: float = 0.1,
        leapfrog: int = 10,
        init: str = "encoder",
        schedule: str = "sigmoid",
        inputs: int = 16,
        chains: int = 16,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Certify the fewest AIS steps whose BDMC gap stays under ``tolerance`` nats: ``status`` is
        ``certified`` at once when a stored certificate meets it, else ``running`` (poll ``certificates``)."""
        body = {"tolerance": tolerance, "leapfrog": leapfrog, "init": init, "schedule": schedule}
        body |= {"inputs": inputs, "chains": chains, "seed": seed}
        return self._json(self._http.post(f"/v1/models/{model}/certify", json=body))

    def certificates(self, model: str) -> dict[str, Any]:
        """The model's certificates and this server's certifications of it."""
        return self._json(self._http.get(f"/v1/models/{model}/certificates"))

    def predict(
        self,
        model: str,
        inputs: Any,
        *,
        labels: list[int] | None = None,
        k: int | None = None,
        order: int | None = None,
        seed: int = 0,
        scale: str = "unit",
    ) -> dict[str, Any]:
        """A Bayesian classifier's predictive probabilities and entropy split; with ``labels``, the
        predictive log-likelihood with its verdict. ``inputs``: lists, a numpy array or a tensor."""
        body: dict[str, Any] = {"inputs": _as_lists(inputs), "seed": seed, "scale": scale}
        for key, value in (("labels", labels), ("k", k), ("order", order)):
            if value is not None:
                body[key] = value
        return self._json(self._http.post(f"/v1/models/{model}/predict", json=body))

    # Evaluation jobs (docs/jobs.md) ----------------------------------------------------------------------

    def submit_job(
        self,
        model: str,
        data: str | Path | Any,
        *,
        estimators: Sequence[EstimatorArg] = ("iwae:5000",),
        labels: str | Path | Sequence[int] | None = None,
        seed: int = 0,
        binarize: str | None = None,
        scale: str = "unit",
    ) -> dict[str, Any]:
        """Start a job over a data set: a file (IDX, gzipped or not, ``.npy``, ``.npz`` or a zip of PNGs, with
        an optional labels file), or an array / tensor / lists of inputs (with optional labels). Returns the
        job's status (``id``, ``state``, ``links``). ``estimators`` in the plan's text (``iwae:5000``,
        ``jvi:5000:1``, ``iwae:100@ais:1000``) or as the API's objects."""
        return self._submit("/v1/jobs", {"model": model}, data, estimators, labels, seed, binarize, scale)

    def submit_comparison(
        self,
        models: Sequence[str],
        data: str | Path | Any,
        *,
        estimators: Sequence[EstimatorArg] = ("iwae:5000",),
        labels: str | Path | Sequence[int] | None = None,
        seed: int = 0,
        binarize: str | None = None,
        scale: str = "unit",
    ) -> dict[str, Any]:
        """Score several models on one data set with the same plan, seed and binary inputs (the arguments
        of ``submit_job``, with ``models`` for ``model``). Returns the comparison (``id``, ``state``,
        ``jobs``, and as they fill in ``standings`` and paired ``differences``)."""
        return self._submit(
            "/v1/comparisons", {"models": list(models)}, data, estimators, labels, seed, binarize, scale
        )

    def _submit(
        self,
        path: str,
        who: dict[str, Any],
        data: str | Path | Any,
        estimators: Sequence[EstimatorArg],
        labels: str | Path | Sequence[int] | None,
        seed: int,
        binarize: str | None,
        scale: str,
    ) -> dict[str, Any]:
        entries = [_estimator(e) for e in estimators]
        options: dict[str, Any] = {"estimators": entries, "seed": seed, **({"binarize": binarize} if binarize else {})}
        if not isinstance(data, (str, Path)):
            body = {**who, "inputs": _as_lists(data), "scale": scale, **options}
            if labels is not None:
                body["labels"] = _as_lists(labels)
            return self._json(self._http.post(path, json=body))
        form: dict[str, Any] = {**who, "seed": str(seed), "binarize": binarize or ""}
        form["estimators"] = [str(entry_from_request(e)) for e in entries]  # each with its own sampler
        files = {"data": (Path(data).name, Path(data).read_bytes(), "application/octet-stream")}
        if labels is not None:
            if not isinstance(labels, (str, Path)):
                raise TypeError("with a data-set file, labels are a file too (IDX or .npy)")
            files["labels"] = ("labels", Path(labels).read_bytes(), "application/octet-stream")
        return self._json(self._http.post(path, data=form, files=files))

    def comparison(self, comparison_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/comparisons/{comparison_id}"))

    def comparisons(self, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        return self._json(self._http.get("/v1/comparisons", params={"limit": limit, "offset": offset}))

    def cancel_comparison(self, comparison_id: str) -> dict[str, Any]:
        return self._json(self._http.delete(f"/v1/comparisons/{comparison_id}"))

    def comparison_results(self, comparison_id: str, path: str | Path) -> Path:
        """The per-input table of a comparison (CSV: every model's estimate side by side), written to ``path``."""
        response = self._http.get(f"/v1/comparisons/{comparison_id}/results")
        if response.status_code != 200:
            self._json(response)  # raises LogpxError with the problem
        Path(path).write_bytes(response.content)
        return Path(path)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/jobs/{job_id}"))

    def jobs(self, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        return self._json(self._http.get("/v1/jobs", params={"limit": limit, "offset": offset}))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._json(self._http.delete(f"/v1/jobs/{job_id}"))

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job, its result rows, and its data set if no other job uses it."""
        response = self._http.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
        if response.status_code != 204:
            self._json(response)  # raises LogpxError with the problem

    def job_events(self, job_id: str) -> Iterator[dict[str, Any]]:
        """The job's status each time it changes, from its Server-Sent Events stream, until it ends."""
        with self._http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                self._json(response)
            kind = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "progress":
                    yield json.loads(line[6:])

    def job_results(
        self, job_id: str, path: str | Path | None = None, format: str = "jsonl"
    ) -> list[dict[str, Any]] | None:
        """The rows so far: parsed (JSON lines) or, with ``path``, written to that file as ``format``."""
        with self._http.stream("GET", f"/v1/jobs/{job_id}/results", params={"format": format}) as response:
            if response.status_code >= 400:
                response.read()
                self._json(response)
            if path is None:
                return [json.loads(line) for line in response.iter_lines() if line]
            with Path(path).open("wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
        return None
