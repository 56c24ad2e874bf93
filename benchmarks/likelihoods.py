"""What a likelihood costs: log p(x | z) of each 8-bit likelihood against the Bernoulli's on the same chains,
inputs and data values, forward and forward + backward (AIS differentiates it), alternated in one run; then
whole models, the shipped 8-bit ``conv-mnist8`` (a mixture of 5 discretised logistics) against ``conv-mnist`` (the
same network, Bernoulli): importance log-weights and AIS-style gradient evaluations per sample.

    python -m benchmarks.likelihoods [--chains 16] [--inputs 16] [--threads 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from logpx.families import LatentVariableModel
from logpx.families.likelihoods import observation_log_prob, params_per_value
from logpx.io import load_checkpoint
from logpx.runtime import keep_freed_memory

from .machine import RESULTS_DIR, machine_info, timed_together

# (likelihood, scale, mixtures): the decoder output each takes is params_per_value x D.
LIKELIHOODS = (
    ("bernoulli", "fixed", 1),
    ("discretized_logistic", "predicted", 1),
    ("discretized_logistic_mixture", "predicted", 5),
    ("categorical_256", "fixed", 1),
)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--values", type=int, default=784)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS_DIR / "likelihoods-cpu.json"))
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    k, b, d = args.chains, args.inputs, args.values
    x = torch.round(torch.rand(b, d, generator=g) ** 4 * 255) / 255  # mostly dark, as digits are
    binary = (x > 0.5).float()

    def likelihood(name: str, scale: str, mixtures: int, backward: bool) -> Callable[[], None]:
        out = torch.randn(k, b, params_per_value(name, scale, mixtures) * d, generator=g)
        data = binary if name == "bernoulli" else x

        def run() -> None:
            o = out.detach().requires_grad_(backward)
            log_p = observation_log_prob(name, data, o, scale, mixtures, 0.0)
            if backward:
                log_p.sum().backward()

        return run

    result: dict[str, object] = {"machine": machine_info("cpu"), "chains": k, "inputs": b, "values": d}
    m = result["machine"]
    assert isinstance(m, dict)
    print(f"machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads)")
    for backward in (False, True):
        label = "forward + backward" if backward else "forward"
        runs = {name: likelihood(name, scale, mixtures, backward) for name, scale, mixtures in LIKELIHOODS}
        times = timed_together(runs, args.repeats)
        base = times["bernoulli"]["median_s"]
        result[label] = {n: {**t, "ratio_to_bernoulli": t["median_s"] / base} for n, t in times.items()}
        print(f"log p(x | z), {k} chains x {b} inputs x {d} values, {label}:")
        for n, t in times.items():
            print(f"  {n:<30} {1e3 * t['median_s']:8.2f} ms  {t['median_s'] / base:5.2f}x Bernoulli")

    models = {}
    for name in ("conv-mnist", "conv-mnist8"):
        model = load_checkpoint(Path("checkpoints") / f"{name}.safetensors").model
        assert isinstance(model, LatentVariableModel)
        models[name] = (model, binary if name == "conv-mnist" else x)

    def draws(name: str) -> Callable[[], None]:
        model, data = models[name]
        return lambda: model.log_weights(data, k, g)

    def gradients(name: str) -> Callable[[], None]:
        model, data = models[name]
        z = torch.randn(k, b, model.latent_dim, generator=g)

        def run() -> None:
            with torch.enable_grad():
                w = z.detach().requires_grad_(True)
                torch.autograd.grad(model.log_joint(data, w).sum(), w)

        return run

    with torch.no_grad():
        for label, make in (("importance log-weights", draws), ("gradient evaluations", gradients)):
            times = timed_together({n: make(n) for n in models}, args.repeats)
            ratio = times["conv-mnist8"]["median_s"] / times["conv-mnist"]["median_s"]
            result[f"models, {label}"] = {**times, "ratio_8_bit_to_binary": ratio}
            print(
                f"{label}, {k} x {b}: conv-mnist {1e3 * times['conv-mnist']['median_s']:.1f} ms, conv-mnist8 "
                f"{1e3 * times['conv-mnist8']['median_s']:.1f} ms: {ratio:.2f}x"
            )
    Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
