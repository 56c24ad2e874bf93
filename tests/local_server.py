"""Run `logpx serve` as a child process on a free loopback port, for scripts, benchmarks and tests:

with LocalServer(checkpoint_dir="checkpoints") as server:
    httpx.get(f"{server.url}/v1/models")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["LocalServer", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float, gone: Callable[[], bool] = lambda: False, interval: float = 0.1) -> bool:
    """Whether ``url``'s readiness check answered 200 within ``timeout`` seconds (False at once if ``gone``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if gone() or time.monotonic() > deadline:
            return False
        time.sleep(interval)


class LocalServer:
    """Starts the server with ``LOGPX_*`` settings from ``env`` (plus the checkpoint directory), waits
    until ``/v2/health/ready`` answers 200, and stops it on exit. Its output goes to ``log_path`` if
    given, else nowhere."""

    def __init__(
        self,
        checkpoint_dir: str | Path,
        *,
        env: dict[str, str] | None = None,
        log_path: str | Path | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {
            **os.environ,
            "LOGPX_HOST": "127.0.0.1",
            "LOGPX_PORT": str(self.port),
            "LOGPX_CHECKPOINT_DIR": str(checkpoint_dir),
            **(env or {}),
        }
        # A job store of its own unless the caller names one (a restart test passes the same one twice).
        self._data_dir = None if "LOGPX_DATA_DIR" in self._env else tempfile.TemporaryDirectory(prefix="logpx-data-")
        if self._data_dir is not None:
            self._env["LOGPX_DATA_DIR"] = self._data_dir.name
        self._log_path = log_path
        self._ready_timeout = ready_timeout
        self._log = None
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalServer:
        self._log = open(self._log_path, "wb") if self._log_path else open(os.devnull, "wb")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("logpx")), "serve"],
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        proc = self.proc
        if not wait_ready(self.url, self._ready_timeout, gone=lambda: proc.poll() is not None):
            self.__exit__(None, None, None)
            raise RuntimeError(f"logpx serve did not become ready on {self.url}")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        if self._data_dir is not None:
            self._data_dir.cleanup()
