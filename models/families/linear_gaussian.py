"""Linear-Gaussian latent model with exact evidence (docs/estimators.md, ground truth).

p(z) = N(0, I_d), p(x | z) = N(W z + b, sigma^2 I_D), so p(x) = N(x; b, W W^T + sigma^2 I_D) in closed
form. The encoder q(z | x) = N(A x + c, diag(exp(2 s))) is any Gaussian; a deliberately imperfect one
gives IWAE a real bias that the estimators must shrink, with the truth known exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .base import GaussianLatentModel
from .layers import normal_log_prob

__all__ = ["LinearGaussian", "LinearGaussianConfig"]


@dataclass(frozen=True)
class LinearGaussianConfig:
    input_dim: int = 784
    latent: int = 4


class LinearGaussian(GaussianLatentModel):
    family = "linear_gaussian"
    likelihood = "gaussian"

    def __init__(self, config: LinearGaussianConfig, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(config.input_dim, input_shape)
        self.config = config
        self.latent_sizes = [config.latent]
        d, D = config.latent, config.input_dim
        self.weight = nn.Parameter(torch.zeros(D, d))  # W
        self.bias = nn.Parameter(torch.zeros(D))  # b
        self.log_noise = nn.Parameter(torch.zeros(()))  # log sigma
        self.enc_weight = nn.Parameter(torch.zeros(d, D))  # A
        self.enc_bias = nn.Parameter(torch.zeros(d))  # c
        self.enc_log_sigma = nn.Parameter(torch.zeros(d))  # s

    def arch(self) -> dict[str, object]:
        return asdict(self.config)

    def exact_posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A*, cov)`` of the true posterior p(z | x) = N(A* (x - b), cov), cov = (I + W^T W / s^2)^-1."""
        d = self.config.latent
        noise_var = torch.exp(2 * self.log_noise)
        eye = torch.eye(d, dtype=self.weight.dtype, device=self.weight.device)
        cov = torch.linalg.inv(eye + self.weight.T @ self.weight / noise_var)
        return cov @ self.weight.T / noise_var, cov

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(x; b, W W^T + sigma^2 I)`` for ``x`` ``[B, D]``, returns ``[B]``.

        Woodbury and the matrix determinant lemma keep it at O(D d^2): with M = I + W^T W / sigma^2,
        ``log det = D log sigma^2 + log det M`` and ``r^T C^-1 r = |r|^2 / sigma^2 - |M^-1/2 W^T r|^2 / sigma^4``.
        """
        D = self.config.input_dim
        noise_var = torch.exp(2 * self.log_noise)
        d = self.config.latent
        precision = torch.eye(d, dtype=x.dtype, device=x.device) + self.weight.T @ self.weight / noise_var
        chol = torch.linalg.cholesky(precision)
        r = x - self.bias  # [B, D]
        proj = torch.linalg.solve_triangular(chol, (r @ self.weight).T, upper=False)  # [d, B]
        quad = (r * r).sum(-1) / noise_var - (proj * proj).sum(0) / noise_var**2
        log_det = D * torch.log(noise_var) + 2 * torch.log(torch.diagonal(chol)).sum()
        return -0.5 * (quad + log_det + D * math.log(2 * math.pi))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = x @ self.enc_weight.T + self.enc_bias  # [B, d]
        return mu, self.enc_log_sigma.expand_as(mu)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = z @ self.weight.T + self.bias  # [..., B, D]
        return normal_log_prob(x, mean, self.log_noise.expand_as(mean))

    def sample_x(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = z @ self.weight.T + self.bias
        return mean + torch.exp(self.log_noise) * torch.randn(
            mean.shape, generator=generator, device=generator.device, dtype=mean.dtype
        )
