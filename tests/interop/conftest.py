"""The interop test reuses the end-to-end fixtures (daemon processes, busybox image, short temp dirs)."""

from tests.e2e.conftest import busybox_image, mesh, pytest_runtest_makereport, short_tmp

__all__ = ["busybox_image", "mesh", "pytest_runtest_makereport", "short_tmp"]
