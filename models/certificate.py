"""A certificate of an AIS setting for one checkpoint (``logpx.samplers.certify`` measures them), and the
two questions asked of a set of them: which setting ``ais:auto`` runs (``resolve``) and which certificate
covers a run (``certificate_for``, read by the verdict). Pure data: no model, no tensor."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .plan import AIS, Entry, Plan, Sampler, parse_sampler

__all__ = ["CONFIDENCE", "Certificate", "Uncertified", "certificate_for", "resolve", "weakest"]

CONFIDENCE = 0.95  # one-sided: the gap is below the bound with this probability, by the normal approximation
Z = 1.6448536269514722  # its quantile


@dataclass(frozen=True)
class Certificate:
    """One BDMC measurement of an AIS ``setting`` on ``inputs`` inputs simulated from the model with
    ``checkpoint`` (its file's sha256), ``chains`` chains each way: the gap's mean and standard error over
    inputs, and ``log_w_var``, the forward log-weights' variance over chains averaged over the inputs (the
    verdict's test of whether a real input is as easy as the simulated ones)."""

    setting: AIS
    checkpoint: str
    chains: int
    inputs: int
    mean_gap: float
    gap_std_err: float
    log_w_var: float
    seed: int
    seconds: float
    created: float

    @property
    def gap_bound(self) -> float:
        """The gap's upper ``CONFIDENCE`` bound."""
        return self.mean_gap + Z * self.gap_std_err

    def meets(self, tolerance: float) -> bool:
        return math.isfinite(self.gap_bound) and self.gap_bound <= tolerance

    def covers(self, sampler: Sampler, k: int) -> bool:
        """It certifies ``sampler`` run with ``k`` chains: the same setting, at least as many chains."""
        return sampler == self.setting and k >= self.chains

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "setting": str(self.setting)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Certificate:
        setting = parse_sampler(str(data["setting"]))
        if not isinstance(setting, AIS) or setting.auto:
            raise ValueError(f"a certificate's setting is a fixed AIS schedule, got {data['setting']!r}")
        return cls(**{**data, "setting": setting})


class Uncertified(ValueError):
    """A plan asks for ``ais:auto`` at a tolerance no certificate of the model meets yet."""

    def __init__(self, sampler: AIS, entry: int) -> None:
        self.sampler, self.entry = sampler, entry
        super().__init__(
            f"no certificate of this model meets {sampler.tolerance:g} nats for AIS with {sampler.leapfrog} leapfrog "
            f"steps from the {sampler.init} on the {sampler.schedule} schedule: certify it first"
        )


def weakest(certificates: Iterable[Certificate]) -> Certificate | None:
    """Of several measurements, the one with the widest gap bound: each is noisy, and the least favourable is
    what a verdict or a choice may rely on."""
    return max(certificates, key=lambda c: c.gap_bound, default=None)


def certificate_for(sampler: Sampler, k: int, certificates: Iterable[Certificate]) -> Certificate | None:
    """The weakest certificate that covers ``sampler`` with ``k`` chains, if any."""
    return weakest(c for c in certificates if c.covers(sampler, k))


def resolve(plan: Plan, certificates: Iterable[Certificate]) -> Plan:
    """``plan`` with every ``ais:auto`` entry run at the fewest steps whose certificates (same leapfrog, start and
    schedule) all meet its tolerance; ``Uncertified`` names the first entry none does. All, not any: a setting
    measured several times (other seeds, other searches) would otherwise pass on its luckiest measurement."""
    certs = list(certificates)
    entries = []
    for i, e in enumerate(plan.entries):
        s = e.sampler
        if isinstance(s, AIS) and s.auto:
            fixed = {"leapfrog": s.leapfrog, "init": s.init, "schedule": s.schedule}
            by_setting: dict[AIS, list[Certificate]] = {}
            for c in certs:
                if {name: getattr(c.setting, name) for name in fixed} == fixed:
                    by_setting.setdefault(c.setting, []).append(c)
            passing = [setting for setting, cs in by_setting.items() if all(c.meets(s.tolerance) for c in cs)]
            if not passing:
                raise Uncertified(s, i)
            e = Entry(e.spec, min(passing, key=lambda setting: setting.temperatures))
        entries.append(e)
    return Plan(tuple(entries))
