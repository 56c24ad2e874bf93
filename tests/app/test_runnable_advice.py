"""Advice must be runnable (issue: the advised `logpx score ... --sampler ais:1000:10` answered `504 Compute
deadline exceeded` after 2 min 15 s, with no way out named). Every rerun comes with what it costs at this
server's measured speed and whether a request or a job can run it; a 504 names a job and a setting that fits."""

from __future__ import annotations

from pathlib import Path

import pytest

from logpx.cli import _advice
from logpx.plan import Plan
from logpx.samplers import Speed, fit_within

from ..helpers import IMAGE, assert_problem, make_client, wait_ready

ELBO = {"inputs": [IMAGE], "estimator": {"name": "elbo", "k": 30}}


def test_fit_within_halves_the_work_until_it_fits() -> None:
    speed = Speed(forward_per_s=1e6, gradient_per_s=1e4)
    plan = Plan.parse("iwae:100@ais:1000")
    assert speed.seconds(plan.cost(2)) == pytest.approx(2 * (100 + 8) * (1 + 999 * 10) / 1e4)
    fit = fit_within(plan, speed, inputs=2, seconds=60)
    assert fit is not None and speed.seconds(fit.cost(2)) <= 60
    assert str(fit) == "iwae:100@ais:250"  # steps halved twice: 215.8 s -> 107.8 s -> 53.8 s
    assert fit_within(Plan.parse("iwae:2"), speed, inputs=1, seconds=1e-9) is None


def test_every_rerun_says_what_it_costs_here(checkpoint_dir: Path) -> None:
    with make_client(checkpoint_dir) as client:
        wait_ready(client)
        out = client.post("/v1/models/tiny/evidence", json=ELBO).json()
    (cost,) = out["reruns"]  # the one rerun the verdict advises, with this server's estimate of it
    assert cost["rerun"] == out["results"][0]["verdict"]["rerun"] and cost["plan"] == "iwae:100@ais:1000"
    assert cost["seconds"] > 0 and cost["run_as"] in ("request", "job") and "takes about" in cost["note"]
    # The verdict itself carries no time measured here: the same verdict on any server.
    assert "takes about" not in out["results"][0]["verdict"]["advice"]


def test_advice_beyond_the_deadline_is_a_job_and_a_504_names_what_fits(checkpoint_dir: Path) -> None:
    with make_client(checkpoint_dir, deadline_s=0.5) as client:
        wait_ready(client)
        out = client.post("/v1/models/tiny/evidence", json=ELBO).json()
        verdict, (cost,) = out["results"][0]["verdict"], out["reruns"]
        assert cost["run_as"] == "job" and "run it as a job (POST /v1/jobs)" in cost["note"]
        # Sent as a request anyway, it is refused before it runs (expected past 3x the deadline: 413) or stopped
        # at the deadline (504); either way the answer says what to do instead.
        sent = client.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE], **verdict["rerun"]})
        problem = assert_problem(sent, sent.status_code, "deadline_s")
        assert sent.status_code in (413, 504)
    assert "run it as a job" in problem["detail"] and problem["limit"]["deadline_s"] == 0.5
    assert problem["limit"]["expected_s"] > 0.4
    if problem["limit"]["fits"] is not None:  # a setting this server expects to finish within the deadline
        assert Plan.parse(problem["limit"]["fits"]).entries[0].sampler.steps < 1000


def test_the_cli_prints_the_job_command_when_a_request_cannot_run_it(capsys: pytest.CaptureFixture[str]) -> None:
    rerun = {"estimator": {"name": "iwae", "k": 100}, "sampler": {"name": "ais", "steps": 1000, "leapfrog": 10}}
    verdict = {"advice": "run AIS instead ...", "rerun": rerun}
    cost = {"plan": "iwae:100@ais:1000", "run_as": "job", "seconds": 900.0, "note": "about 15 min here: a job"}
    _advice(
        [verdict], "vae1-iwae50", lambda model, entry: f"logpx score IMAGE... --model {model} ({entry})", reruns=[cost]
    )
    out = capsys.readouterr().out
    assert "run:     logpx job submit DATA --model vae1-iwae50 --estimators iwae:100@ais:1000" in out
    assert "cost:    about 15 min here: a job" in out
    assert "certify: logpx bdmc --model vae1-iwae50 --sampler ais:1000" in out


def test_work_far_beyond_the_deadline_is_refused_before_it_runs(checkpoint_dir: Path) -> None:
    """Work within every budget but far over the deadline held the worker until its 504 (the probe: BDMC
    with 10,000 steps and 100 leapfrog steps on one input); it is now refused at once, naming a way out."""
    import time

    with make_client(checkpoint_dir, deadline_s=1.0) as client:
        wait_ready(client)
        heavy = {"name": "ais", "steps": 9000, "leapfrog": 100}
        started = time.monotonic()
        body = {"inputs": [IMAGE], "estimator": {"name": "iwae", "k": 16}, "sampler": heavy}
        problem = assert_problem(client.post("/v1/models/tiny/evidence", json=body), 413, "deadline_s")
        assert "run it as a job" in problem["detail"] and problem["limit"]["expected_s"] > 3
        bdmc = client.post("/v1/models/tiny/bdmc", json={"num_inputs": 1, "k": 16, "sampler": heavy})
        assert_problem(bdmc, 413, "deadline_s")
        assert time.monotonic() - started < 2  # refused, not run until the deadline


def test_advice_never_names_a_setting_over_the_servers_limits(checkpoint_dir: Path) -> None:
    """AIS advice escalates (100 chains, then 4x the temperatures); where that passes `LOGPX_MAX_AIS_STEPS` it
    would be refused as a request and as a job alike, so the advice names the most this server runs."""
    with make_client(checkpoint_dir, max_ais_steps=500) as client:
        wait_ready(client)
        out = client.post("/v1/models/tiny/evidence", json=ELBO).json()
        verdict, (cost,) = out["results"][0]["verdict"], out["reruns"]
        assert verdict["rerun"]["sampler"]["steps"] == 500 and cost["plan"] == "iwae:100@ais:500"
        assert "iwae:100@ais:500 (the most this server runs)" in verdict["advice"]
        sent = client.post("/v1/models/tiny/evidence", json={"inputs": [IMAGE], **verdict["rerun"]})
    assert sent.status_code != 422  # within the limits it names (413/504 are the deadline's, tested above)
