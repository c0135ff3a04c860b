"""Part 1: verdict overhead. 5 daemons on loopback, M=3, N=2, a trivial busybox build.

The mesh: one publisher (``--no-build``, the bootstrap node) and four
workers, started one after the other, with the fast timing of
`p2pci.demo.FAST_TIMING` (claim window 500 ms; the default config has
2000 ms). One warm-up job is not counted. Then, alternately:

* the floor: ``docker run --rm --network none`` of the same image and
  command, with the same source mounted read-only at /build/src and an empty
  /out, timed from the `docker` command to its exit (``bare_docker_run_s``);
* a job: the publisher's control op ``publish`` (what `p2pci publish` sends,
  without the CLI's own start-up) until this process receives the
  publisher's REPRODUCED event (``verdict_s``).

``overhead_s = verdict_s - bare_docker_run_s`` of the pair, p50 and p90 over
the jobs. Where the time goes comes from the job's facts (`export`): claim
times are ``lease_until - lease_ms`` on the same machine clock as the
offer's ``created``; build start and end from the workers' ``node`` events
(their ``building`` list); the first reveal from the publisher's job events.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import Results, budget, log, pct, rnd
from bench.daemons import Watch, busybox_image, follow_all, publish_args, put_source

WORK = Path(__file__).resolve().parent / ".work" / "overhead"
SCRIPT = "cat /build/src/hello.txt > /out/hello.txt"


def bare_docker_run(image: str, src_files: dict[str, str]) -> float:
    """Seconds for `docker run --rm` of the same build (source mounted, fresh /out)."""
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        src.mkdir()
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        for rel, text in src_files.items():
            (src / rel).write_text(text)
        argv = [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{src}:/build/src:ro",
            "-v",
            f"{out}:/out",
            image,
            "sh",
            "-c",
            SCRIPT,
        ]
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
        dt = time.perf_counter() - t
        if not (out / "hello.txt").is_file():
            raise RuntimeError("bare docker run produced no /out/hello.txt")
        return dt


def _settle(under: Path, timeout: float = 10.0) -> None:
    """Wait until the p2pci containers of the daemons under `under` are all running and unchanged.

    That is: builds removed, /out holders started (they carry `p2pci.work`, their runner's
    work dir under the daemon's home). Gives up quietly after `timeout` seconds.
    """
    from p2pci.runner.dockerutil import client

    prefix = str(under.resolve()) + os.sep
    api = client().api
    deadline = time.monotonic() + timeout
    last: set[str] | None = None
    while time.monotonic() < deadline:
        mine = [
            c
            for c in api.containers(all=True, filters={"label": "p2pci"})
            if (c.get("Labels") or {}).get("p2pci.work", "").startswith(prefix)
        ]
        now = {c["Id"] for c in mine}
        if all(c.get("State") == "running" for c in mine) and now == last:
            return
        last = now
        time.sleep(0.1)  # polling the engine for a condition, bounded by the deadline
    log("overhead: the daemons' containers did not settle; measuring anyway")


def bare_docker_true(image: str) -> float:
    """Seconds for `docker run --rm --network none <busybox> true`: the engine's own floor."""
    t = time.perf_counter()
    subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "true"], check=True, capture_output=True
    )
    return time.perf_counter() - t


class Hardened:
    """The daemon's own runner (DockerRunner, hardened, no network) on the same build, alone.

    One runner for the whole part, as in a daemon: from the second build on, its /out holder
    was made ahead of time. `phases` collects each run's `BuildResult.phases`.
    """

    def __init__(self) -> None:
        from p2pci.runner.docker_runner import DockerRunner

        self.runner = DockerRunner(work_dir=WORK / "runner")
        self.phases: list[dict[str, float]] = []

    def run(self, image: str, src_files: dict[str, str]) -> float:
        import threading

        from p2pci.core.messages import Limits
        from p2pci.runner.base import BuildSpec
        from p2pci.runner.source import pack_source

        with tempfile.TemporaryDirectory(dir=WORK) as tmp:
            src = Path(tmp) / "src"
            src.mkdir()
            for rel, text in src_files.items():
                (src / rel).write_text(text)
            tar = Path(tmp) / "source.tar"
            pack_source(src, tar)
            spec = BuildSpec(
                image_id=image,
                command=("sh", "-c", SCRIPT),
                source_date_epoch=1700000000,
                limits=Limits(timeout_s=60, memory_mb=256, cpus=1, pids=64, out_mb=16),
            )
            t = time.perf_counter()
            result = self.runner.run(spec, tar, cancel=threading.Event())
            dt = time.perf_counter() - t
            try:
                if result.status != "ok" or result.exit_code != 0:
                    raise RuntimeError(f"runner: {result.status} {result.exit_code} {result.error}")
                self.phases.append(dict(result.phases))
            finally:
                result.cleanup()
            # what a daemon does between jobs: the removal and the next holder, off the clock
            self.runner.drain()
            return dt

    def close(self) -> None:
        self.runner.close()


async def overhead(quick: bool, out: Results) -> None:
    from p2pci.testing.mesh import FAST_TIMING

    jobs = int(os.environ.get("BENCH_OVERHEAD_JOBS", "0")) or (3 if quick else 10)  # env: for trying it out
    out["claim_window_ms"] = FAST_TIMING["claim_window_ms"]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    image = await trio.to_thread.run_sync(busybox_image)
    await _mesh_jobs(out, image, jobs, dict(FAST_TIMING), "", cli=not quick)
    if not quick:
        # the shipped timing (config.toml defaults: claim window 2000 ms, lease 30 s)
        await _mesh_jobs(out, image, 3, {}, "_default_timing", cli=False)


async def _mesh_jobs(
    out: Results, image: str, jobs: int, timing: dict[str, int], suffix: str, cli: bool
) -> None:
    """Start 5 daemons with `timing`, run a warm-up and `jobs` measured pairs; keys get `suffix`."""
    from p2pci.config import Timing
    from p2pci.testing.mesh import open_mesh

    lease_ms = timing.get("lease_ms", Timing().lease_ms)
    async with open_mesh(WORK / f"mesh{suffix}", timing=timing) as mesh, trio.open_nursery() as nursery:
        t0 = time.monotonic()
        with trio.fail_after(120):
            pub = await mesh.add("pub", build=False)
        workers = []
        for i in range(4):
            with trio.fail_after(120):
                workers.append(await mesh.add(f"w{i + 1}", bootstrap=[pub]))
        with trio.fail_after(60):
            await mesh.wait_connected(minimum=1)
        log(f"overhead{suffix}: 5 daemons up in {time.monotonic() - t0:.1f} s")
        watch = Watch()
        await follow_all(nursery, watch, [pub, *workers])
        verdicts: list[float] = []
        bares: list[float] = []
        trues: list[float] = []
        runs: list[float] = []
        hardened = Hardened() if not suffix else None
        overheads: list[float] = []
        phases: list[dict[str, float]] = []
        for i in range(jobs + 1):
            files = {"hello.txt": f"hello {suffix} {i}\n"}
            # the workers remove the last job's containers and start their next /out holders
            # in the background: let that finish, so that the floor is not measured under it
            await trio.to_thread.run_sync(_settle, WORK / f"mesh{suffix}")
            bare = await trio.to_thread.run_sync(bare_docker_run, image, files)
            if hardened is not None:
                try:
                    trues.append(await trio.to_thread.run_sync(bare_docker_true, image))
                    runs.append(await trio.to_thread.run_sync(hardened.run, image, files))
                except Exception as exc:  # an extra figure, never a reason to lose the others
                    log(f"overhead: DockerRunner alone failed: {exc}")
            source = put_source(pub.home, files)
            args = publish_args(source, image, SCRIPT, project=f"overhead{suffix}-{i}", replicas=3, quorum=2)
            t_call = time.monotonic()
            job = (await pub.call("publish", **args))["job"]
            with trio.fail_after(120):
                state = await watch.wait_verdict(job, pub.name)
            took = watch.job(job).verdict[pub.name][1] - t_call
            if state != "REPRODUCED":
                raise RuntimeError(f"job {job[:12]} ended {state}, not REPRODUCED")
            if i == 0:
                log(f"overhead{suffix} warm-up: verdict {took:.2f} s, bare run {bare:.2f} s")
                runs.clear()  # the runner's first, cold run
                trues.clear()
                if hardened is not None:
                    hardened.phases.clear()
                continue
            verdicts.append(took)
            bares.append(bare)
            overheads.append(took - bare)
            try:
                phases.append(await _phases(pub, job, watch, t_call, lease_ms))
            except Exception as exc:  # the breakdown is a bonus, never a reason to fail
                log(f"overhead: no phase breakdown for {job[:12]}: {exc}")
            log(f"overhead{suffix} job {i}: verdict {took:.2f} s, bare run {bare:.2f} s")
            _summarise(out, verdicts, bares, overheads, phases, suffix)
            if runs and hardened is not None:
                _summarise_runner(out, trues, runs, hardened.phases)
        if hardened is not None:
            await trio.to_thread.run_sync(hardened.close)
        if cli:
            await _cli_publishes(mesh, pub, image, out)
        nursery.cancel_scope.cancel()


async def _cli_publishes(mesh: Any, pub: Any, image: str, out: Results) -> None:
    """`p2pci publish DIR --wait --json` end to end (CLI start-up and source packing included)."""
    took: list[float] = []
    for i in range(2):
        d = WORK / f"project-cli-{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "hello.txt").write_text(f"hello cli {i}\n")
        (d / "p2pci.toml").write_text(
            f'[project]\nname = "overhead-cli-{i}"\n\n[build]\nimage = "{image}"\n'
            f'command = "{SCRIPT}"\ntimeout = 60\nmemory = "256m"\ncpus = 1\n\n'
            "[trust]\nreplicas = 3\nquorum = 2\n"
        )
        t = time.monotonic()
        with trio.fail_after(120):
            res = await mesh.cli(pub, "publish", str(d), "--wait", "--json", check=False)
        if res.returncode != 0:
            log(f"overhead: CLI publish exited {res.returncode}: {res.stderr.strip()[:300]}")
            return
        took.append(time.monotonic() - t)
    out["verdict_cli_s_p50"] = rnd(statistics.median(took))


def _summarise(
    out: Results,
    verdicts: list[float],
    bares: list[float],
    overheads: list[float],
    phases: list[dict[str, float]],
    suffix: str = "",
) -> None:
    """Write the figures so far (after every job, so a timeout keeps what was measured)."""
    out[f"overhead_jobs{suffix}"] = len(verdicts)
    out[f"overhead_s_p50{suffix}"] = rnd(pct(overheads, 50))
    out[f"overhead_s_p90{suffix}"] = rnd(pct(overheads, 90))
    out[f"verdict_s_p50{suffix}"] = rnd(pct(verdicts, 50))
    out[f"verdict_s_p90{suffix}"] = rnd(pct(verdicts, 90))
    out[f"bare_docker_run_s{suffix}"] = rnd(statistics.median(bares))
    for key in (
        "to_first_claim_s",
        "window_used_s",
        "to_first_build_start_s",
        "build_s",
        "to_last_build_end_s",
        "to_first_reveal_s",
        "builds",
    ):
        vals = [p[key] for p in phases if key in p]
        if vals:
            out[f"overhead_{key}_p50{suffix}"] = rnd(pct(vals, 50))


def _summarise_runner(
    out: Results, trues: list[float], runs: list[float], phases: list[dict[str, float]]
) -> None:
    """DockerRunner.run alone (the first, cold run is the warm-up's) against `docker run --rm true`.

    `runner_run_s`: the whole run (unpack to outputs copied); `runner_phase_<name>_s`: p50 of
    each phase: unpack, create (build container, and the /out holder when none was ready),
    start (attach + start), run (start returned to exit seen), copy_out (inspect + archive).
    """
    out["runner_run_s"] = rnd(statistics.median(runs))
    out["runner_run_s_min"] = rnd(min(runs))
    out["bare_docker_true_s"] = rnd(statistics.median(trues))
    out["bare_docker_true_s_min"] = rnd(min(trues))
    out["runner_over_bare_true_s"] = rnd(statistics.median(runs) - statistics.median(trues))
    for name in ("unpack", "create", "start", "run", "copy_out"):
        vals = [p[name] for p in phases if name in p]
        if vals:
            out[f"runner_phase_{name}_s"] = rnd(pct(vals, 50))


async def _phases(pub: Any, job: str, watch: Watch, t_call: float, lease_ms: int) -> dict[str, float]:
    """Seconds from the offer to the first claim, and from the publish call to the first reveal.

    A daemon emits a job event when the job object changes: when the offer
    arrives, when a reveal lands in a group, and at the verdict; claims and
    commits change nothing visible, so their times come from the facts.
    """
    from p2pci.core.evidence import load_bundle
    from p2pci.core.messages import Claim
    from p2pci.core.selection import selection

    bundle = await pub.call("export", job=job)
    if isinstance(bundle, str):
        bundle = bytes.fromhex(bundle)
    view = load_bundle(bundle)
    offer = view.offer_msg
    assert offer is not None
    leases = [c.body.lease_until for cs in view.claims.values() for c in cs if isinstance(c.body, Claim)]
    out = {
        "to_first_claim_s": (min(leases) - lease_ms - offer.created) / 1000,
        "builds": float(len(view.commits)),
    }
    rounds = selection(view).rounds
    if rounds:  # the claim window actually used: the offer's created to round 0's created
        out["window_used_s"] = (rounds[0].created - offer.created) / 1000
    jt = watch.job(job)
    revealed = [t for (name, t, _s, votes) in jt.events if name == pub.name and votes > 0]
    if revealed:
        out["to_first_reveal_s"] = min(revealed) - t_call
    spans = [(a, b) for a, b in jt.builds.values() if a is not None and b is not None]
    if spans:
        out["to_first_build_start_s"] = min(a for a, _ in spans) - t_call
        out["build_s"] = statistics.median(b - a for a, b in spans)
        out["to_last_build_end_s"] = max(b for _, b in spans) - t_call
    return out


BUDGET_S = {True: 60, False: 240}  # quick / full: a stuck part must not stall `make bench`


def run(quick: bool) -> Results:
    out: Results = {}

    limit = budget(BUDGET_S[quick])

    async def bounded() -> None:
        with trio.fail_after(limit):
            await overhead(quick, out)

    try:
        trio.run(bounded)
    except trio.TooSlowError:
        out["errors"] = {"overhead": f"gave up after {limit:.0f} s (partial results kept)"}
    return out
