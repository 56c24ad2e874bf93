"""The ``logpx`` command line.

    logpx serve                                  # the service, settings from LOGPX_* variables
    logpx models [--url URL]
    logpx score IMAGE... --model NAME [--estimator jvi --k 1000 --order 1 --seed 0]
    logpx compare IMAGE... --model NAME --estimators iwae:100 jvi:100:1 [--reference iwae:5000 --replicates 10]
    logpx convert WEIGHTS --names MAP.json --arch ARCH.json --out NAME.safetensors
    logpx predict IMAGE... --model NAME [--labels 3 8 --k 100]
    logpx bdmc --model NAME [--inputs 8 --k 16 --sampler ais:1000]
    logpx train ...                              # logpx train --help
    logpx evaluate ...                           # logpx evaluate --help

Client commands talk to the server at --url, default $LOGPX_URL or http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from .client import LogpxClient, LogpxError, entry_from_request
from .plan import Entry, Importance, Plan, Sampler, parse_sampler

DEFAULT_URL = "http://127.0.0.1:8000"
HEALTH_HEADROOM = 32  # connections uvicorn admits beyond the app's own limit, for the health checks


class CommandError(Exception):
    """A problem the user can fix, reported as one line and exit status 1."""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _estimator_arg(text: str) -> Entry:
    """``iwae:1000``, ``jvi:1000:2`` or ``iwae:100@ais:1000``: an entry of the plan's grammar (``logpx.plan``)."""
    try:
        return Entry.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sampler_arg(text: str) -> Sampler:
    """``importance`` or ``ais:STEPS[:LEAPFROG[:INIT[:SCHEDULE]]]``: a sampler of the plan's grammar."""
    try:
        sampler = parse_sampler(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not sampler.requestable:
        raise argparse.ArgumentTypeError(f"sampler {text!r} cannot be requested")
    return sampler


def _with_sampler(entry: Entry, sampler: Sampler | None) -> Entry:
    """``--sampler`` applies to the estimators that name none of their own."""
    return entry if sampler is None or not isinstance(entry.sampler, Importance) else Entry(entry.spec, sampler)


def _verdict_text(verdict: dict[str, Any]) -> str:
    return verdict["level"] + (f": {verdict['reasons'][0]}" if verdict["reasons"] else "")


def _score_command(model: str, rerun: Entry) -> str:
    spec = rerun.spec
    order = f" --order {spec.order}" if spec.is_jackknife else ""
    return f"logpx score IMAGE... --model {model} --estimator {spec.name} --k {spec.k}{order} --sampler {rerun.sampler}"


def _job_command(model: str, rerun: Entry) -> str:
    return f"logpx job submit DATA --model {model} --estimators {rerun}"


def _advice(
    verdicts: list[dict[str, Any]],
    model: str,
    command: Callable[[str, Entry], str],
    indent: str = "",
    reruns: list[dict[str, Any]] | None = None,
) -> None:
    """Every distinct piece of advice, once, under the table: what to run instead, and where the verdict
    names it exactly (a plan, sent as request objects), the command that runs it and the one that
    certifies an AIS setting. ``reruns``: the server's word on what each costs there; one that a request
    cannot finish is printed as the job that runs it, with its expected time."""
    costs = {r["plan"]: r for r in reruns or []}
    advice: dict[str, dict[str, Any]] = {}
    for v in verdicts:
        if v["advice"]:
            advice.setdefault(v["advice"], v)
    for text, v in advice.items():
        print(f"{indent}advice: {text}")
        rerun = v.get("rerun")
        if rerun:
            entry = entry_from_request(rerun["estimator"], rerun["sampler"])
            cost = costs.get(str(Plan((entry,))))
            # What one request cannot finish (the server said so, from its measured speed) runs as a job.
            run = _job_command(model, entry) if cost and cost["run_as"] == "job" else command(model, entry)
            print(f"{indent}  run:     {run}")
            if cost:
                print(f"{indent}  cost:    {cost['note']}")
            if entry.sampler.annealed:
                print(f"{indent}  certify: logpx bdmc --model {model} --sampler {entry.sampler}")


def _existing_files(paths: list[str]) -> list[str | Path]:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise CommandError(
            f"no such file: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    return list(paths)


def _load_images(paths: list[str]) -> list[list[float]]:
    """Greyscale image files as flat lists of values in [0, 1] (for the JSON endpoints)."""
    out = []
    for p in _existing_files(paths):
        try:
            with Image.open(p) as img:
                out.append((np.asarray(img.convert("L"), dtype=np.float64).reshape(-1) / 255.0).tolist())
        except (UnidentifiedImageError, OSError) as exc:
            raise CommandError(f"{p}: not a readable image ({exc.__class__.__name__})") from None
    return out


def _client(args: argparse.Namespace) -> LogpxClient:
    return LogpxClient(args.url, token=args.token or os.environ.get("LOGPX_API_TOKEN"))


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .app.config import get_settings
    from .app.main import create_app, log_config

    try:
        settings = get_settings()
    except ValidationError as exc:
        errors = "; ".join(
            (f"LOGPX_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise CommandError(f"invalid settings: {errors}") from None
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        timeout_graceful_shutdown=10,
        http=settings.http,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # uvicorn answers a plain 503 beyond its own limit, before the app: leave room over the app's limit
        # (RequestGuard) so that health checks, which the app never refuses, get through.
        limit_concurrency=settings.limit_concurrency + HEALTH_HEADROOM,
        timeout_keep_alive=settings.timeout_keep_alive_s,
    )


def cmd_models(args: argparse.Namespace) -> None:
    with _client(args) as client:
        rows = [[m["name"], m["family"], m["status"], m["device"], m.get("reason")] for m in client.models()]
    print(_table(["model", "family", "status", "device", "reason"], rows))


def cmd_score(args: argparse.Namespace) -> None:
    with _client(args) as client:
        out = client.evidence_images(
            args.model,
            _existing_files(args.images),
            estimator=args.estimator,
            k=args.k,
            order=args.order,
            seed=args.seed,
            binarize=args.binarize,
            sampler=args.sampler,
        )
    est = out["estimator"]
    sampler = est["sampler"]
    print(
        f"model {out['model']} on {out['device']}: {est['name']} k={est['k']}"
        + (f" order={est['order']}" if est.get("order") else "")
        + (f", ais steps={sampler['steps']} leapfrog={sampler['leapfrog']}" if sampler["name"] == "ais" else "")
        + f", binarize={out['binarization']['method']}, seed={out['seed']}"
    )
    cert = est.get("certificate")
    if cert:
        print(
            f"certified: {cert['plan']} keeps the BDMC gap under {cert['gap_bound']:.3f} nats (95%) on {cert['inputs']} "
            f"inputs simulated from the model, {cert['chains']} chains ({cert['created']})"
        )
    rows = []
    for path, r in zip(args.images, out["results"], strict=True):
        d = r.get("diagnostics") or {}
        rows.append(
            [Path(path).name, r["log_px"], r["std_err"], d.get("ess"), d.get("khat"), _verdict_text(r["verdict"])]
        )
    print(_table(["image", "log_px", "std_err", "ess", "khat", "verdict"], rows))
    _advice([r["verdict"] for r in out["results"]], out["model"], _score_command, reruns=out.get("reruns"))


def cmd_compare(args: argparse.Namespace) -> None:
    with _client(args) as client:
        out = client.compare(
            args.model,
            _load_images(args.images),
            args.estimators,
            replicates=args.replicates,
            seed=args.seed,
            reference=_with_sampler(args.reference, args.reference_sampler) if args.reference else None,
            binarize=args.binarize,
        )
    rows = []
    summaries = ([out["reference"]] if out["reference"] else []) + out["estimators"]
    for s in summaries:
        e = s["estimator"]
        name = (
            f"{e['name']}-{e['k']}"
            + (f" (m={e['order']})" if e.get("order") else "")
            + (f" ais:{e['sampler']['steps']}" if e["sampler"]["name"] == "ais" else "")
        )
        diff = s["diff_to_reference"]
        levels = [v["level"] for v in s["verdicts"]]
        verdict = ", ".join(f"{levels.count(lv)} {lv}" for lv in ("reliable", "caution", "unreliable") if lv in levels)
        rows.append(
            [name, s["mean_over_inputs"], s["sd_over_inputs"], (sum(diff) / len(diff)) if diff else None, verdict]
        )
    print(f"model {out['model']}: {len(args.images)} images, {out['replicates']} replicates, common random numbers")
    print(_table(["estimator", "mean log_px", "sd", "diff to reference", "verdicts"], rows))
    _advice([v for s in summaries for v in s["verdicts"]], out["model"], _score_command, reruns=out.get("reruns"))


def cmd_predict(args: argparse.Namespace) -> None:
    with _client(args) as client:
        out = client.predict(
            args.model, _load_images(args.images), labels=args.labels, k=args.k, order=args.order, seed=args.seed
        )
    if args.labels is not None and len(args.labels) != len(args.images):
        raise CommandError(f"{len(args.labels)} labels for {len(args.images)} images")
    print(f"model {out['model']} on {out['device']}: k={out['k']} weight draws, seed={out['seed']}")
    rows = []
    for path, p in zip(args.images, out["predictions"], strict=True):
        ll = p.get("log_likelihood") or {}
        verdict = ll.get("verdict")
        rows.append(
            [
                Path(path).name,
                p["predicted"],
                max(p["probs"]),
                p["entropy"]["total"],
                p["entropy"]["epistemic"],
                ll.get("jvi"),
                ll.get("std_err"),
                _verdict_text(verdict) if verdict else None,
            ]
        )
    print(_table(["image", "predicted", "p", "entropy", "epistemic", "log p(y|x)", "std_err", "verdict"], rows))
    _advice(
        [p["log_likelihood"]["verdict"] for p in out["predictions"] if p.get("log_likelihood")],
        out["model"],
        _score_command,
    )


def cmd_convert(args: argparse.Namespace) -> None:
    from logpx.io import CheckpointError, convert, load_document
    from logpx.io.convert import BY_ORDER
    from logpx.io.pythae import convert_pythae

    try:
        if args.pythae:
            meta = convert_pythae(Path(args.weights), Path(args.out), args.pythae_arch, args.dataset)
            print(
                f"wrote {args.out}: {meta['family']} (latent {meta['arch']['latent']}), input shape {meta['input_shape']}"
            )
            return
        if not args.arch or bool(args.names) == args.by_order:
            raise CommandError(
                "--arch and one of --names or --by-order are needed (or --pythae for a pythae model folder)"
            )
        names = BY_ORDER if args.by_order else load_document(Path(args.names), "name map")
        spec = load_document(Path(args.arch), "architecture")
        if not Path(args.weights).is_file():
            raise CommandError(f"no such file: {args.weights}")
        meta = convert(
            Path(args.weights), names, spec, Path(args.out), {"name": args.dataset} if args.dataset else None
        )
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {args.out}: {meta['family']} {meta['arch']}, input shape {meta['input_shape']}")


def cmd_bdmc(args: argparse.Namespace) -> None:
    with _client(args) as client:
        out = client.bdmc(args.model, num_inputs=args.inputs, k=args.k, sampler=args.sampler, seed=args.seed)
    sampler = out["sampler"]
    print(
        f"model {out['model']}: BDMC on {len(out['results'])} simulated inputs, {out['k']} chains, ais steps="
        f"{sampler['steps']} leapfrog={sampler['leapfrog']} init={sampler['init']}, seed={out['seed']}"
    )
    rows = [
        [i, r["lower"], r["upper"], r["gap"], r["acceptance"], _verdict_text(r["verdict"])]
        for i, r in enumerate(out["results"])
    ]
    print(_table(["input", "lower", "upper", "gap", "acceptance", "verdict"], rows))
    print(
        f"mean gap {out['mean_gap']:.4f} +- {out['mean_gap_std_err']:.4f} nats: the error bound of this AIS setting on data "
        "like the model's own (a gap within about two standard errors of 0 is 0)"
    )


def _certificate_row(c: dict[str, Any]) -> list[Any]:
    return [c["plan"], c["mean_gap"], c["gap_std_err"], c["gap_bound"], c["chains"], c["inputs"], c["seconds"]]


def cmd_certify(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .samplers import duration

    settings = {"tolerance": args.tolerance, "leapfrog": args.leapfrog, "init": args.init, "schedule": args.schedule}
    with _client(args) as client:
        out = client.certify(args.model, **settings, inputs=args.inputs, chains=args.chains, seed=args.seed)
        if out["status"] == "running":
            expected = f", trials up to 800 steps about {duration(out['expected_s'])}" if out["expected_s"] else ""
            print(f"model {args.model}: certifying for {args.tolerance:g} nats{expected}", file=sys.stderr)
        with tqdm(desc="certify", unit="trial", disable=out["status"] != "running") as bar:
            while out["status"] == "running":
                time.sleep(1.0)
                runs = [r for r in client.certificates(args.model)["certifications"] if r["request"] == out["request"]]
                out = runs[-1] if runs else out
                bar.update(len(out["trials"]) - bar.n)
    if out["trials"]:
        headers = ["setting", "mean gap", "std err", "95% bound", "chains", "inputs", "seconds"]
        print(_table(headers, [_certificate_row(t) for t in out["trials"]]))
    print(out["note"])
    if out["status"] == "certified":
        print(f"run it: logpx score IMAGES --model {args.model} --k {args.chains} --sampler {_auto_text(args)}")
    else:
        raise CommandError(out["note"])


def _auto_text(args: argparse.Namespace) -> str:
    return f"ais:auto:{args.leapfrog}:{args.init}:{args.schedule}:{args.tolerance:g}"


def _job_summary(status: dict[str, Any]) -> None:
    """Each estimator's mean over the inputs done, with its verdict counts: no number without them."""
    print(f"job {status['id']}: {status['state']}, {status['progress']['done']}/{status['progress']['total']} inputs")
    for s in status["summary"]:
        e = s["estimator"]
        name = f"{e['name']}:{e['k']}" + (f":{e['order']}" if e.get("order") else "") + f" ({e['sampler']['name']})"
        mean = (
            "-"
            if s["mean"] is None
            else f"{s['mean']:.3f}" + ("" if s["std_err"] is None else f" +- {s['std_err']:.3f}")
        )
        counts = ", ".join(f"{n} {level}" for level, n in s["verdicts"].items() if n)
        print(f"  {name:<28} mean log p(x) {mean}   verdicts: {counts or 'none yet'}")
        if s["advice"]:
            _advice([s], status["model"], _job_command, indent="    ")
    if status["error"]:
        print(f"  error: {status['error']}")


def _submit_data_set(args: argparse.Namespace, comparison: bool) -> None:
    """A job (or with ``comparison`` a comparison) over the data-set file ``args.data``: prints its id, then
    with ``--watch`` follows it to the end."""
    estimators = [_with_sampler(e, args.sampler) for e in args.estimators]
    options = {"estimators": estimators, "labels": args.labels, "seed": args.seed, "binarize": args.binarize}
    with _client(args) as client:
        if not Path(args.data).is_file():
            raise CommandError(f"{args.data}: no such file")
        if comparison:
            out = client.submit_comparison(args.models, args.data, **options)
        else:
            out = client.submit_job(args.model, args.data, **options)
        print(out["id"])
        if args.watch:
            (_watch_comparison if comparison else _watch)(client, out["id"])


def cmd_job_submit(args: argparse.Namespace) -> None:
    _submit_data_set(args, comparison=False)


def _comparison_report(out: dict[str, Any]) -> None:
    """The models side by side per estimator, then every pair's paired difference with its verdict."""
    print(f"comparison {out['id']}: {out['state']}, {out['done']}/{out['total']} inputs scored by every model")
    for name in out["estimators"]:
        print(f"\n  {name}")
        for s in (s for s in out["standings"] if s["estimator"] == name):
            mean = "-" if s["mean"] is None else f"{s['mean']:.3f} +- {s['std_err'] or 0:.3f}"
            counts = ", ".join(f"{n} {level}" for level, n in s["verdicts"].items() if n)
            print(f"    {s['model']:<24} mean log p(x) {mean:<20} verdicts: {counts or 'none yet'}")
        for d in (d for d in out["differences"] if d["estimator"] == name):
            if d["mean"] is None:
                print(f"    {d['a']} - {d['b']}: too few inputs yet")
                continue
            lo, hi = d["interval"]
            print(
                f"    {d['a']} - {d['b']}: {d['mean']:+.3f} +- {d['std_err']:.3f} (paired; unpaired +- "
                f"{d['unpaired_std_err']:.3f}), {100 * d['confidence']:.0f}% [{lo:+.3f}, {hi:+.3f}], "
                f"{d['a']} higher on {100 * d['a_better']:.0f}% of inputs: {d['verdict']['level'].upper()}"
            )
            for reason in d["verdict"]["reasons"][1:]:
                print(f"      {reason}")
            if d["verdict"]["advice"]:
                print(f"      advice: {d['verdict']['advice']}")
            rerun = d["verdict"]["rerun"]
            if rerun:
                entry = entry_from_request(rerun["estimator"], rerun["sampler"])
                print(f"      run:    logpx compare-models {' '.join(out['models'])} DATA --estimators {entry}")


def cmd_compare_models(args: argparse.Namespace) -> None:
    _submit_data_set(args, comparison=True)


def _watch_comparison(client: LogpxClient, comparison_id: str) -> None:
    from tqdm import tqdm

    out = client.comparison(comparison_id)
    # While it runs, its jobs' statuses (cheap) say how far it is; the figures (every row read) once, at the end.
    jobs = out["jobs"]
    with tqdm(total=out["total"], desc=f"comparison {comparison_id[:8]}", unit="input") as bar:
        while any(j["state"] in ("queued", "running") for j in jobs):
            bar.n = min(j["progress"]["done"] for j in jobs)
            bar.refresh()
            time.sleep(1.0)
            jobs = [client.job(j["id"]) for j in jobs]
        out = client.comparison(comparison_id)
        bar.n = out["done"]
        bar.set_postfix_str(out["state"])
    _comparison_report(out)


def cmd_comparison(args: argparse.Namespace) -> None:
    with _client(args) as client:
        if args.output:
            client.comparison_results(args.id, args.output)
            print(f"wrote {args.output}")
            return
        if args.watch:
            _watch_comparison(client, args.id)
            return
        _comparison_report(client.comparison(args.id))


def _watch(client: LogpxClient, job_id: str) -> None:
    from tqdm import tqdm

    status = client.job(job_id)
    with tqdm(total=status["progress"]["total"], unit="input", file=sys.stderr, desc=f"job {job_id[:8]}") as bar:
        for status in client.job_events(job_id):
            bar.update(status["progress"]["done"] - bar.n)
            bar.set_postfix_str(status["state"])
    _job_summary(client.job(job_id))


def cmd_job_watch(args: argparse.Namespace) -> None:
    with _client(args) as client:
        _watch(client, args.id)


def cmd_job_status(args: argparse.Namespace) -> None:
    with _client(args) as client:
        _job_summary(client.job(args.id))


def cmd_job_results(args: argparse.Namespace) -> None:
    fmt = args.format or ("csv" if str(args.output).endswith(".csv") else "jsonl")
    with _client(args) as client:
        client.job_results(args.id, args.output, format=fmt)
    print(f"wrote {args.output} ({fmt})")


def cmd_job_list(args: argparse.Namespace) -> None:
    with _client(args) as client:
        page = client.jobs(limit=args.limit)
    for j in page["jobs"]:
        print(
            f"{j['id']}  {j['state']:<9}  {j['progress']['done']:>6}/{j['progress']['total']:<6}  {j['model']}  {j['created']}"
        )
    if page["next"]:
        print(f"({page['total']} jobs in all; --limit shows more)")


def cmd_job_cancel(args: argparse.Namespace) -> None:
    with _client(args) as client:
        status = client.cancel_job(args.id)
    job, state, done = status["id"], status["state"], status["progress"]["done"]
    if state == "cancelled":
        print(f"job {job} cancelled; {done} inputs had finished, and their rows are kept")
    elif state in ("queued", "running"):
        print(
            f"job {job}: cancelling was requested; it stops after the chunk in hand ({done} inputs done so far, "
            f"their rows kept). `logpx job status {job}` shows when it has."
        )
    else:
        print(f"job {job} had already {state}: nothing to cancel")


def cmd_job_delete(args: argparse.Namespace) -> None:
    with _client(args) as client:
        client.delete_job(args.id)
    print(f"job {args.id} deleted, with its result rows")


def _dataset_options(p: argparse.ArgumentParser) -> None:
    """What a job or a comparison runs over a data set, and how."""
    p.add_argument("data", help="the data set: IDX (gzipped or not), .npy, .npz or a zip of PNG files")
    p.add_argument(
        "--estimators",
        type=_estimator_arg,
        nargs="+",
        default=[Entry.parse("iwae:5000")],
        metavar="NAME:K[:ORDER][@SAMPLER]",
        help="estimators, e.g. iwae:5000 jvi:5000:1 iwae:100@ais:1000 (default iwae:5000)",
    )
    p.add_argument(
        "--sampler",
        type=_sampler_arg,
        default=None,
        metavar="importance|ais:STEPS[:LEAPFROG]",
        help="what draws the log-weights of every estimator that names none (default importance)",
    )
    p.add_argument("--labels", default=None, help="a labels file (IDX or .npy), returned in the rows")
    p.add_argument("--seed", type=int, default=0, help="seed (same data, seed and settings: the same rows; default 0)")
    p.add_argument(
        "--binarize", choices=["threshold", "sample", "resample", "none"], default=None, help="default: the model's"
    )
    p.add_argument("--watch", action="store_true", help="then follow it to the end with a progress bar")


def _job_parser(sub: Any) -> None:
    jobs = sub.add_parser(
        "job",
        help="evaluation jobs over whole data sets: submit, watch, results, status, list, cancel",
        description="Evaluation jobs over whole data sets, run in the background by the server (docs/jobs.md).",
    ).add_subparsers(dest="job_command", required=True, metavar="JOB_COMMAND", help="what to do")
    p = jobs.add_parser("submit", help="start a job over a data-set file", description="Start a job; prints its id.")
    p.set_defaults(fn=cmd_job_submit)
    _client_options(p)
    p.add_argument("--model", required=True, help="the model's name, as `logpx models` lists it")
    _dataset_options(p)
    for name, fn, text in (
        ("watch", cmd_job_watch, "follow a job with a progress bar, then print its summary"),
        ("status", cmd_job_status, "print a job's state, progress and per-estimator summary"),
        ("cancel", cmd_job_cancel, "cancel a job (a running one stops after its current chunk)"),
        ("delete", cmd_job_delete, "delete a finished job, its rows, and its data set if no other job uses it"),
    ):
        p = jobs.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.set_defaults(fn=fn)
        _client_options(p)
        p.add_argument("id", help="the job's id, as `logpx job submit` printed it")
    p = jobs.add_parser("results", help="download a job's rows", description="Download a job's rows (so far).")
    p.set_defaults(fn=cmd_job_results)
    _client_options(p)
    p.add_argument("id", help="the job's id, as `logpx job submit` printed it")
    p.add_argument("-o", "--output", required=True, help="the file to write (.csv for CSV unless --format says)")
    p.add_argument("--format", choices=["jsonl", "csv"], default=None, help="default: by the file's suffix")
    p = jobs.add_parser("list", help="list jobs, newest first", description="List jobs, newest first.")
    p.set_defaults(fn=cmd_job_list)
    _client_options(p)
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("LOGPX_URL", DEFAULT_URL),
        help=f"the server's base URL (default: $LOGPX_URL, else {DEFAULT_URL})",
    )
    p.add_argument(
        "--token", default=None, help="bearer token when the server requires one (default: $LOGPX_API_TOKEN)"
    )


def _image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="PNG or JPEG files, greyscale, of the model's input shape")
    p.add_argument("--model", required=True, help="the model's name, as `logpx models` lists it")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (same seed, same answer; default 0)")
    p.add_argument(
        "--binarize",
        choices=["threshold", "sample", "resample", "none"],
        default=None,
        help="how Bernoulli models binarise the images (default: the model's, sample: the same draws whatever --seed)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logpx", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "serve",
        help="run the service (settings from LOGPX_* environment variables, docs/settings.md)",
        description="Run the service; settings come from LOGPX_* environment variables (docs/settings.md).",
    ).set_defaults(fn=cmd_serve)
    sub.add_parser("train", help="train a model and write a checkpoint (logpx train --help)", add_help=False)
    sub.add_parser("evaluate", help="score a checkpoint on an IDX data set (logpx evaluate --help)", add_help=False)

    p = sub.add_parser(
        "models",
        help="list the server's models and their status",
        description="List the server's models, their status and device.",
    )
    p.set_defaults(fn=cmd_models)
    _client_options(p)

    p = sub.add_parser(
        "score",
        help="log p(x) of image files, with standard errors and diagnostics",
        description="Estimate log p(x) of image files with one estimator.",
    )
    p.set_defaults(fn=cmd_score)
    _client_options(p)
    _image_options(p)
    p.add_argument(
        "--estimator", choices=["elbo", "iwae", "jvi"], default=None, help="the estimator (default: the server's)"
    )
    p.add_argument("--k", type=int, default=None, help="importance samples per image (default: the server's)")
    p.add_argument("--order", type=int, default=None, help="JVI order, below k (jvi only; default 1)")
    p.add_argument(
        "--sampler",
        type=_sampler_arg,
        default=None,
        metavar="importance|ais:STEPS[:LEAPFROG]",
        help="what draws the log-weights (default importance); with ais, k is the number of chains",
    )

    p = sub.add_parser(
        "compare",
        help="several estimators on common random numbers, over replicates",
        description="Run several estimators on the same draws, over replicates, against a reference.",
    )
    p.set_defaults(fn=cmd_compare)
    _client_options(p)
    _image_options(p)
    p.add_argument(
        "--estimators",
        type=_estimator_arg,
        nargs="+",
        required=True,
        metavar="NAME:K[:ORDER][@SAMPLER]",
        help="e.g. iwae:100 jvi:100:1 elbo:100 iwae:32@ais:1000",
    )
    p.add_argument(
        "--reference",
        type=_estimator_arg,
        default=None,
        metavar="NAME:K[:ORDER]",
        help="estimator every other is compared with on the same draws, e.g. iwae:5000",
    )
    p.add_argument("--replicates", type=int, default=10, help="independent draws (default 10)")
    p.add_argument(
        "--reference-sampler",
        type=_sampler_arg,
        default=None,
        metavar="importance|ais:STEPS[:LEAPFROG]",
        help="the reference's sampler, e.g. ais:1000 with --reference iwae:32 (or write iwae:32@ais:1000)",
    )

    p = sub.add_parser(
        "convert",
        help="make a logpx checkpoint from your own weights, a name map and an architecture, or a pythae folder",
        description="Write a logpx checkpoint from a state dict (safetensors, or .pt opened with weights_only), a "
        "name map {logpx_name: your_name} and an architecture {family, arch, input_shape}, each JSON or YAML; or, "
        "with --pythae, from a folder pythae's model.save() wrote (docs/checkpoints.md has worked examples).",
    )
    p.set_defaults(fn=cmd_convert)
    p.add_argument(
        "weights",
        help="your state dict: .safetensors, or .pt (loaded with torch.load(weights_only=True)); with --pythae, "
        "the pythae model folder",
    )
    p.add_argument("--names", help="JSON or YAML file mapping every logpx tensor name to your tensor name")
    p.add_argument(
        "--by-order",
        action="store_true",
        help="no name map: pair the tensors in the order both networks hold them (an nn.Sequential's, or a .pt "
        "state dict's module order); every pair's shape is checked",
    )
    p.add_argument(
        "--arch", help='JSON or YAML (.yaml, .yml) file: {"family": "mlp_vae", "arch": {...}, "input_shape": [28, 28]}'
    )
    p.add_argument("--pythae", action="store_true", help="WEIGHTS is a pythae VAE folder (model_config.json, model.pt)")
    p.add_argument(
        "--pythae-arch",
        choices=["mlp", "conv-mnist"],
        default=None,
        help="its networks, when they are not pythae's defaults: conv-mnist is Encoder_Conv_VAE_MNIST / "
        "Decoder_Conv_AE_MNIST (their .pkl files hold code and are never loaded)",
    )
    p.add_argument("--out", required=True, help="the checkpoint to write (.safetensors)")
    p.add_argument("--dataset", default=None, help="the data set's name, recorded in the metadata")

    p = sub.add_parser(
        "predict",
        help="a Bayesian classifier's predictions, entropy split and log p(y | x, D)",
        description="Predictive probabilities and the entropy split of a Bayesian classifier; with --labels, the "
        "predictive log-likelihood (JVI) with its verdict.",
    )
    p.set_defaults(fn=cmd_predict)
    _client_options(p)
    p.add_argument("images", nargs="+", help="PNG or JPEG files, greyscale, of the model's input shape")
    p.add_argument("--model", required=True, help="the model's name, as `logpx models` lists it")
    p.add_argument("--labels", type=int, nargs="+", default=None, help="the true class of each image, in order")
    p.add_argument("--k", type=int, default=None, help="posterior weight draws (default: the server's)")
    p.add_argument("--order", type=int, default=None, help="JVI order of the log-likelihood (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")

    p = sub.add_parser(
        "bdmc",
        help="certify an AIS setting: its gap on data simulated from the model",
        description="Forward and reverse AIS on inputs simulated from the model: a sandwich around log p(x).",
    )
    p.set_defaults(fn=cmd_bdmc)
    _client_options(p)
    p.add_argument("--model", required=True, help="the model's name, as `logpx models` lists it")
    p.add_argument("--inputs", type=int, default=8, help="inputs simulated from the model (default 8)")
    p.add_argument("--k", type=int, default=16, help="AIS chains per input, each direction (default 16)")
    p.add_argument(
        "--sampler",
        type=_sampler_arg,
        default={"name": "ais", "steps": 1000},
        metavar="ais:STEPS[:LEAPFROG]",
        help="the AIS setting to certify (default ais:1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation and the chains (default 0)")
    p = sub.add_parser(
        "certify",
        help="choose AIS steps for you: the fewest whose BDMC gap stays under a tolerance",
        description="Find the fewest AIS temperatures whose BDMC gap on data simulated from the model stays under "
        "TOLERANCE nats (95%% one-sided), and store it: requests with steps auto then run it (docs/estimators.md, "
        "Certified AIS). Waits for the search with a progress bar.",
    )
    p.set_defaults(fn=cmd_certify)
    _client_options(p)
    p.add_argument("--model", required=True, help="the model's name, as `logpx models` lists it")
    p.add_argument("--tolerance", type=float, default=0.1, help="nats of BDMC gap (default 0.1)")
    p.add_argument("--leapfrog", type=int, default=10, help="leapfrog steps per HMC move (default 10)")
    p.add_argument("--init", choices=["encoder", "prior"], default="encoder", help="chains start (default encoder)")
    p.add_argument("--schedule", choices=["sigmoid", "linear", "geometric"], default="sigmoid", help="temperatures")
    p.add_argument("--inputs", type=int, default=16, help="inputs simulated from the model (default 16)")
    p.add_argument("--chains", type=int, default=16, help="chains each way; covers requests of at least as many")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation and the chains (default 0)")
    p = sub.add_parser(
        "compare-models",
        help="which model is better: several models on one data set, paired",
        description="Score 2 to 8 models on one data set with the same plan, seed and binary inputs, as a "
        "comparison run in the background (docs/jobs.md, Comparisons); prints its id.",
    )
    p.set_defaults(fn=cmd_compare_models)
    _client_options(p)
    p.add_argument("models", nargs="+", help="the models' names, as `logpx models` lists them")
    _dataset_options(p)
    p = sub.add_parser(
        "comparison",
        help="a comparison's standings and paired differences, or its per-input table",
        description="Print a comparison's per-model standings and paired differences with their verdicts.",
    )
    p.set_defaults(fn=cmd_comparison)
    _client_options(p)
    p.add_argument("id", help="the comparison's id, or a unique prefix of 6+ characters")
    p.add_argument("-o", "--output", default=None, help="write the per-input table here (CSV) instead")
    p.add_argument("--watch", action="store_true", help="follow it to the end with a progress bar first")
    _job_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train", "evaluate"):
        from logpx.evaluation import evaluate
        from logpx.training import train

        (train if argv[0] == "train" else evaluate).main(argv[1:])
        return
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except LogpxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except httpx.TransportError as exc:
        print(
            f"error: cannot reach the logpx server at {args.url} ({exc.__class__.__name__}: {exc}); "
            "start it with `logpx serve`, or point --url or LOGPX_URL at it",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
