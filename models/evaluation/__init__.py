"""Scoring checkpoints on data sets (``logpx evaluate``), and ground truth by quadrature for 2-D latents."""
