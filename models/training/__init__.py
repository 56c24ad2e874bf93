"""Training the shipped model families (``python -m models.training.train`` or ``logpx train``)."""
