"""podman as the image and compose tests use it: whether it can run here, and removing what a test started."""

from __future__ import annotations

import shutil
import subprocess
import time

# This host needs the runc runtime (crun fails on its hybrid cgroups) and the cgroupfs manager (docs/deploy.md).
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]


def podman_works() -> str | None:
    """None where podman can run containers here, else why not (a skip reason)."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        return "podman and runc are not installed (Debian: apt-get install podman runc debootstrap)"
    info = subprocess.run([*PODMAN, "info"], capture_output=True, text=True, timeout=60)
    return None if info.returncode == 0 else f"podman cannot run here: {info.stderr.strip()[:200]}"


def remove_containers(filter_: str, env: dict[str, str] | None = None, wait_s: float = 180) -> None:
    """Remove every container that ``podman ps --filter filter_`` lists, and those that require them.

    podman 4.3 can stop a container and then fail to remove it (a CI run's one ``rm -f`` left a killed
    PostgreSQL and a running replica behind), so this repeats until none is left, and fails with podman's
    own words if some container will not go.
    """
    deadline = time.monotonic() + wait_s
    errors: list[str] = []
    ps = [*PODMAN, "ps", "-aq", "--filter", filter_]
    while ids := subprocess.run(ps, env=env, capture_output=True, text=True, timeout=60).stdout.split():
        assert time.monotonic() < deadline, (ids, errors[-4:])
        for container in ids:  # one at a time: one that is already gone must not stop the others
            rm = [*PODMAN, "rm", "-f", "-t", "5", "--depend", container]
            out = subprocess.run(rm, env=env, capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                errors.append(out.stderr[-500:])
        time.sleep(1)
