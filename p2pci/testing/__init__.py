"""Test support, in one package (never imported by the daemon, the CLI or the TUI).

* `cluster`: in-process daemons on a memory network (`open_cluster`, `Cluster`, `ScriptedRunner`,
  `FAST`, `with_timing`); runs under trio's MockClock too.
* `runners`: `FakeRunner` (deterministic outputs, no Docker).
* `images`: `FakeImages`.
* `net`: `Collector`, `fact_id`, `fake_validate` for network tests.
* `mesh`: real `p2pci daemon` processes on loopback (`open_mesh`, `Mesh`, `Node`), shared by the
  demo, the end-to-end tests and the benchmarks.

Pure NodeMachine meshes for unit tests live in tests/unit/machinemesh.py.
"""
