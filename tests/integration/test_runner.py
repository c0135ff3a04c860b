"""The hardened Docker runner against a real Docker engine (busybox image)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from p2pci.core.errors import BuildError
from p2pci.runner.base import BuildResult, BuildSpec, Limits, RunnerPolicy, run_build
from p2pci.runner.docker_runner import DockerRunner
from p2pci.runner.dockerutil import client
from p2pci.runner.images import resolve_image
from p2pci.runner.source import pack_source

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def busybox() -> str:
    return resolve_image("busybox")


def _leftovers(label: str) -> tuple[list[str], list[str]]:
    dc = client()
    containers = [c.id for c in dc.containers.list(all=True, filters={"label": label})]
    volumes = [v.name for v in dc.volumes.list(filters={"label": label})]
    return containers, volumes


@contextmanager
def labeled_runner(work_dir: Path, image: str, tag: str | None = None) -> Iterator[DockerRunner]:
    """A runner whose containers carry the label p2pci.test=`tag` (by default one unique to this
    call); on exit it is closed and none of its containers or volumes may be left."""
    tag = tag or uuid.uuid4().hex
    r = DockerRunner(work_dir=work_dir, holder_image=image, labels={"p2pci.test": tag})
    yield r
    r.close()  # the ready /out holder and the background removals
    assert _leftovers(f"p2pci.test={tag}") == ([], [])


def packed_source(tmp_path: Path, files: dict[str, str]) -> Path:
    """`files` ({relative path: text}) under tmp_path/src, packed into tmp_path/src.tar."""
    d = tmp_path / "src"
    for rel, text in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    tar = tmp_path / "src.tar"
    pack_source(d, tar)
    return tar


@pytest.fixture
def runner(tmp_path: Path, busybox: str) -> Iterator[DockerRunner]:
    """A runner whose containers carry a label unique to this test; none may be left."""
    with labeled_runner(tmp_path / "work", busybox) as r:
        yield r
    leftover_scratch = [p.name for p in (tmp_path / "work").iterdir() if p.name.startswith("p2pci-run-")]
    assert leftover_scratch == []


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return packed_source(tmp_path, {"hello.txt": "hello world\n", "sub/b.txt": "b\n"})


def build(
    runner: DockerRunner,
    image: str,
    source: Path,
    script: str,
    *,
    sde: int | None = 1700000000,
    **limits: int,
) -> BuildResult:
    spec = BuildSpec(
        image_id=image,
        command=("sh", "-c", script),
        env=(("EXTRA", "yes"),),
        source_date_epoch=sde,
        limits=Limits(**{"timeout_s": 60, "memory_mb": 256, "cpus": 1, "pids": 128, "out_mb": 16, **limits}),
    )
    return runner.run(spec, source, cancel=threading.Event())


def test_reproducible_build_twice_same_digest(runner: DockerRunner, busybox: str, source: Path) -> None:
    script = "mkdir -p /out/sub && cp hello.txt /out/ && cat sub/b.txt hello.txt > /out/sub/both && chmod 755 /out/sub/both"
    a = build(runner, busybox, source, script)
    b = build(runner, busybox, source, script)
    assert a.status == b.status == "ok" and a.exit_code == 0
    assert a.digest is not None and a.digest == b.digest
    assert [(e.path, e.size, e.mode) for e in a.manifest] == [
        ("hello.txt", 12, 0o644),
        ("sub/both", 14, 0o755),
    ]
    assert a.out_dir is not None and (a.out_dir / "sub" / "both").read_text() == "b\nhello world\n"
    a.cleanup()
    b.cleanup()
    assert not a.log_path.exists()


@pytest.mark.parametrize(
    "script",
    [
        # busybox's date has no %N: the uptime in 1/100 s makes the time part fine-grained
        "date +%s%N > /out/stamp; cat /proc/uptime >> /out/stamp",
        "cat /proc/sys/kernel/random/uuid > /out/id",
    ],
)
def test_unreproducible_builds_differ(runner: DockerRunner, busybox: str, source: Path, script: str) -> None:
    a = build(runner, busybox, source, script)
    b = build(runner, busybox, source, script)
    assert a.status == b.status == "ok" and a.exit_code == 0
    assert a.digest != b.digest


def test_failing_build_is_a_result(runner: DockerRunner, busybox: str, source: Path) -> None:
    r = build(runner, busybox, source, "echo partial > /out/p; echo boom >&2; exit 3")
    assert r.status == "ok" and r.exit_code == 3 and r.digest is not None
    assert [e.path for e in r.manifest] == ["p"]
    assert b"boom" in r.log_path.read_bytes()


def test_hardening_inside_the_build(runner: DockerRunner, busybox: str, source: Path) -> None:
    script = """
    exec > /out/info 2>&1
    echo "uid=$(id -u) gid=$(id -g)"
    grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status
    echo "host=$(hostname) pwd=$(pwd)"
    touch /rootfs-write 2>/dev/null && echo root-writable || echo root-ro
    touch /build/src/x 2>/dev/null && echo src-writable || echo src-ro
    touch /tmp/x && echo tmp-writable
    ls /sys/class/net | tr '\\n' ' '; echo
    env | sort | grep -v -E '^(PWD|SHLVL)='
    """
    r = build(runner, busybox, source, script)
    assert r.status == "ok" and r.exit_code == 0 and r.out_dir is not None
    info = (r.out_dir / "info").read_text()
    assert "uid=65534 gid=65534" in info
    assert "CapEff:\t0000000000000000" in info and "CapBnd:\t0000000000000000" in info
    assert "NoNewPrivs:\t1" in info
    assert "host=p2pci-build pwd=/build/src" in info
    assert "root-ro" in info and "src-ro" in info and "tmp-writable" in info
    assert "lo \n" in info  # the only network interface
    env_lines = info.split("lo \n", 1)[1].split()
    assert env_lines == [
        "EXTRA=yes",
        "HOME=/tmp",
        "HOSTNAME=p2pci-build",  # set by docker from --hostname
        "LANG=C.UTF-8",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",  # the image's
        "SOURCE_DATE_EPOCH=1700000000",
        "TZ=UTC",
    ]
    r2 = build(runner, busybox, source, "env > /out/env", sde=None)
    assert r2.out_dir is not None and "SOURCE_DATE_EPOCH" not in (r2.out_dir / "env").read_text()


def test_timeout_kills_and_removes(runner: DockerRunner, busybox: str, source: Path) -> None:
    t0 = time.monotonic()
    r = build(runner, busybox, source, "sleep 1000", timeout_s=2)
    elapsed = time.monotonic() - t0
    assert r.status == "timeout" and r.exit_code is None and r.digest is None
    # killed by the limit: not before it, and long before `sleep 1000` could end by itself
    # (no tight upper bound: a loaded machine may take a while to stop a container)
    assert 2 <= elapsed < 500
    assert b"killed after the 2 s time limit" in r.log_path.read_bytes()


class _Listener:
    """A TCP server on the host that counts connections (the positive control)."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.first = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.first.set()
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def netns_addr() -> Iterator[str]:
    """A network namespace of our own, reachable from the host at 10.251.x.2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = "p2pci-t" + uuid.uuid4().hex[:8]
    host_if, ns_if = "p2h" + name[-8:], "p2n" + name[-8:]
    x = int(name[-2:], 16)
    host_ip, ns_ip = f"10.251.{x}.1", f"10.251.{x}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", name)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", name)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        ip("-n", name, "link", "set", ns_if, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield name + " " + ns_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_no_network(runner: DockerRunner, busybox: str, source: Path, netns_addr: str) -> None:
    ns, ns_ip = netns_addr.split()
    local = _Listener("127.0.0.1")
    # A listener inside our namespace, reached from the host through the veth pair.
    server = (
        "import socket,sys\n"
        "s=socket.socket(); s.bind((sys.argv[1], 8099)); s.listen(8)\n"
        "print('ready', flush=True)\n"
        "while True: s.accept()[0].close()\n"
    )
    remote = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", server, ns_ip], stdout=subprocess.PIPE, text=True
    )
    try:
        assert remote.stdout is not None and remote.stdout.readline().strip() == "ready"
        # positive controls: the host reaches both listeners
        with socket.create_connection(("127.0.0.1", local.port), timeout=5):
            pass
        with socket.create_connection((ns_ip, 8099), timeout=5):
            pass
        assert local.first.wait(5)  # the control connection was counted
        before = local.accepted
        script = f"""
        for target in 127.0.0.1:{local.port} {ns_ip}:8099; do
          if echo x | nc -w 2 ${{target%:*}} ${{target#*:}}; then echo "nc $target reached"; else echo "nc $target failed"; fi
          if wget -q -T 2 -O /dev/null http://$target/; then echo "wget $target reached"; else echo "wget $target failed"; fi
        done > /out/net 2>&1
        """
        r = build(runner, busybox, source, script)
        assert r.status == "ok" and r.out_dir is not None
        net = (r.out_dir / "net").read_text()
        assert "reached" not in net, net
        assert net.count("failed") == 4, net
        assert local.accepted == before
    finally:
        local.close()
        remote.kill()
        remote.wait()


def test_fork_bomb_is_contained(runner: DockerRunner, busybox: str, source: Path) -> None:
    # The bomb runs until the time limit (the script then spins without forking): always "timeout".
    r = build(runner, busybox, source, "bomb() { bomb | bomb & }; bomb; while :; do :; done", pids=64, timeout_s=5)
    assert r.status == "timeout", (r.status, r.error)
    # The pids limit is what contains it: a subshell forking sleepers stops when a fork fails,
    # with fewer than 64 of them (without the limit it would go on until the time limit).
    count = "( i=0; while :; do sleep 600 & i=$((i+1)); echo $i > /out/n; done ); echo stopped > /out/s"
    r = build(runner, busybox, source, count, pids=64, timeout_s=120)
    assert r.status == "ok" and r.out_dir is not None, (r.status, r.error)
    assert (r.out_dir / "s").read_text() == "stopped\n"
    assert 10 < int((r.out_dir / "n").read_text()) < 64
    # the host can still fork, and a normal build works right after
    assert build(runner, busybox, source, "echo ok > /out/ok").status == "ok"


def test_writing_twice_the_out_limit_fails_cleanly(runner: DockerRunner, busybox: str, source: Path) -> None:
    r = build(runner, busybox, source, "dd if=/dev/zero of=/out/big bs=1M count=8; true", out_mb=4)
    assert r.status == "error" and r.out_dir is None
    assert r.error is not None and "exceed the /out limit of 4 MiB" in r.error
    ok = build(runner, busybox, source, "dd if=/dev/zero of=/out/big bs=1M count=3", out_mb=4)
    assert ok.status == "ok" and ok.exit_code == 0 and ok.manifest[0].size == 3 << 20


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("ln -s /etc/passwd /out/link", "/out/link is a symlink"),
        ("mkdir /out/d && echo x > /out/d/s && chmod 4755 /out/d/s", "/out/d/s has the setuid/setgid bit"),
        ("echo x > /out/g && chmod 2755 /out/g", "/out/g has the setuid/setgid bit"),
        ("mkfifo /out/fifo", "/out/fifo is a fifo"),
    ],
)
def test_bad_outputs_are_clear_errors(
    runner: DockerRunner, busybox: str, source: Path, script: str, message: str
) -> None:
    r = build(runner, busybox, source, script)
    assert r.status == "error" and r.error is not None and message in r.error, r.error
    assert r.digest is None and r.out_dir is None


def test_hard_link_inside_out_is_a_copy(runner: DockerRunner, busybox: str, source: Path) -> None:
    r = build(runner, busybox, source, "echo data > /out/a && ln /out/a /out/b")
    assert r.status == "ok", r.error
    assert [(e.path, e.size) for e in r.manifest] == [("a", 5), ("b", 5)]
    assert r.manifest[0].sha256 == r.manifest[1].sha256


def test_log_is_capped(tmp_path: Path, busybox: str, source: Path) -> None:
    tag = uuid.uuid4().hex
    r = DockerRunner(
        work_dir=tmp_path / "w",
        holder_image=busybox,
        labels={"p2pci.test": tag},
        policy=RunnerPolicy(log_cap=1000),
    )
    res = build(
        r, busybox, source, "i=0; while [ $i -lt 2000 ]; do echo line $i; echo err $i >&2; i=$((i+1)); done"
    )
    assert res.status == "ok" and res.exit_code == 0
    log = res.log_path.read_bytes()
    # stdout and stderr are two pipes: docker interleaves them as they arrive, in no fixed order
    assert log.startswith((b"line 0\n", b"err 0\n"))
    assert b"[p2pci: log truncated at 1000 bytes]" in log and len(log) < 1100
    r.close()
    assert _leftovers(f"p2pci.test={tag}") == ([], [])


def test_policy_caps_the_offer(runner: DockerRunner, busybox: str, source: Path) -> None:
    runner.policy = RunnerPolicy(max_timeout_s=2, max_memory_mb=64, max_cpus=1, max_pids=32)
    r = build(
        runner,
        busybox,
        source,
        "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max > /out/l 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes > /out/l",
        timeout_s=600,
        memory_mb=4096,
        pids=100000,
    )
    assert r.status == "ok" and r.out_dir is not None
    assert (r.out_dir / "l").read_text().split() == ["32", str(64 << 20)]
    capped = build(runner, busybox, source, "sleep 100", timeout_s=600)
    assert capped.status == "timeout"
    assert b"killed after the 2 s time limit" in capped.log_path.read_bytes()  # the policy's, not 600 s


async def test_cancel_from_trio_removes_container(tmp_path: Path, busybox: str, source: Path) -> None:
    tag = uuid.uuid4().hex
    r = DockerRunner(work_dir=tmp_path / "w", holder_image=busybox, labels={"p2pci.test": tag})
    spec = BuildSpec(
        busybox, ("sleep", "1000"), limits=Limits(timeout_s=300, memory_mb=64, pids=32, out_mb=1)
    )

    events = client().events(decode=True, filters={"label": f"p2pci.test={tag}", "event": "start"})

    def build_container_started() -> None:
        starts = 0
        for _ in events:  # the holder starts first, then the build container
            starts += 1
            if starts == 2:
                return

    try:
        with trio.fail_after(120):  # a hang guard only: cancelling waits on the container, not a clock
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_build, r, spec, source)
                await trio.to_thread.run_sync(build_container_started, abandon_on_cancel=True)
                nursery.cancel_scope.cancel()
    finally:
        events.close()
    assert _leftovers(f"p2pci.test={tag}") == ([], [])
    assert [p for p in (tmp_path / "w").iterdir()] == []


def test_cancel_event_raises(tmp_path: Path, busybox: str, source: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    r = DockerRunner(work_dir=tmp_path / "w", holder_image=busybox)
    with pytest.raises(BuildError, match="cancelled"):
        r.run(BuildSpec(busybox, ("true",)), source, cancel=cancel)


async def test_run_build_returns_result(runner: DockerRunner, busybox: str, source: Path) -> None:
    spec = BuildSpec(busybox, ("sh", "-c", "cp hello.txt /out/"), limits=Limits(timeout_s=30, out_mb=1))
    with trio.fail_after(30):
        r = await run_build(runner, spec, source)
    assert r.status == "ok" and [e.path for e in r.manifest] == ["hello.txt"]


def test_missing_image_is_a_build_error(runner: DockerRunner, source: Path) -> None:
    with pytest.raises(BuildError, match="not present"):
        runner.run(BuildSpec("sha256:" + "0" * 64, ("true",)), source, cancel=threading.Event())


def test_overhead_figures(runner: DockerRunner, busybox: str, source: Path) -> None:
    """Figures for the report: trivial build vs `docker run --rm busybox true`."""
    plain = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run(
            ["docker", "run", "--rm", "--network", "none", busybox, "true"], check=True, capture_output=True
        )
        plain.append(time.monotonic() - t0)
    ours = []
    for _ in range(3):
        t0 = time.monotonic()
        assert build(runner, busybox, source, "true").status == "ok"
        ours.append(time.monotonic() - t0)
    print(
        f"\nFIGURES docker run --rm true: {min(plain):.2f} s; DockerRunner trivial build: {min(ours):.2f} s"
    )


@pytest.mark.parametrize(
    "spec_kw",
    [
        {"image_id": "p2pci/busybox:latest"},
        {"command": ()},
        {"command": ("sh", "-c", "a\x00b")},
        {"env": (("A=B", "x"),)},
        {"env": (("A", "x\x00y"),)},
    ],
)
def test_hostile_specs_are_refused(
    runner: DockerRunner, busybox: str, source: Path, spec_kw: dict[str, object]
) -> None:
    kw: dict[str, object] = {"image_id": busybox, "command": ("true",), **spec_kw}
    with pytest.raises(BuildError, match="bad"):
        runner.run(BuildSpec(**kw), source, cancel=threading.Event())  # type: ignore[arg-type]


def test_memory_limit_kills_and_returns(runner: DockerRunner, busybox: str, source: Path) -> None:
    r = build(
        runner, busybox, source, "head -c 200000000 /dev/zero | tail -c 199999999 > /dev/null", memory_mb=32
    )
    assert r.status == "ok" and r.exit_code != 0
    assert b"out of memory" in r.log_path.read_bytes()


async def test_two_builds_at_once(runner: DockerRunner, busybox: str, source: Path) -> None:
    results: list[BuildResult] = []

    async def one(i: int) -> None:
        spec = BuildSpec(busybox, ("sh", "-c", f"echo {i} > /out/n"), limits=Limits(timeout_s=60, out_mb=1))
        results.append(await run_build(runner, spec, source))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(2):
                nursery.start_soon(one, i)
    assert sorted(r.status for r in results) == ["ok", "ok"]
    assert len({r.digest for r in results}) == 2


def test_more_cpus_than_the_host_has_is_clamped(runner: DockerRunner, busybox: str, source: Path) -> None:
    # the CFS quota the container got (cgroup v2 cpu.max or v1 cfs_quota_us/cfs_period_us)
    script = (
        "if [ -r /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; "
        "else echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); "
        "fi > /out/cpu"
    )
    r = build(runner, busybox, source, script, cpus=64)
    assert r.status == "ok" and r.exit_code == 0 and r.out_dir is not None, r.error
    quota, period = (int(x) for x in (r.out_dir / "cpu").read_text().split())
    assert quota == (os.cpu_count() or 1) * period  # clamped to the host's CPUs, not 64
