"""The web page in a real browser: headless Chromium (Debian's ``chromium``, which ``make test`` installs
where it can) driven by Playwright through ``executable_path``, against a real server. Screenshots of every
view go to a folder the test creates (``LOGPX_SCREENSHOTS`` names another, to refresh docs/page.png)."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import shipped
from .local_server import LocalServer

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DIGIT = ROOT / "tests" / "data" / "mnist-50000-label3.png"
VALID = ROOT / "tests" / "data" / "mnist-valid200"

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)"),
    pytest.mark.slow,
]
playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The Fashion-MNIST model sorts first: the page must still offer the MNIST default.
    return shipped(tmp_path_factory.mktemp("checkpoints"), "fashion-vae1-iwae50", "vae1-iwae50", "vae2d-iwae50")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        # --no-sandbox: the test may run as root, where Chromium's sandbox refuses to start.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("LOGPX_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(browser: Any, url: str, *, enforce_csp: bool = True) -> tuple[Any, list[str], list[str]]:
    """A page on ``url`` that records console errors (a Content-Security-Policy violation is one) and every
    request leaving the server. ``enforce_csp=False`` for a test that drives the page with
    ``wait_for_function``, which Playwright evaluates as a string: the page's own policy forbids that."""
    page = browser.new_context(viewport={"width": 1200, "height": 900}, bypass_csp=not enforce_csp).new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r: Any) -> None:
        if r.request.url.startswith(url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url + "/")
    return page, errors, outside


def _canvas_has_ink(page: Any, selector: str) -> bool:
    return page.evaluate(
        """(sel) => { const c = document.querySelector(sel); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n > 1000; }""",
        selector,
    )


def test_every_view_in_a_real_browser(browser: Any, checkpoints: Path, shots: Path) -> None:
    with LocalServer(checkpoints, env={"LOGPX_DEVICE": "cpu"}) as server:
        page, errors, outside = _open(browser, server.url, enforce_csp=False)
        page.wait_for_selector("#models-table tbody tr")
        # The default model is offered first, with its data set beside it (a user once sent an MNIST job to
        # the alphabetically first, Fashion-MNIST, model).
        for select in ("#score-model", "#conv-model", "#job-model"):
            assert page.input_value(select) == "vae1-iwae50"
            assert page.text_content(f".dataset[data-for='{select[1:]}']") == "trained on mnist"
        page.click("#models-table tbody tr:nth-child(2)")
        page.wait_for_selector("#card-chart canvas")
        # The card plots bounds only (valid_k, a constant, was on the bounds axis) and names its split.
        labels = page.evaluate("window.logpx.charts.card.series.map(s => s.label)")
        assert labels[1:] == ["train_iwae", "valid_elbo", "valid_iwae"], labels
        facts = page.text_content("#card-facts")
        assert "valid_k 50.00" not in facts and "epoch 25.00" not in facts and "(held out at k = 50" in facts
        assert "50000 training images, 10000 held out" in facts
        assert "AIS certificates" in facts and "none yet: logpx certify --model" in facts  # none on a fresh store
        page.screenshot(path=str(shots / "models.png"), full_page=True)
        page.set_viewport_size({"width": 420, "height": 900})  # a phone: the table scrolls, the page does not
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        page.set_viewport_size({"width": 1200, "height": 900})

        # Score: a PNG upload reads back the API's own number for that file, seed and estimator.
        page.click("#tab-score")
        page.select_option("#score-model", "vae1-iwae50")
        page.set_input_files("#png", str(DIGIT))
        page.fill("#score-k", "500")
        page.fill("#score-seed", "4")
        page.click("#score-form button[type=submit]")
        page.wait_for_selector("#score-table tbody tr:nth-child(2)")
        shown = [
            float(v) for v in page.eval_on_selector_all("#score-table .log-px", "els => els.map(e => e.dataset.value)")
        ]
        levels = page.eval_on_selector_all("#score-table .verdict", "els => els.map(e => e.textContent)")
        for name, value, level in zip(["iwae", "jvi"], shown, levels, strict=True):
            form = {"estimator": name, "k": "500", "seed": "4", **({"order": "1"} if name == "jvi" else {})}
            with DIGIT.open("rb") as f:
                api = httpx.post(
                    f"{server.url}/v1/models/vae1-iwae50/evidence/images",
                    files={"files": ("d.png", f, "image/png")},
                    data=form,
                ).json()["results"][0]
            assert value == api["log_px"] and level == api["verdict"]["level"]
        page.screenshot(path=str(shots / "score.png"), full_page=True)
        # k-hat on a real digit says "unreliable": the advice's request goes into the form with one click.
        assert "POST /v1/models/vae1-iwae50/bdmc" in page.text_content("#score-table .advice")
        page.click("#score-table button.rerun >> nth=0")
        checked = page.eval_on_selector_all("#score-form input[name=estimator]:checked", "els => els.map(e => e.value)")
        assert checked == [api["verdict"]["rerun"]["estimator"]["name"]]
        assert page.input_value("#score-k") == str(api["verdict"]["rerun"]["estimator"]["k"])
        assert page.input_value("#score-sampler") == "ais"
        assert page.input_value("#score-steps") == str(api["verdict"]["rerun"]["sampler"]["steps"])
        assert (
            "logpx score IMAGE --model vae1-iwae50 --estimator iwae --k 100 --sampler ais:1000:10"
            in page.text_content("#score-table code.command")
        )
        # The advised run is long: while it runs the button is disabled and the elapsed time shown; Cancel
        # ends it (the server stops it at its next check) and says so.
        page.click("#score-form button[type=submit]")
        page.wait_for_selector("#view-score .busy:not([hidden])")
        assert page.is_disabled("#score-form button[type=submit]")
        page.wait_for_function("document.querySelector('#view-score .elapsed').textContent.includes('1 of 1')")
        page.click("#view-score .busy .cancel")
        page.wait_for_selector("#view-score .error:not([hidden])")
        assert "Cancelled" in page.text_content("#view-score .error")
        assert page.is_enabled("#score-form button[type=submit]") and page.is_hidden("#view-score .busy")

        # Convergence: the plot holds finite IWAE and JVI means at every k, and the AIS line.
        page.click("#tab-convergence")
        page.fill("#conv-replicates", "3")
        page.fill("#conv-ais", "50")
        page.click("#convergence-form button[type=submit]")
        page.wait_for_selector("#convergence-chart canvas")
        data = page.evaluate("window.logpx.charts.convergence.data")
        assert data[0] == [2, 5, 10, 30, 100, 300, 1000, 3000] and len(data) == 10
        assert all(math.isfinite(v) for series in data[1:] for v in series)
        shown = page.eval_on_selector_all(
            "#convergence-chart .u-legend .u-series", "rows => rows.filter(r => r.style.display !== 'none').length"
        )
        assert shown == 4  # k, IWAE, JVI, AIS: no legend entries for the bands' edges
        assert "AIS 50 steps, 100 chains" in page.text_content("#convergence-table")
        assert _canvas_has_ink(page, "#convergence-chart canvas")
        page.screenshot(path=str(shots / "convergence.png"), full_page=True)

        # Posterior of the 2-D latent model, with q's ellipse.
        page.click("#tab-posterior")
        page.select_option("#post-model", "vae2d-iwae50")
        page.click("#posterior-form button[type=submit]")
        page.wait_for_selector("#posterior-facts .verdict")
        assert _canvas_has_ink(page, "#posterior")
        # The colour scale: its top (the mode) darkest, its bottom (10 nats below) white.
        top, bottom = page.evaluate(
            """() => { const c = document.querySelector('#posterior'), g = c.getContext('2d');
                const x = 56 + (c.height - 80) + 34 + 7; return [g.getImageData(x, 31, 1, 1).data[0], g.getImageData(x, c.height - 52, 1, 1).data[0]]; }"""
        )
        assert top < 60 and bottom > 240, (top, bottom)
        page.screenshot(path=str(shots / "posterior.png"), full_page=True)

        # Jobs: a small job watched to 100% through its event stream.
        page.click("#tab-jobs")
        page.select_option("#job-model", "vae1-iwae50")
        page.set_input_files("#job-data", str(VALID / "valid200-images-idx3-ubyte.gz"))
        page.set_input_files("#job-labels", str(VALID / "valid200-labels-idx1-ubyte.gz"))
        page.fill("#job-estimators", "iwae:100 jvi:100:1")
        page.click("#job-form button[type=submit]")
        page.wait_for_function("document.querySelector('#job-line').textContent.includes('succeeded')", timeout=120_000)
        assert page.eval_on_selector("#job-progress", "e => e.value") == 1
        assert "200 of 200 inputs (100%)" in page.text_content("#job-line")
        assert page.eval_on_selector_all("#job-summary tbody tr", "rows => rows.length") == 2
        assert sum(page.evaluate("window.logpx.charts.khat.data[1]")) == 200
        bins = len(page.evaluate("window.logpx.charts.khat.data[0]"))  # the x range holds the last bar whole
        assert page.evaluate("[window.logpx.charts.khat.scales.x.min, window.logpx.charts.khat.scales.x.max]") == [
            -0.5,
            bins - 0.5,
        ]
        job_id = page.evaluate("window.logpx.job.id")
        assert page.url.endswith(f"#jobs/{job_id}")
        page.wait_for_selector(f"#jobs-list a[href='#jobs/{job_id}']")
        assert page.eval_on_selector_all("#job-summary button.rerun", "bs => bs.length") >= 1
        page.screenshot(path=str(shots / "jobs.png"), full_page=True)

        # Compare models: the default and the next MNIST model preselected, the same 200 digits for both; the
        # standings, the paired difference with its verdict, and the three plots.
        page.click("#tab-compare")
        chosen = page.eval_on_selector_all("#cmp-models option", "os => os.filter(o => o.selected).map(o => o.value)")
        assert chosen == ["vae1-iwae50", "vae2d-iwae50"]
        page.set_input_files("#cmp-data", str(VALID / "valid200-images-idx3-ubyte.gz"))
        page.fill("#cmp-estimators", "iwae:100")
        page.click("#compare-form button[type=submit]")
        page.wait_for_function("document.querySelector('#cmp-line').textContent.includes('succeeded')", timeout=120_000)
        assert page.eval_on_selector_all("#cmp-standings tbody tr", "rows => rows.length") == 2
        difference = page.text_content("#cmp-differences tbody tr")
        assert "vae1-iwae50 - vae2d-iwae50" in difference and "unreliable" in difference  # IWAE on real digits
        assert page.eval_on_selector_all("#cmp-differences button.rerun", "bs => bs.length") == 1
        page.wait_for_function("window.logpx.comparisonPairs && window.logpx.comparisonPairs.length === 200")
        for canvas in ("#cmp-scatter", "#cmp-histogram"):
            assert _canvas_has_ink(page, canvas)
        comparison_id = page.evaluate("window.logpx.comparison.id")
        assert page.url.endswith(f"#comparisons/{comparison_id}")
        page.screenshot(path=str(shots / "compare.png"), full_page=True)

        # An error is shown as the problem's detail, never a blank panel.
        page.click("#tab-score")
        page.fill("#score-k", "10000000")  # over the server's max_k
        page.click("#score-form button[type=submit]")
        page.wait_for_selector("#view-score .error:not([hidden])")
        assert "over the limit" in page.text_content("#view-score .error") and "(field k)" in page.text_content(
            "#view-score .error"
        )
        # A reload (or a shared link) shows the same job or comparison again, from its address.
        page.goto(f"{server.url}/#jobs/{job_id}")
        page.reload()
        page.wait_for_function("document.querySelector('#job-line').textContent.includes('succeeded')")
        assert job_id in page.text_content("#job-line") and page.is_visible("#view-jobs")
        page.goto(f"{server.url}/#comparisons/{comparison_id}")
        page.reload()
        page.wait_for_function("document.querySelector('#cmp-line').textContent.includes('succeeded')")
        assert comparison_id in page.text_content("#cmp-line") and page.is_visible("#view-compare")
        errors = [e for e in errors if "status of 4" not in e]  # the browser logs the refused request itself
        assert errors == [] and outside == []


def test_api_docs_work_offline_and_the_page_asks_for_the_token(browser: Any, checkpoints: Path) -> None:
    with LocalServer(checkpoints, env={"LOGPX_DEVICE": "cpu", "LOGPX_API_TOKEN": "s3cret"}) as server:
        page, errors, outside = _open(browser, server.url)
        page.wait_for_selector("#token-form:not([hidden])")
        page.fill("#token", "s3cret")
        page.click("#token-form button")
        page.wait_for_selector("#models-table tbody tr")
        page.goto(server.url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "logpx" in page.text_content(".swagger-ui .info .title")
        page.wait_for_selector(".swagger-ui .opblock")  # the operations, from /openapi.json
        assert outside == []  # no CDN: every asset came from the server
        assert [e for e in errors if "401" not in e] == []  # only the refused first request before the token
