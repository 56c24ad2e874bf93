"""logpx HTTP service: routes, registry and worker around the pure estimator core in ``models``."""
