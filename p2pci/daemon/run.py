"""`p2pci daemon`: the Node on LibP2PNetwork + DockerRunner, until SIGINT/SIGTERM.

Prints one line ``p2pci daemon ready: <peer_id> <addrs…>`` (flushed) once it
listens, and writes the addresses to ``$P2PCI_HOME/addrs``. SIGTERM drains
(running builds finish within `[worker] drain_grace_s`, then the node stops);
SIGINT, a second SIGTERM or the end of the grace period cancel the node's
nursery: running builds are cancelled (their containers killed and removed),
the store is closed, the control socket removed.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import trio

from p2pci.config import Config, Paths
from p2pci.core.errors import P2pciError, first_error
from p2pci.core.signing import NodeKey
from p2pci.daemon.node import Node, validate_fact

FLUSH_S = 5.0  # at most this long, a drained daemon waits for its last facts to leave


def make_node(home: Path, config: Config, key: NodeKey) -> Node:
    """The production node: real libp2p network, Docker runner (unless build = false)."""
    from p2pci.net.libp2p_net import LibP2PNetwork
    from p2pci.net.quota import Quotas

    tm = config.timing
    net = LibP2PNetwork(
        key.seed,
        list(config.listen),
        list(config.bootstrap),
        validate=validate_fact,
        sync_interval=tm.sync_interval_ms / 1000,
        dial_timeout=tm.dial_timeout_ms / 1000,
        relay=config.net.relay_limits(),
        reachability=config.net.reachability,
        relay_refresh=float(config.net.relay_refresh_s),
        mdns=config.net.mdns,
        quotas=Quotas(config.quotas.limits()),
    )
    runner = None
    if config.build:
        from p2pci.runner.base import RunnerPolicy
        from p2pci.runner.docker_runner import DockerRunner

        paths = Paths(home)
        paths.work.mkdir(parents=True, exist_ok=True)
        runner = DockerRunner(
            work_dir=paths.work / "runs",
            owner=key.peer_id,
            policy=RunnerPolicy.for_worker(config.worker.policy()),
        )
    return Node(home, config, network=net, runner=runner, key=key)


async def serve(node: Node) -> None:
    """Run `node` until SIGINT, SIGTERM or a finished drain.

    SIGTERM drains: no new work, claims not yet building are declined (`paused`), running builds
    get `[worker] drain_grace_s` to finish and commit, then the node stops (a second SIGTERM, or
    SIGINT, stops at once). `p2pci worker drain` stops the same way, without a deadline."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            addrs = node.network.addrs()
            print(f"p2pci daemon ready: {node.peer_id} {' '.join(addrs)}", flush=True)

            async def on_drained() -> None:
                await node.drained.wait()
                with trio.move_on_after(FLUSH_S):  # the last reveal must leave before the network stops
                    await node.network.flush()
                print("p2pci daemon: drained, shutting down", file=sys.stderr, flush=True)
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_drained)
            draining = False
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGTERM and not draining and node.runner is not None:
                    draining = True
                    grace = node.config.worker.drain_grace_s
                    print(
                        f"p2pci daemon: SIGTERM, draining: running builds get {grace}s to finish",
                        file=sys.stderr,
                        flush=True,
                    )
                    await node.set_control("draining")

                    async def deadline(grace: int) -> None:
                        await trio.sleep(grace)
                        print("p2pci daemon: drain grace period over, shutting down", file=sys.stderr, flush=True)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(deadline, grace)
                    continue
                print(f"p2pci daemon: {name}, shutting down", file=sys.stderr, flush=True)
                nursery.cancel_scope.cancel()
                break


def run_daemon(home: Path, config: Config, key: NodeKey) -> None:
    from p2pci.logs import setup_logging

    setup_logging()
    node = make_node(home, config, key)
    setup_logging()  # again: importing py-libp2p (in make_node) resets its logger
    try:
        trio.run(serve, node)
    except BaseExceptionGroup as group:
        # a LocalError (another daemon, a bad listen address…) inside the nursery: one line, not a traceback
        leaf = first_error(group, P2pciError)
        if leaf is None:
            raise
        raise leaf from None

