"""Linear-Gaussian latent model with exact evidence (SPEC.md sections 1 and 2).

p(z) = N(0, I_d), p(x | z) = N(W z + b, sigma^2 I_D), so p(x) = N(x; b, W W^T + sigma^2 I_D) in closed
form. The encoder q(z | x) = N(A x + c, diag(exp(2 s))) is any Gaussian; a deliberately imperfect one
gives IWAE a real bias that the estimators must shrink, with the truth known exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .latent import LatentVariableModel
from .layers import chunks_over_k, normal_log_prob, standard_normal_log_prob

__all__ = ["LinearGaussianConfig", "LinearGaussian"]


@dataclass(frozen=True)
class LinearGaussianConfig:
    input_dim: int = 784
    latent: int = 4


class LinearGaussian(LatentVariableModel):
    family = "linear_gaussian"
    likelihood = "gaussian"

    def __init__(self, config: LinearGaussianConfig) -> None:
        super().__init__()
        self.config = config
        self.latent_sizes = [config.latent]
        d, D = config.latent, config.input_dim
        self.weight = nn.Parameter(torch.zeros(D, d))  # W
        self.bias = nn.Parameter(torch.zeros(D))  # b
        self.log_noise = nn.Parameter(torch.zeros(()))  # log sigma
        self.enc_weight = nn.Parameter(torch.zeros(d, D))  # A
        self.enc_bias = nn.Parameter(torch.zeros(d))  # c
        self.enc_log_sigma = nn.Parameter(torch.zeros(d))  # s

    @property
    def input_dim(self) -> int:
        return self.config.input_dim

    def arch(self) -> dict[str, object]:
        return asdict(self.config)

    def exact_posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A*, cov)`` of the true posterior p(z | x) = N(A* (x - b), cov), cov = (I + W^T W / s^2)^-1."""
        d = self.config.latent
        noise_var = torch.exp(2 * self.log_noise)
        precision = torch.eye(d, dtype=self.weight.dtype, device=self.weight.device) + self.weight.T @ self.weight / noise_var
        cov = torch.linalg.inv(precision)
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

    def log_weights_from_noise(
        self,
        x: torch.Tensor,
        noise: list[torch.Tensor],
        *,
        max_elements: int | None = None,
        before_chunk_fn: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        k, batch = noise[0].shape[:2]
        eps = noise[0].to(x.device, x.dtype)
        mu = x @ self.enc_weight.T + self.enc_bias  # [B, d]
        log_sigma = self.enc_log_sigma.expand_as(mu)
        out = torch.empty(k, batch, dtype=x.dtype, device=x.device)
        for rows in chunks_over_k(k, batch, 2 * self.config.input_dim, max_elements, x.device):
            if before_chunk_fn is not None:
                before_chunk_fn()  # lets a caller stop the work between chunks (deadline, cancellation)
            z = mu + torch.exp(log_sigma) * eps[rows]  # [c, B, d]
            mean = z @ self.weight.T + self.bias  # [c, B, D]
            log_lik = normal_log_prob(x, mean, self.log_noise.expand_as(mean))
            out[rows] = log_lik + standard_normal_log_prob(z) - normal_log_prob(z, mu, log_sigma)
        return out
