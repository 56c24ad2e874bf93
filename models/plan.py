"""The Plan: what to run on a batch of inputs, as one typed value that every door parses once (HTTP JSON,
forms, query strings, the CLI, job columns) and every executor runs (``logpx.samplers.run_plan``).

A plan is a tuple of entries; an entry is an estimator (``EstimatorSpec``) and the sampler that draws its
log-weights. Entries that share a sampler share its draw: an estimator with k samples uses the first k of
it (common random numbers). A plan knows no model, no tensor and no URL.

One text grammar, parsed and printed by the same code (``parse(str(x)) == x``)::

    PLAN    := ENTRY ( " " ENTRY )*
    ENTRY   := SPEC [ "@" SAMPLER ]                      (no sampler: importance)
    SPEC    := elbo:K | iwae:K | jvi:K:ORDER             (jvi:K is read as order 1)
    SAMPLER := importance | ais:STEPS[:LEAPFROG[:INIT[:SCHEDULE]]] | ais:auto[:LEAPFROG[:INIT[:SCHEDULE[:TOL]]]]
             | any registered sampler's NAME[:ARGS]

    iwae:5000 jvi:5000:1 jvi:5000:2        iwae:100@ais:1000        iwae:100@ais:1000:10:prior:linear
    iwae:16@ais:auto                       (the schedule certified to 0.1 nats; ais:auto:10:encoder:sigmoid:0.05)

``parse(str(x)) == x`` for every value; a sampler's printed arguments stop at the last one that differs
from its default (AIS always prints its steps), so ``ais:1000:10`` is read as given and printed as ``ais:1000``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, get_args

from .estimators.jackknife import DEFAULT_EXACT_BUDGET, check_exact, jackknife_elements

__all__ = [
    "AIS",
    "AIS_TUNE_CHAINS",
    "AUTO",
    "DEFAULT_TOLERANCE",
    "IMPORTANCE",
    "Cost",
    "Entry",
    "EstimatorName",
    "EstimatorSpec",
    "External",
    "Importance",
    "Plan",
    "Sampler",
    "WeightDraws",
    "parse_sampler",
    "parse_spec",
]

EstimatorName = Literal["elbo", "iwae", "jvi"]
ESTIMATORS: tuple[str, ...] = get_args(EstimatorName)


@dataclass(frozen=True)
class EstimatorSpec:
    """Which estimator to run: ``name``, number of samples ``k``, JVI ``order`` (ignored, and 1, for the others).
    A JVI whose leave-j-out averages cannot all be exact within ``exact_budget`` is refused here
    (``jackknife.NotExact``, a ``ValueError`` naming the largest k at which it is exact)."""

    name: EstimatorName
    k: int
    order: int = 1
    exact_budget: int = dataclasses.field(default=DEFAULT_EXACT_BUDGET, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.name!r}; choose one of {list(ESTIMATORS)}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.is_jackknife:
            if not 1 <= self.order < self.k:
                raise ValueError(f"jvi needs 1 <= order < k, got order={self.order}, k={self.k}")
            check_exact(self.k, self.order, self.exact_budget)
        else:  # the order is JVI's alone: any other estimator is the same estimator whatever it was given
            object.__setattr__(self, "order", 1)

    @property
    def is_jackknife(self) -> bool:
        """A jackknife (JVI) estimator: it has an order, and leave-j-out work to pay for."""
        return self.name == "jvi"

    @property
    def jackknife_order(self) -> int | None:
        """The JVI order, ``None`` for estimators without one (how the HTTP contract states it)."""
        return self.order if self.is_jackknife else None

    def jackknife_work(self) -> int:
        """Leave-j-out elements averaged per input (0 for ELBO and IWAE)."""
        return jackknife_elements(self.k, self.order) if self.is_jackknife else 0

    def __str__(self) -> str:
        return f"{self.name}:{self.k}" + (f":{self.order}" if self.is_jackknife else "")


def _integers(parts: list[str], what: str, text: str, form: str) -> list[int]:
    if not all(re.fullmatch(r"[0-9]{1,12}", p) for p in parts):
        raise ValueError(f"{what} {text!r}: expected {form}, with whole numbers after the name")
    return [int(p) for p in parts]


def parse_spec(text: str) -> EstimatorSpec:
    """``elbo:K``, ``iwae:K`` or ``jvi:K:ORDER`` (``jvi:K`` is order 1) -> an ``EstimatorSpec``;
    ``ValueError`` otherwise."""
    name, *rest = text.strip().split(":")
    if name not in ESTIMATORS or not 1 <= len(rest) <= (2 if name == "jvi" else 1):
        raise ValueError(f"estimator {text!r}: expected NAME:K (elbo, iwae) or jvi:K:ORDER")
    numbers = _integers(rest, "estimator", text, "NAME:K (elbo, iwae) or jvi:K:ORDER")
    return EstimatorSpec(name, *numbers)  # type: ignore[arg-type]


class Sampler:
    """What draws an entry's log-weights. Subclasses are frozen dataclasses with a class-level ``name``;
    each registers itself for the text grammar and the HTTP ``sampler`` object when it is defined, so a
    new sampler is one module (its value here, its ``draw`` registered with ``logpx.samplers.draw``).

    ``requestable``: whether a client may ask for it (False for the kinds of weights logpx only judges).
    ``annealed``: its model evaluations are gradient evaluations (the AIS budget counts them)."""

    name: ClassVar[str]
    requestable: ClassVar[bool] = True
    annealed: ClassVar[bool] = False
    printed_args: ClassVar[int] = 0  # arguments printed even when they hold their defaults
    registry: ClassVar[dict[str, type[Sampler]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name in Sampler.registry:
            raise ValueError(f"a sampler named {cls.name!r} is registered already")
        Sampler.registry[cls.name] = cls

    def evaluations(self, k: int) -> int:
        """Model evaluations per input to draw k log-weights (one forward pass per importance draw)."""
        return k

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """The settings it takes, in order (its dataclass fields)."""
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    def settings(self) -> dict[str, Any]:
        """Its fields with their values, defaults filled in (the HTTP ``sampler`` object, less the name)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def _args(self) -> list[str]:
        """The printed arguments after the name: every field, trailing defaults dropped."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        values = [str(getattr(self, f.name)) for f in fields]
        defaults = [str(f.default) for f in fields]
        while len(values) > self.printed_args and values[-1] == defaults[len(values) - 1]:
            values.pop()
        return values

    def __str__(self) -> str:
        return ":".join([self.name, *self._args()])

    @classmethod
    def from_args(cls, args: list[str]) -> Sampler:
        """The value for the text arguments after the name, converted by each field's type."""
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if len(args) > len(fields):
            raise ValueError(f"sampler {cls.name} takes at most {len(fields)} arguments, got {len(args)}")
        values: dict[str, Any] = {}
        for f, text in zip(fields, args, strict=False):
            values[f.name] = (
                _integers([text], f"sampler {cls.name}", text, f"a number for {f.name}")[0] if f.type == "int" else text
            )
        return cls.from_settings(values)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Sampler:
        """The value for keyword settings (``None`` means the default); ``ValueError`` names a wrong one."""
        settings = {key: value for key, value in settings.items() if value is not None}
        known = set(cls.setting_names())
        unknown = sorted(set(settings) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "no settings"
            raise ValueError(f"{unknown[0]} does not apply to the {cls.name} sampler (it takes {allowed})")
        return cls(**settings)


@dataclass(frozen=True)
class Importance(Sampler):
    """k independent draws from the encoder q(z | x)."""

    name: ClassVar[str] = "importance"


IMPORTANCE = Importance()  # the default sampler, one value for every default argument

AIS_TUNE_CHAINS = 8  # chains of the tuning pass that fixes AIS step sizes (Wu et al. 2017 tune on few)
# The tuning pass costs at most TUNE_SHARE of the estimating pass where that leaves it TUNE_MIN_TEMPERATURES:
# with all T temperatures its 8 chains cost a third of a 16-chain call. Step sizes vary smoothly along the
# schedule, but a coarser pass tunes them less well: on the poor-encoder linear-Gaussian model (64 chains, 2,000
# steps, 12 seeds) a quarter of the temperatures raised the chains' log-weight variance by 12%, which at 16
# chains buys a 1.36x faster call (1.2x the precision per second) and at 100 chains costs more than it saves.
TUNE_SHARE = 0.1
TUNE_MIN_TEMPERATURES = 100
AISInit = Literal["encoder", "prior"]
AISSchedule = Literal["sigmoid", "linear", "geometric"]
AUTO = "auto"  # AIS steps chosen by a certificate (logpx.samplers.certify)
DEFAULT_TOLERANCE = 0.1  # nats of BDMC gap a certified setting is held to unless the client names another


@dataclass(frozen=True)
class AIS(Sampler):
    """Annealed importance sampling (Neal 2001) with HMC moves: k chains through ``steps`` temperatures,
    ``leapfrog`` steps per move, started at the encoder or the prior, temperatures on ``schedule``.

    ``steps="auto"``: the fewest temperatures whose BDMC gap a certificate of the model bounds by
    ``tolerance`` nats (``logpx.samplers.certify``); such a plan runs once ``logpx.certificate.resolve`` has replaced it
    with the certified setting. ``tolerance`` belongs to ``auto`` alone."""

    name: ClassVar[str] = "ais"
    annealed: ClassVar[bool] = True
    printed_args: ClassVar[int] = 1  # ais:1000, never a bare ais: the steps are what a reader looks for

    steps: int | Literal["auto"] = 1000
    leapfrog: int = 10
    init: AISInit = "encoder"
    schedule: AISSchedule = "sigmoid"
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        steps, tolerance = self.steps, self.tolerance
        if isinstance(steps, str) and steps != AUTO:  # the text grammar's argument
            steps = _integers([steps], "AIS steps", steps, "a whole number or auto")[0]
        if isinstance(tolerance, str):
            try:
                tolerance = float(tolerance)
            except ValueError:
                raise ValueError(f"AIS tolerance {tolerance!r}: expected a number of nats") from None
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "tolerance", float(tolerance))
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ValueError(f"AIS tolerance must be a positive number of nats, got {self.tolerance}")
        if self.steps != AUTO and self.tolerance != DEFAULT_TOLERANCE:
            raise ValueError("tolerance applies to steps auto only: a fixed schedule is certified by BDMC, not chosen")
        if (self.steps != AUTO and int(self.steps) < 1) or self.leapfrog < 1:
            raise ValueError(f"AIS needs steps >= 1 and leapfrog >= 1, got {self.steps}, {self.leapfrog}")
        if self.init not in get_args(AISInit):
            raise ValueError(f"unknown AIS init {self.init!r}; choose one of {list(get_args(AISInit))}")
        if self.schedule not in get_args(AISSchedule):
            raise ValueError(f"unknown AIS schedule {self.schedule!r}; choose one of {list(get_args(AISSchedule))}")

    def settings(self) -> dict[str, Any]:
        """Its settings; ``tolerance`` only where it applies (steps auto)."""
        out = super().settings()
        if not self.auto:
            del out["tolerance"]
        return out

    @property
    def auto(self) -> bool:
        """Its steps are to be chosen by a certificate."""
        return self.steps == AUTO

    @property
    def temperatures(self) -> int:
        """The steps of a fixed schedule (``ValueError`` for auto: nothing runs before ``resolve``)."""
        if isinstance(self.steps, str):
            raise ValueError(f"{self} has no schedule until a certificate chooses it (logpx.certificate.resolve)")
        return self.steps

    def tuning_temperatures(self, estimating: int | None) -> int:
        """Temperatures of the tuning pass before ``estimating`` chains (all of them when None): what costs
        ``TUNE_SHARE`` of the estimate, at least ``TUNE_MIN_TEMPERATURES``, at most the schedule's."""
        steps = self.temperatures
        wanted = steps if estimating is None else math.ceil(steps * TUNE_SHARE * estimating / AIS_TUNE_CHAINS)
        return min(steps, max(TUNE_MIN_TEMPERATURES, wanted))

    def pass_evaluations(self, chains: int, temperatures: int | None = None) -> int:
        """Gradient evaluations of ``chains`` chains through ``temperatures`` (default: the schedule's), as
        ``logpx.samplers.ais`` makes them: one at the start, then L leapfrog evaluations for each of the T - 1
        moves (the state at a new temperature is a sum of terms at hand; the last temperature moves no chain)."""
        t = self.temperatures if temperatures is None else temperatures
        return chains * (1 + (t - 1) * self.leapfrog)

    def evaluations(self, k: int) -> int:
        """Gradient evaluations per input of an estimate with k chains: the tuning pass, then the k chains."""
        return self.pass_evaluations(AIS_TUNE_CHAINS, self.tuning_temperatures(k)) + self.pass_evaluations(k)

    def bdmc_evaluations(self, k: int) -> int:
        """Gradient evaluations of BDMC per simulated input: one tuning pass for both directions, then k chains
        forwards and k in reverse."""
        return self.pass_evaluations(AIS_TUNE_CHAINS, self.tuning_temperatures(2 * k)) + 2 * self.pass_evaluations(k)


@dataclass(frozen=True)
class WeightDraws(Sampler):
    """A Bayesian classifier's draws of its weights from q(w): no encoder, nothing to anneal."""

    name: ClassVar[str] = "weights"
    requestable: ClassVar[bool] = False


@dataclass(frozen=True)
class External(Sampler):
    """Log-weights the client computed with its own model and proposal: logpx can only judge them."""

    name: ClassVar[str] = "external"
    requestable: ClassVar[bool] = False


def parse_sampler(text: str) -> Sampler:
    """``importance``, ``ais:1000``, ``ais:1000:10:prior`` ... -> a ``Sampler``; ``ValueError`` otherwise."""
    name, *args = text.strip().split(":")
    cls = Sampler.registry.get(name)
    if cls is None:
        raise ValueError(f"sampler {text!r}: unknown sampler {name!r}; choose one of {sorted(Sampler.registry)}")
    return cls.from_args(args)


@dataclass(frozen=True)
class Entry:
    """One estimator of a plan and the sampler of its log-weights."""

    spec: EstimatorSpec
    sampler: Sampler = Importance()

    def __str__(self) -> str:
        return str(self.spec) + ("" if isinstance(self.sampler, Importance) else f"@{self.sampler}")

    @classmethod
    def parse(cls, text: str) -> Entry:
        spec, at, sampler = text.strip().partition("@")
        if at and not sampler:
            raise ValueError(f"entry {text!r}: a sampler must follow '@'")
        return cls(parse_spec(spec), parse_sampler(sampler) if at else Importance())


class Cost(NamedTuple):
    """What a plan costs on some inputs: ``evaluations`` of the model in all (importance draws and AIS
    gradient evaluations; the job chunker sizes chunks by it), ``gradient_evals`` of annealed samplers
    (their own budget), ``samples`` inputs x the largest k (log-weights held at once), and ``jackknife``
    leave-j-out elements of every JVI."""

    evaluations: int
    gradient_evals: int
    samples: int
    jackknife: int


@dataclass(frozen=True)
class Plan:
    """Estimators with their samplers, in order. The same entry twice is allowed (a comparison shows
    common random numbers that way); whoever names results by entry (job columns) asks ``repeated``."""

    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("a plan needs at least one estimator")

    def repeated(self) -> Entry | None:
        """The first entry that appears twice, if any."""
        seen: set[Entry] = set()
        for e in self.entries:
            if e in seen:
                return e
            seen.add(e)
        return None

    @classmethod
    def of(cls, *entries: Entry | EstimatorSpec | str, sampler: Sampler | None = None) -> Plan:
        """A plan from entries, specs or entry texts; ``sampler`` for those that name none."""

        def entry(e: Entry | EstimatorSpec | str) -> Entry:
            if isinstance(e, Entry):
                return e
            if isinstance(e, EstimatorSpec):
                return Entry(e, sampler or Importance())
            parsed = Entry.parse(e)
            return Entry(parsed.spec, sampler) if sampler is not None and "@" not in e else parsed

        return cls(tuple(entry(e) for e in entries))

    @classmethod
    def parse(cls, text: str) -> Plan:
        """Entries separated by spaces or commas (the CLI's and a query string's form)."""
        return cls(tuple(Entry.parse(t) for t in re.split(r"[\s,]+", text.strip()) if t))

    def __str__(self) -> str:
        return " ".join(str(e) for e in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def draws(self) -> dict[Sampler, int]:
        """Each distinct sampler and the most log-weights any of its entries needs: one draw each."""
        out: dict[Sampler, int] = {}
        for e in self.entries:
            out[e.sampler] = max(out.get(e.sampler, 0), e.spec.k)
        return out

    def cost(self, inputs: int = 1, replicates: int = 1) -> Cost:
        times = inputs * replicates
        draws = self.draws()
        return Cost(
            evaluations=times * sum(s.evaluations(k) for s, k in draws.items()),
            gradient_evals=times * sum(s.evaluations(k) for s, k in draws.items() if s.annealed),
            samples=times * max(e.spec.k for e in self.entries),
            jackknife=times * sum(e.spec.jackknife_work() for e in self.entries),
        )
