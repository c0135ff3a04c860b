"""The one place that opens a Docker client, and the labels p2pci puts on things."""

from __future__ import annotations

import threading
from typing import Any

from p2pci.core.errors import LocalError

LABEL = "p2pci"  # on every container: "1"
LABEL_RUN = "p2pci.run"  # on every container: the per-run id
LABEL_OWNER = "p2pci.owner"  # a daemon's builds: its peer ID (orphans are reaped at its next start)
LABEL_WORK = "p2pci.work"  # the runner's work dir (a test harness finds a killed daemon's holders)
LABEL_IMAGE = "org.p2pci.image"  # on every image we build: "busybox" | "debian"
LABEL_RECIPE = "org.p2pci.recipe"  # the normalised image name: "busybox", "debian:bookworm+gcc,make"

_lock = threading.Lock()
_client: Any = None


def client() -> Any:
    """A shared docker.DockerClient (thread-safe for our use: one request per call)."""
    global _client
    with _lock:
        if _client is None:
            import docker

            try:
                c = docker.from_env(timeout=300)
                c.ping()
            except Exception as e:  # docker.errors.DockerException, requests errors
                raise LocalError(f"cannot reach the Docker engine: {e}") from None
            _client = c
        return _client
