"""The baseline logpx is measured against: the per-example loop of public reference code.

One image at a time, the image repeated k times so that every network (the encoder included) runs on
every row, densities evaluated at the drawn sample, the Bernoulli term as an elementwise cross-entropy
on the logits, all in float64. It shares the checkpoint's modules and the noise with logpx, and none of
logpx's shortcuts (encoder once per image, log q from the noise, x . logits through the last layer once
per image, cache-sized chunks), so "identical work" means the same draws and the same answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from logpx.families.layers import normal_log_prob, standard_normal_log_prob
from logpx.families.vae import VAE

__all__ = ["float64_copy", "reference_log_weights", "reference_loop"]


def reference_log_weights(model: VAE, x_rows: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``[k]`` log-weights for ``x_rows`` ``[k, 784]`` (one image, repeated) and ``noise`` ``[k, latent_dim]``
    (the layers' noise side by side, bottom layer first, as ``model.sample_noise`` draws it)."""
    noise = noise.split(model.latent_sizes, dim=-1)
    mu1, log_sigma1 = model.encoder(x_rows)
    h1 = mu1 + torch.exp(log_sigma1) * noise[0]
    log_q = normal_log_prob(h1, mu1, log_sigma1)
    if model.config.layers == 1:
        log_prior = standard_normal_log_prob(h1)
    else:
        mu2, log_sigma2 = model.encoder2(h1)
        h2 = mu2 + torch.exp(log_sigma2) * noise[1]
        log_q = log_q + normal_log_prob(h2, mu2, log_sigma2)
        log_prior = standard_normal_log_prob(h2) + normal_log_prob(h1, *model.prior1(h2))
    logits = model.decoder(h1)
    log_lik = -F.binary_cross_entropy_with_logits(logits, x_rows, reduction="none").sum(-1)
    return log_lik + log_prior - log_q


def float64_copy(model: VAE) -> VAE:
    """The same checkpoint in float64, leaving ``model`` as it was."""
    model64 = VAE(model.config).double().to(next(model.parameters()).device)
    model64.load_state_dict(model.state_dict())
    return model64.eval()


def reference_loop(model64: VAE, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``[k, B]`` log-weights of ``x`` ``[B, 784]``, one image per pass, in float64 (``noise`` ``[k, B, latent_dim]``
    as from ``model.sample_noise(k, B)``)."""
    columns = []
    for i in range(x.shape[0]):
        rows = x[i].double().expand(noise.shape[0], -1)
        columns.append(reference_log_weights(model64, rows, noise[:, i].double()))
    return torch.stack(columns, dim=1)
