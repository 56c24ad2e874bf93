"""The ``logpx`` command line.

    logpx serve                                  # the service, settings from LOGPX_* variables
    logpx models [--url URL]
    logpx score IMAGE... --model NAME [--estimator jvi --k 1000 --order 1 --seed 0]
    logpx compare IMAGE... --model NAME --estimators iwae:100 jvi:100:1 [--reference iwae:5000 --replicates 10]
    logpx train ...                              # python -m models.train
    logpx evaluate ...                           # python -m models.evaluate
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .client import LogpxClient, LogpxError


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _parse_estimator(text: str) -> dict[str, Any]:
    """``iwae:1000`` or ``jvi:1000:2`` -> an estimator object."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
        raise argparse.ArgumentTypeError(f"estimator {text!r}: expected NAME:K or jvi:K:ORDER")
    spec: dict[str, Any] = {"name": parts[0], "k": int(parts[1])}
    if len(parts) == 3:
        spec["order"] = int(parts[2])
    return spec


def _load_images(paths: list[str]) -> list[list[float]]:
    """Greyscale 28x28 image files as lists of 784 values in [0, 1] (for the JSON endpoints)."""
    out = []
    for p in paths:
        with Image.open(p) as img:
            out.append((np.asarray(img.convert("L"), dtype=np.float64).reshape(-1) / 255.0).tolist())
    return out


def _client(args: argparse.Namespace) -> LogpxClient:
    return LogpxClient(args.url, token=args.token or os.environ.get("LOGPX_API_TOKEN"))


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .config import get_settings
    from .main import create_app

    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=10)


def cmd_models(args: argparse.Namespace) -> None:
    with _client(args) as client:
        rows = [[m["name"], m["family"], m["status"], m["device"], m.get("reason")] for m in client.models()]
    print(_table(["model", "family", "status", "device", "reason"], rows))


def cmd_score(args: argparse.Namespace) -> None:
    with _client(args) as client:
        out = client.evidence_images(args.model, args.images, estimator=args.estimator, k=args.k, order=args.order,
                                     seed=args.seed, binarize=args.binarize)
    est = out["estimator"]
    print(f"model {out['model']} on {out['device']}: {est['name']} k={est['k']}"
          + (f" order={est['order']}" if est.get("order") else "") + f", binarize={out['binarization']['method']}, seed={out['seed']}")
    rows = []
    for path, r in zip(args.images, out["results"]):
        d = r.get("diagnostics") or {}
        rows.append([Path(path).name, r["log_px"], r["std_err"], d.get("ess"), d.get("khat")])
    print(_table(["image", "log_px", "std_err", "ess", "khat"], rows))


def cmd_compare(args: argparse.Namespace) -> None:
    with _client(args) as client:
        out = client.compare(args.model, _load_images(args.images), args.estimators, replicates=args.replicates,
                             seed=args.seed, reference=args.reference, binarize=args.binarize)
    rows = []
    for s in ([out["reference"]] if out["reference"] else []) + out["estimators"]:
        e = s["estimator"]
        name = f"{e['name']}-{e['k']}" + (f" (m={e['order']})" if e.get("order") else "")
        diff = s["diff_to_reference"]
        rows.append([name, s["mean_over_inputs"], s["sd_over_inputs"], (sum(diff) / len(diff)) if diff else None])
    print(f"model {out['model']}: {len(args.images)} images, {out['replicates']} replicates, common random numbers")
    print(_table(["estimator", "mean log_px", "sd", "diff to reference"], rows))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train", "evaluate"):
        from models import evaluate, train

        (train if argv[0] == "train" else evaluate).main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="logpx", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service (settings from LOGPX_* environment variables)").set_defaults(fn=cmd_serve)
    sub.add_parser("train", help="train a model (see python -m models.train --help)")
    sub.add_parser("evaluate", help="score a checkpoint on a data set (see python -m models.evaluate --help)")
    for name, fn in (("models", cmd_models), ("score", cmd_score), ("compare", cmd_compare)):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--url", default=os.environ.get("LOGPX_URL", "http://127.0.0.1:8000"))
        p.add_argument("--token", default=None, help="bearer token (or LOGPX_API_TOKEN)")
        if name == "models":
            continue
        p.add_argument("images", nargs="+", help="PNG or JPEG files, greyscale 28x28")
        p.add_argument("--model", required=True)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--binarize", choices=["threshold", "sample", "none"], default=None)
        if name == "score":
            p.add_argument("--estimator", choices=["elbo", "iwae", "jvi"], default="iwae")
            p.add_argument("--k", type=int, default=1000)
            p.add_argument("--order", type=int, default=None)
        else:
            p.add_argument("--estimators", type=_parse_estimator, nargs="+", required=True)
            p.add_argument("--reference", type=_parse_estimator, default=None)
            p.add_argument("--replicates", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except LogpxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
