"""Scoring checkpoints on data sets (``logpx evaluate``), and ground truth by quadrature for 2-D latents."""

from .quadrature import EDGE_MASS_LIMIT, PosteriorGrid, grid_log_px, grid_verdict, posterior_grid

__all__ = ["EDGE_MASS_LIMIT", "PosteriorGrid", "grid_log_px", "grid_verdict", "posterior_grid"]
