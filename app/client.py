"""Python client for the logpx HTTP API (httpx).

from logpx.app.client import LogpxClient
with LogpxClient("http://127.0.0.1:8000") as client:
    result = client.evidence("vae1-iwae50", images, estimator={"name": "jvi", "k": 1000, "order": 1})
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = ["LogpxClient", "LogpxError"]


class LogpxError(RuntimeError):
    """An error response; ``problem`` holds its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")
        self.status = status
        self.problem = problem


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
        estimator: dict[str, Any] | None = None,
        seed: int = 0,
        binarize: str | None = None,
        scale: str = "unit",
        diagnostics: bool = True,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"inputs": _as_lists(inputs), "seed": seed, "scale": scale, "diagnostics": diagnostics}
        if estimator:
            body["estimator"] = estimator
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
        sampler: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Image files scored by ``estimator`` with ``k`` samples (the server's defaults where ``None``);
        ``sampler`` such as ``{"name": "ais", "steps": 1000}``."""
        form: dict[str, Any] = {"seed": str(seed)}
        if estimator is not None:
            form["estimator"] = estimator
        if k is not None:
            form["k"] = str(k)
        if order is not None:
            form["order"] = str(order)
        for key, value in (sampler or {}).items():
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
        estimators: list[dict[str, Any]],
        *,
        replicates: int = 10,
        seed: int = 0,
        reference: dict[str, Any] | None = None,
        binarize: str | None = None,
        scale: str = "unit",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "inputs": _as_lists(inputs),
            "estimators": estimators,
            "replicates": replicates,
            "seed": seed,
            "scale": scale,
        }
        if reference:
            body["reference"] = reference
        if binarize:
            body["binarize"] = binarize
        return self._json(self._http.post(f"/v1/models/{model}/compare", json=body))

    def bdmc(
        self, model: str, *, num_inputs: int = 8, k: int = 16, sampler: dict[str, Any] | None = None, seed: int = 0
    ) -> dict[str, Any]:
        """Forward and reverse AIS on inputs simulated from the model: the AIS setting's gap."""
        body: dict[str, Any] = {"num_inputs": num_inputs, "k": k, "seed": seed}
        if sampler:
            body["sampler"] = sampler
        return self._json(self._http.post(f"/v1/models/{model}/bdmc", json=body))

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
