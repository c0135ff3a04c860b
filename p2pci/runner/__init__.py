"""Runner: the hardened Docker runner, a fake runner for tests, source packing, images.

Importing this package does not import docker; `p2pci.runner.images` and
`p2pci.runner.docker_runner` do (lazily, when they talk to the engine).
"""

from p2pci.runner.base import BuildResult, BuildSpec, Limits, Runner, RunnerPolicy, run_build
from p2pci.runner.docker_runner import DockerRunner
from p2pci.runner.images import (
    build_busybox,
    build_debian,
    ensure_image,
    export_image,
    import_image,
    list_images,
    resolve_image,
)
from p2pci.runner.source import pack_source, unpack_source

__all__ = [
    "BuildResult",
    "BuildSpec",
    "DockerRunner",
    "Limits",
    "Runner",
    "RunnerPolicy",
    "build_busybox",
    "build_debian",
    "ensure_image",
    "export_image",
    "import_image",
    "list_images",
    "pack_source",
    "resolve_image",
    "run_build",
    "unpack_source",
]
