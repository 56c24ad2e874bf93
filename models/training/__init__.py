"""Training the shipped model families (``python -m logpx.training.train`` or ``logpx train``)."""
