"""Prints the model-card tables of checkpoints/README.md from the checkpoints' metadata and the
evaluation command's JSON in checkpoints/cards/ (written by checkpoints/evaluate_all.sh).

    python checkpoints/make_cards.py
"""

from __future__ import annotations

import json
from pathlib import Path

from logpx.io.checkpoint import read_metadata

HERE = Path(__file__).parent


def fmt(e: dict[str, float]) -> str:
    bits = f", {e['bits_per_dim']:.4f} bits/dim" if "bits_per_dim" in e else ""
    return f"{e['mean']:.2f} ± {e['se_over_images']:.2f} (MC ± {e['mc_se_of_mean']:.3f}{bits})"


def main() -> None:
    print(
        "| model | layers / latent | objective | epochs | train wall time | held-out ELBO | held-out IWAE-5000 | held-out JVI-5000 (m=1) | k-hat > threshold | quick check IWAE-1000 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for card in sorted(HERE.glob("cards/*.json")):
        if ".quick" in card.name or ".ais" in card.name or card.stem.startswith("bbb"):
            continue
        meta = read_metadata(HERE / f"{card.stem}.safetensors")
        out = json.loads(card.read_text())
        quick = json.loads((HERE / "cards" / f"{card.stem}.quick.json").read_text())["estimators"]["iwae-1000"]
        t = meta["training"]
        arch = meta["arch"]
        network = "conv" if meta["family"] == "layered_vae" else arch.get("layers", 1)
        shape = f"{network} / {arch['latent']}"
        objective = (
            t["objective"] + (f" k={t['k']}" if t.get("k") else "") + (f" m={t['order']}" if t.get("order") else "")
        )
        est = out["estimators"]
        diag = out.get("diagnostics", {})
        exact = f" (exact {out['exact_log_px']:.2f})" if "exact_log_px" in out else ""
        print(
            f"| `{card.stem}` | {shape} | {objective} | {t['epochs']} | {t.get('wall_time_s', 0) / 60:.0f} min | {fmt(est['elbo-5000'])} | "
            f"{fmt(est['iwae-5000'])}{exact} | {fmt(est['jvi-5000-m1'])} | {100 * diag.get('fraction_khat_over_threshold', float('nan')):.1f}% | "
            f"{quick['mean']:.3f} ± {quick['mc_se_of_mean']:.3f} |"
        )

    print()
    ais_table()


def ais_table() -> None:
    """Importance sampling against AIS on the same held-out images, and BDMC's gap for the AIS setting
    (checkpoints/evaluate_ais.sh)."""
    print(
        "| model | images | IWAE-5000 | JVI-5000 (m=1) | AIS | AIS - IWAE-5000 (paired) | BDMC gap, mean (max) over 8 | AIS acceptance |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for card in sorted(HERE.glob("cards/*.ais.json")):
        out = json.loads(card.read_text())
        est, a, b = out["estimators"], out["ais"], out["bdmc"]
        exact = f" (exact {out['exact_log_px']:.2f})" if "exact_log_px" in out else ""
        print(
            f"| `{card.name.removesuffix('.ais.json')}` | {a['images']} | {fmt(est['iwae-5000'])}{exact} | {fmt(est['jvi-5000-m1'])} | "
            f"{a['mean']:.2f} ± {a['se_over_images']:.2f} (MC ± {a['mc_se_of_mean']:.3f}) | "
            f"{a['minus_iwae']['mean']:+.3f} ± {a['minus_iwae']['se']:.3f} | {b['mean_gap']:.3f} ({b['max_gap']:.3f}) | "
            f"{a['mean_acceptance']:.2f} |"
        )


if __name__ == "__main__":
    main()
