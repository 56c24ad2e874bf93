"""Package discovery (pyproject.toml holds everything else): the repository's folders keep the design
card's names, so ``models/`` installs as ``logpx`` and ``app/`` as ``logpx.app``; every package below
them is found, not listed by hand."""

from setuptools import find_packages, setup

setup(
    packages=[
        "logpx",
        *(f"logpx.{name}" for name in find_packages("models")),
        "logpx.app",
        *(f"logpx.app.{name}" for name in find_packages("app")),
    ]
)
