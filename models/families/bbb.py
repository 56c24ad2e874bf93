"""Bayes by Backprop (Blundell et al. 2015): a Bayesian MLP classifier for 28x28 images, in this file.

Every weight has a diagonal Gaussian posterior w = mu + softplus(rho) * eps, eps ~ N(0, I) (eq. (1)
of the paper's section 3.2), and the scale-mixture prior P(w) = pi N(0, s1^2) + (1 - pi) N(0, s2^2)
with s1 > s2, s2 << 1 (eq. (7)). The cost is the variational free energy
F = KL(q(w) || P(w)) - E_q log P(D | w), estimated with Monte Carlo weight samples (eq. (2)); minibatch
i of M carries KL weight pi_i = 2^(M-i) / (2^M - 1) (eq. (9)) or 1/M.

What the service asks of it is the posterior predictive log p(y | x, D) = log E_q p(y | x, w), a log of a
Monte Carlo mean over k weight samples: ``log_likelihoods`` returns the per-sample terms ``[k, B]``,
to which the IWAE and JVI estimators of ``logpx.estimators`` apply unchanged.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import CheckFn
from .base import Classifier
from .layers import HALF_LOG_2PI

DRAW_CHUNK = 16  # weight draws generated and evaluated together

__all__ = [
    "BBBConfig",
    "BayesMLP",
    "PredictiveSummary",
    "expected_calibration_error",
    "kl_weights",
    "predictive_summary",
]


@dataclass(frozen=True)
class BBBConfig:
    input_dim: int = 784
    hidden: list[int] = field(default_factory=lambda: [400, 400])  # the paper's 784-400-400-10
    classes: int = 10
    prior_pi: float = 0.5  # mixture weight of the wide component
    prior_log_s1: float = 0.0  # log s1 = -0 (s1 = 1), one of the paper's grid values
    prior_log_s2: float = -6.0  # log s2 = -6 (s2 = e^-6), s2 << 1
    init_rho: float = -5.0  # softplus(-5) ~ 0.0067: start near a point estimate

    def __post_init__(self) -> None:
        if not self.prior_log_s1 > self.prior_log_s2:
            raise ValueError("the scale mixture needs s1 > s2")
        if not 0 < self.prior_pi < 1:
            raise ValueError("prior_pi must lie in (0, 1)")


def kl_weights(num_batches: int, scheme: str = "blundell") -> torch.Tensor:
    """KL weight of each minibatch i = 1..M: ``2^(M-i) / (2^M - 1)`` (eq. (9)) or uniform ``1/M``.

    Computed in log space, so that large M neither overflows nor loses the later (tiny) weights.
    """
    if scheme == "uniform":
        return torch.full((num_batches,), 1.0 / num_batches, dtype=torch.float64)
    i = torch.arange(1, num_batches + 1, dtype=torch.float64)
    log_denominator = num_batches * math.log(2) + math.log(-math.expm1(-num_batches * math.log(2)))  # log(2^M - 1)
    return torch.exp((num_batches - i) * math.log(2) - log_denominator)


class BayesLinear(nn.Module):
    """A linear layer whose weight and bias are diagonal Gaussians ``mu + softplus(rho) * eps``."""

    def __init__(self, fan_in: int, fan_out: int, init_rho: float) -> None:
        super().__init__()
        bound = 1 / math.sqrt(fan_in)
        self.weight_mu = nn.Parameter(torch.empty(fan_out, fan_in).uniform_(-bound, bound))
        self.weight_rho = nn.Parameter(torch.full((fan_out, fan_in), init_rho))
        self.bias_mu = nn.Parameter(torch.zeros(fan_out))
        self.bias_rho = nn.Parameter(torch.full((fan_out,), init_rho))

    def sample(self, k: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """k weight draws ``[k, out, in]``, ``[k, out]`` and their summed ``log q(w)`` ``[k]``."""
        device, dtype = self.weight_mu.device, self.weight_mu.dtype
        eps_w = torch.randn((k, *self.weight_mu.shape), generator=generator, device=device, dtype=dtype)
        eps_b = torch.randn((k, *self.bias_mu.shape), generator=generator, device=device, dtype=dtype)
        sigma_w, sigma_b = F.softplus(self.weight_rho), F.softplus(self.bias_rho)
        w = self.weight_mu + sigma_w * eps_w
        b = self.bias_mu + sigma_b * eps_b
        # log q(w): (w - mu) / sigma is eps exactly.
        log_q = -(0.5 * eps_w.square() + torch.log(sigma_w) + HALF_LOG_2PI).sum((1, 2)) - (
            0.5 * eps_b.square() + torch.log(sigma_b) + HALF_LOG_2PI
        ).sum(1)
        return w, b, log_q


class BayesMLP(Classifier):
    family = "bbb"
    likelihood = "categorical"

    def __init__(self, config: BBBConfig, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(config.input_dim, input_shape)
        self.config = config
        sizes = [config.input_dim, *config.hidden, config.classes]
        self.layers = nn.ModuleList(BayesLinear(a, b, config.init_rho) for a, b in itertools.pairwise(sizes))

    @property
    def classes(self) -> int:
        return self.config.classes

    @property
    def bayes_layers(self) -> list[BayesLinear]:
        return [layer for layer in self.layers if isinstance(layer, BayesLinear)]

    def arch(self) -> dict[str, object]:
        return asdict(self.config)

    def log_prior(self, w: torch.Tensor) -> torch.Tensor:
        """Scale-mixture log density summed over all but the first (sample) dimension (eq. (7)), by
        ``logaddexp`` of the two components so that neither underflows."""
        c = self.config
        log_a = math.log(c.prior_pi) - c.prior_log_s1 - HALF_LOG_2PI - 0.5 * w.square() * math.exp(-2 * c.prior_log_s1)
        log_b = (
            math.log1p(-c.prior_pi) - c.prior_log_s2 - HALF_LOG_2PI - 0.5 * w.square() * math.exp(-2 * c.prior_log_s2)
        )
        return torch.logaddexp(log_a, log_b).flatten(1).sum(1)

    def sample_forward(
        self, x: torch.Tensor, k: int, generator: torch.Generator, check_fn: CheckFn | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class log-probabilities ``[k, B, C]`` under k weight draws, and ``log q(w) - log P(w)`` ``[k]``.

        Weights are drawn ``DRAW_CHUNK`` draws at a time (a draw is a whole network), so memory stays
        bounded for any k and the draws depend only on the generator and k.
        """
        log_probs, kl_terms = [], []
        for start in range(0, k, DRAW_CHUNK):
            if check_fn is not None:
                check_fn()
            n = min(DRAW_CHUNK, k - start)
            h = x.unsqueeze(0).expand(n, -1, -1)  # [n, B, in]
            log_q_minus_prior = torch.zeros(n, device=x.device, dtype=x.dtype)
            for i, layer in enumerate(self.bayes_layers):
                w, b, log_q = layer.sample(n, generator)
                log_q_minus_prior = log_q_minus_prior + log_q - self.log_prior(w) - self.log_prior(b)
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # [n, B, out]
                if i < len(self.layers) - 1:
                    h = F.relu(h)
            log_probs.append(F.log_softmax(h, dim=-1))
            kl_terms.append(log_q_minus_prior)
        return torch.cat(log_probs), torch.cat(kl_terms)

    def free_energy(
        self, x: torch.Tensor, y: torch.Tensor, kl_weight: float, generator: torch.Generator, num_samples: int = 1
    ) -> torch.Tensor:
        """Minibatch cost ``kl_weight * (log q(w) - log P(w)) - log P(D_i | w)``, averaged over
        ``num_samples`` weight draws (eq. (8) with the minibatch weighting of eq. (9))."""
        log_probs, log_q_minus_prior = self.sample_forward(x, num_samples, generator)
        nll = -self.label_log_likelihoods(log_probs, y).sum(1)  # [n]
        return (kl_weight * log_q_minus_prior + nll).mean()


class PredictiveSummary(NamedTuple):
    """Each per input: ``probs`` ``[B, C]`` predictive class probabilities; ``predicted`` ``[B]``;
    ``entropy`` total predictive entropy, split into ``aleatoric`` (expected entropy under the
    posterior) and ``epistemic`` (their difference, the mutual information between y and w), in nats."""

    probs: torch.Tensor
    predicted: torch.Tensor
    entropy: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor


def predictive_summary(log_probs: torch.Tensor) -> PredictiveSummary:
    """From class log-probabilities ``[k, B, C]`` of k weight draws (Depeweg et al. 2018, eq. (15))."""
    k = log_probs.shape[0]
    lp = log_probs.double()
    log_mean = torch.logsumexp(lp, dim=0) - math.log(k)  # [B, C]
    probs = log_mean.exp()
    entropy = -(probs * log_mean).sum(-1)
    aleatoric = -(lp.exp() * lp).sum(-1).mean(0)
    return PredictiveSummary(probs, probs.argmax(-1), entropy, aleatoric, (entropy - aleatoric).clamp(min=0.0))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, num_bins: int = 15) -> float:
    """ECE over ``num_bins`` equal-width confidence bins (Guo et al. 2017, eq. (3)); ``probs`` ``[B, C]``."""
    confidence, predicted = probs.max(-1)
    correct = (predicted == labels).double()
    bins = torch.clamp((confidence * num_bins).long(), max=num_bins - 1)
    ece = torch.zeros((), dtype=torch.float64)
    for b in range(num_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.double().mean() * (confidence[in_bin].double().mean() - correct[in_bin].mean()).abs()
    return float(ece)
