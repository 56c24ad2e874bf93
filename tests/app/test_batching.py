"""Determinism under concurrency, and dynamic batching that keeps each request's own answer."""

from __future__ import annotations

import re
import threading

import pytest
import torch
from fastapi.testclient import TestClient

from logpx import EstimatorSpec, estimate
from logpx.app.worker import BatchItem, finish_batch

from ..helpers import digit_image, make_client, wait_ready

IMAGES = [(digit_image(i) / 255.0).reshape(-1).tolist() for i in range(3)]


def _body(seed: int, estimator: dict | None = None, diagnostics: bool = True) -> dict:
    return {
        "inputs": [IMAGES[seed % 3]],
        "estimator": estimator or {"name": "jvi", "k": 200, "order": 1},
        "seed": seed,
        "binarize": "sample",
        "diagnostics": diagnostics,
    }


def _concurrently(client: TestClient, bodies: list[dict]) -> list[dict]:
    out: list = [None] * len(bodies)

    def send(i: int) -> None:
        out[i] = client.post("/v1/models/tiny/evidence", json=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in out), [r.text for r in out if r.status_code != 200]
    return [r.json() for r in out]


def test_same_seed_same_numbers_when_sent_concurrently(checkpoint_dir) -> None:  # type: ignore[no-untyped-def]
    with make_client(checkpoint_dir, queue_depth=64) as client:
        wait_ready(client)
        alone = client.post("/v1/models/tiny/evidence", json=_body(7)).json()["results"]
        crowd = _concurrently(client, [_body(7)] + [_body(s) for s in range(20, 35)] + [_body(7)])
    assert crowd[0]["results"] == alone and crowd[-1]["results"] == alone


@pytest.mark.parametrize(
    ("estimator", "diagnostics"),
    [
        ({"name": "jvi", "k": 200, "order": 1}, True),  # one estimate call serves the whole batch
        ({"name": "iwae", "k": 100}, False),
        ({"name": "jvi", "k": 60, "order": 3}, False),  # exact enumeration of C(60, 3) subsets
    ],
)
def test_dynamic_batching_coalesces_and_keeps_each_answer(checkpoint_dir, estimator: dict, diagnostics: bool) -> None:  # type: ignore[no-untyped-def]
    bodies = [_body(s, estimator, diagnostics) for s in range(16)]
    with make_client(checkpoint_dir) as plain:
        wait_ready(plain)
        solo = [plain.post("/v1/models/tiny/evidence", json=b).json() for b in bodies]
    with make_client(checkpoint_dir, batch_max_inputs=64, batch_delay_ms=200, queue_depth=64) as batched:
        wait_ready(batched)
        together = _concurrently(batched, bodies)
        metrics = batched.get("/metrics").text
    for want, got in zip(solo, together):
        # Same draws; the forward pass over a bigger batch may round the last float32 bit differently,
        # which a JVI of order 3 amplifies by its O(k^3) coefficients: compare against its own error bar.
        w, g = want["results"][0], got["results"][0]
        assert g["log_px"] == pytest.approx(w["log_px"], rel=1e-5, abs=1e-4 * w["std_err"])
        assert g["std_err"] == pytest.approx(w["std_err"], rel=1e-3)
        assert got["estimator"] == want["estimator"]
        if diagnostics:
            assert g["diagnostics"].keys() == w["diagnostics"].keys()
            for name, value in w["diagnostics"].items():
                # k-hat is a fit to the largest weights: a last-bit change in them moves it by up to 1e-3,
                # far under its own Monte Carlo error (about 0.05 at these k).
                assert g["diagnostics"][name] == pytest.approx(value, rel=1e-3, abs=1e-3 if name == "khat" else 1e-6), (
                    name
                )
        else:
            assert g["diagnostics"] is None
    passes = float(re.search(r"logpx_batch_requests_count (\S+)", metrics).group(1))
    assert passes < len(bodies), "no requests were coalesced"


def test_a_failing_shared_estimate_falls_back_to_each_request_alone() -> None:
    """One request whose log-weights are not finite fails alone; its batch-mates keep their answers."""
    spec = EstimatorSpec("jvi", 50, 1)
    log_w = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    log_w[7, 1] = float("nan")
    calls = []

    def item(size: int) -> BatchItem:
        def est(lw: torch.Tensor, check):  # type: ignore[no-untyped-def]
            calls.append(lw.shape[1])
            return estimate(lw, spec)

        return BatchItem(
            key="k",
            size=size,
            prepare=lambda: None,
            forward=lambda *a: None,  # type: ignore[arg-type, return-value]
            estimate=est,
            finish=lambda e, cols: e.log_px[cols],
        )

    outcomes = finish_batch([item(1), item(1), item(1)], log_w)
    assert calls == [3, 1, 1, 1]  # the shared call failed, then one per request
    assert [kind for kind, _ in outcomes] == ["result", "error", "result"]
    assert float(outcomes[0][1]) == float(estimate(log_w[:, :1], spec).log_px)
    assert float(outcomes[2][1]) == float(estimate(log_w[:, 2:], spec).log_px)


def test_background_work_never_takes_a_waiting_requests_place() -> None:
    """queue_depth counts requests only: a job's chunk, handed over while a request runs, must not make the
    next request a 503 (its wake-up marker once took a queue slot)."""
    import asyncio
    import threading

    from logpx.app.worker import DeviceWorker

    async def scenario() -> list[object]:
        worker = DeviceWorker("cpu", queue_depth=1, retry_after_s=1)
        worker.start()
        gate = threading.Event()
        try:
            running = asyncio.create_task(worker.submit(lambda ctx: gate.wait(10), 30))
            await asyncio.sleep(0.2)  # the worker is busy with it
            chunk = asyncio.create_task(worker.submit_background(lambda ctx: "chunk", 30))
            await asyncio.sleep(0.1)
            waiting = asyncio.create_task(worker.submit(lambda ctx: "request", 30))  # the one place in the queue
            await asyncio.sleep(0.1)
            assert worker.depth == 1
            gate.set()
            return [(await t).value for t in (running, waiting, chunk)]
        finally:
            gate.set()
            worker.stop()

    assert asyncio.run(scenario()) == [True, "request", "chunk"]
