"""What every latent-variable family shares: its noise, the log-weights built on it, and a warm-up."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["LatentVariableModel"]


class LatentVariableModel(nn.Module):
    """Subclasses set ``latent_sizes`` (one entry per stochastic layer), ``family``, ``likelihood``, and
    implement ``log_weights_from_noise``, ``arch`` and ``input_dim``."""

    family: str
    likelihood: str
    latent_sizes: list[int]

    @property
    def input_dim(self) -> int:
        raise NotImplementedError

    def arch(self) -> dict[str, object]:
        raise NotImplementedError

    def sample_noise(self, k: int, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Reparameterisation noise for k draws of ``batch`` inputs: one ``[k, B, d]`` tensor per
        stochastic layer, on the generator's device. Drawn up front (small beside the decoder's
        activations), so that the same generator state gives the same log-weights whatever the chunking,
        and so that requests batched together each keep their own draws."""
        device = generator.device if generator is not None else None
        return [torch.randn(k, batch, d, generator=generator, device=device) for d in self.latent_sizes]

    def log_weights_from_noise(
        self,
        x: torch.Tensor,
        noise: list[torch.Tensor],
        *,
        max_elements: int | None = None,
        before_chunk_fn: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """``[k, B]`` log-weights ``log p(x, z) - log q(z | x)`` of ``x`` ``[B, input_dim]`` for the
        given ``sample_noise`` output, chunked over k so that activations stay within ``max_elements``
        (default: ``layers.chunk_elements`` of the device);
        ``before_chunk_fn`` is called before each chunk and may raise to stop the work (deadlines)."""
        raise NotImplementedError

    def log_weights(
        self,
        x: torch.Tensor,
        k: int,
        *,
        generator: torch.Generator | None = None,
        max_elements: int | None = None,
        before_chunk_fn: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Draw k latents per input (``x`` ``[B, input_dim]`` on the model's device) and return their
        ``[k, B]`` log-weights in the model's dtype."""
        noise = self.sample_noise(k, x.shape[0], generator)
        return self.log_weights_from_noise(x, noise, max_elements=max_elements, before_chunk_fn=before_chunk_fn)

    def warm_up(self) -> None:
        """One tiny pass on the model's device, so the first request pays no lazy set-up."""
        x = torch.zeros(1, self.input_dim, device=next(self.parameters()).device)
        if not torch.isfinite(self.log_weights(x, 2, generator=torch.Generator().manual_seed(0))).all():
            raise ValueError("warm-up produced non-finite log-weights")
