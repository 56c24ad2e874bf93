"""logpx HTTP service: routes, registry and worker around the estimator core in ``models``."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("logpx")  # declared once, in pyproject.toml
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
