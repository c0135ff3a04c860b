"""Suite-wide settings: nothing here may depend on how fast the machine is."""

import os

from hypothesis import HealthCheck, settings

# No per-example wall-clock deadline and no "too slow" health check: on a loaded machine (two
# cores shared with other jobs) a slow example is not a bug. Examples stay bounded by their
# strategies and the suite by pytest-timeout.
# Identity proofs at a test price: `p2pci init` mints 8 bits (~256 hashes) and offers demand 8
# (the default, 27, costs ~76 s of one core; tests of the default unset this).
os.environ.setdefault("P2PCI_IDENTITY_BITS", "8")

settings.register_profile(
    "p2pci", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
# `make mutate` runs the tests once per mutant: fewer examples there (P2PCI_HYPOTHESIS=mutate).
settings.register_profile("mutate", parent=settings.get_profile("p2pci"), max_examples=25)
settings.load_profile(os.environ.get("P2PCI_HYPOTHESIS", "p2pci"))
