"""The hardened Docker runner (docs/protocol.md section 9, docs/security.md).

Every build: `--network none`, read-only root, `--cap-drop ALL`,
`no-new-privileges`, user 65534:65534, pids/memory/cpus limits (the offer's,
clamped by the worker's `RunnerPolicy`), tmpfs `/tmp`, a size-limited tmpfs
`/out`, the source read-only at `/build/src` (also the working directory),
the pinned inputs (when the spec pins some) read-only at `/build/inputs`,
hostname `p2pci-build`, environment exactly SOURCE_DATE_EPOCH (when set),
TZ=UTC, LANG=C.UTF-8, HOME=/tmp plus the offer's env. Docker keeps no log
(log driver "none"): stdout and stderr are read from the attach stream,
interleaved, into a capped file. The container and the unpacked source are
removed in every case: success, failure, timeout, cancel, exception.

`/out` is a tmpfs *volume* that an idle "holder" container keeps mounted, so
that it can still be read once the build has exited (Docker unmounts a tmpfs,
and with it the outputs, when its last container stops; `get_archive` never
sees a container's own `--tmpfs` mounts). Holder and volume are made ahead of
time, one per /out size, in a background thread (`warm`, and again after
each build): the build takes a running one, so neither its creation nor its
removal sits between "publish" and "verdict". Each is used by one build only.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from p2pci.core.errors import BuildError, LocalError
from p2pci.core.results import result_digest
from p2pci.runner.base import (
    BUILD_HOSTNAME,
    BUILD_USER,
    INPUTS_DIR,
    OUT_DIR,
    SOURCE_DIR,
    BuildResult,
    BuildSpec,
    OnLog,
    RunnerPolicy,
)
from p2pci.runner.dockerutil import LABEL, LABEL_OWNER, LABEL_RUN, LABEL_WORK, client
from p2pci.runner.inputs import unpack_inputs
from p2pci.runner.outputs import IterStream, OutputError, read_outputs
from p2pci.runner.source import unpack_source

FIXED_ENV = (("TZ", "UTC"), ("LANG", "C.UTF-8"), ("HOME", "/tmp"))
_POLL = 0.05
OUT_SLACK_MB = 1  # /out tmpfs is this much larger than the limit, so "over the limit" is visible


def build_env(spec: BuildSpec) -> list[str]:
    env = dict(spec.env)
    env.update(FIXED_ENV)
    env.pop("SOURCE_DATE_EPOCH", None)
    if spec.source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(spec.source_date_epoch)
    return [f"{k}={v}" for k, v in sorted(env.items())]


_IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CPUSET = re.compile(r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")


def check_spec(spec: BuildSpec) -> None:
    """The last line of defence: a spec from the network names an image by ID only, etc."""
    if not _IMAGE_ID.match(spec.image_id):
        raise BuildError(f"bad image ID {spec.image_id!r}: builds run on images pinned by ID")
    if not spec.command or any(not isinstance(a, str) or "\x00" in a for a in spec.command):
        raise BuildError("bad command: an empty argv or a NUL byte")
    for k, v in spec.env:
        if not _ENV_KEY.match(k) or "\x00" in v:
            raise BuildError(f"bad environment variable {k!r}")
    if spec.cpuset is not None and not _CPUSET.match(spec.cpuset):
        raise BuildError(f"bad cpuset {spec.cpuset!r}")
    if spec.umask is not None and not 0 <= spec.umask <= 0o777:
        raise BuildError("bad umask")


def build_command(spec: BuildSpec) -> list[str]:
    if spec.umask is None:
        return list(spec.command)
    return ["/bin/sh", "-c", f'umask {spec.umask:04o} && exec "$@"', "p2pci-umask", *spec.command]


class _LogPump(threading.Thread):
    """Copies the attach stream into the log file, capped, with a truncation marker.

    `on_log` (optional) gets the same bytes as the file, chunk by chunk, from this thread;
    an exception in it stops the live copy, never the build or the log file.
    """

    def __init__(self, stream: Any, log: IO[bytes], cap: int, on_log: OnLog | None = None) -> None:
        super().__init__(daemon=True, name="p2pci-log")
        self.stream, self.log, self.cap = stream, log, cap
        self.on_log = on_log
        self.written = 0
        self.truncated = False
        self.done = threading.Event()

    def _emit(self, data: bytes) -> None:
        self.log.write(data)
        if self.on_log is not None and data:
            try:
                self.on_log(data)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the log
                self.on_log = None

    def run(self) -> None:
        try:
            for chunk in self.stream:
                if self.truncated:
                    continue  # keep draining so the build never blocks on a full pipe
                room = self.cap - self.written
                if len(chunk) > room:
                    self._emit(chunk[:room])
                    self._emit(f"\n[p2pci: log truncated at {self.cap} bytes]\n".encode())
                    self.written = self.cap
                    self.truncated = True
                else:
                    self._emit(chunk)
                    self.written += len(chunk)
        except Exception:  # the stream breaks when the container is killed or removed
            pass
        finally:
            self.done.set()


@dataclass
class _Out:
    """A /out tmpfs volume and the idle holder container that keeps it mounted."""

    run_id: str  # also the build's `p2pci.run` label: the three share it
    size_mb: int
    volume: Any
    holder: Any
    started_at: str  # the holder's State.StartedAt: a restarted holder means a remounted, empty /out


_HOLDER_CMD = ["sleep", "2147483647"]
_MAX_WARM_SIZES = 4  # distinct /out sizes kept warm (one ready holder each)


class DockerRunner:
    """Runner for real builds. `work_dir` holds the results (`p2pci-result-*` dirs).

    `warm=1` keeps one /out holder ready per recent /out size (made in a background
    thread); `warm=0` makes it during the build, as part of it. `close()` removes the
    ready ones and waits for the background removals (also run at interpreter exit);
    a process killed with SIGKILL leaves them to `reap_orphans` at its next start.
    """

    def __init__(
        self,
        work_dir: Path | None = None,
        policy: RunnerPolicy | None = None,
        holder_image: str | None = None,
        labels: dict[str, str] | None = None,
        owner: str | None = None,
        warm: int = 1,
    ) -> None:
        self.labels = dict(labels or {})  # extra labels on containers and volumes (tests find theirs)
        # A daemon names itself as owner so that, after a crash (kill -9 mid-build), its next
        # start can remove what the dead process left behind without touching other daemons'.
        self.owner = owner
        if owner is not None:
            self.labels[LABEL_OWNER] = owner
        self.holder_image = holder_image  # any image with `sleep`; default: the busybox image
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.gettempdir())
        self.policy = policy or RunnerPolicy()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.labels.setdefault(LABEL_WORK, str(self.work_dir.resolve()))
        self.warm_depth = max(0, min(1, warm))
        self._lock = threading.Lock()
        self._ready: dict[int, _Out] = {}  # /out size (MiB, slack included) -> a running holder
        self._making: set[int] = set()  # sizes being made in the background
        self._background: set[threading.Thread] = set()
        self._closed = False
        self._atexit = False

    # ------------------------------------------------------------------ the /out pool

    def warm(self, limits: Any) -> None:
        """Start making a /out holder for builds with these limits (clamped), if none is ready.

        Non-blocking; a failure here is silent (the build then makes its own and reports).
        """
        if self.warm_depth:
            self._refill(self.policy.clamp(limits).out_mb + OUT_SLACK_MB)

    def _refill(self, size_mb: int) -> None:
        with self._lock:
            if self._closed or size_mb in self._ready or size_mb in self._making:
                return
            self._making.add(size_mb)
        self._spawn(self._make_ready, size_mb)

    def _make_ready(self, size_mb: int) -> None:
        try:
            out = self._make_out(size_mb)
        except Exception:  # noqa: BLE001 - the build that needs it makes its own and says why
            with self._lock:
                self._making.discard(size_mb)
            return
        evicted: list[_Out] = []
        with self._lock:
            self._making.discard(size_mb)
            if self._closed or size_mb in self._ready:
                evicted.append(out)
            else:
                self._ready[size_mb] = out
                while len(self._ready) > _MAX_WARM_SIZES:  # the oldest size goes
                    evicted.append(self._ready.pop(next(iter(self._ready))))
        for old in evicted:
            _dispose(old)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        def body() -> None:
            try:
                target(*args)
            finally:
                with self._lock:
                    self._background.discard(threading.current_thread())

        t = threading.Thread(target=body, daemon=True, name="p2pci-out-pool")
        with self._lock:
            self._background.add(t)
            if not self._atexit:
                self._atexit = True
                atexit.register(self.close)
        t.start()

    def _take_out(self, size_mb: int) -> _Out | None:
        """A ready holder of this size that is still running, or None."""
        with self._lock:
            out = self._ready.pop(size_mb, None)
        if out is None:
            return None
        try:
            state = out.holder.client.api.inspect_container(out.holder.id)["State"]
            if state.get("Running") and state.get("StartedAt") == out.started_at:
                return out
        except Exception:  # noqa: BLE001 - gone: make a new one
            pass
        self._spawn(_dispose, out)
        return None

    def _make_out(self, size_mb: int) -> _Out:
        """Create a /out volume and start its holder."""
        run_id = uuid.uuid4().hex
        volume = self._make_volume(size_mb, run_id)
        try:
            return self._start_holder(volume, size_mb, run_id)
        except BaseException:
            _remove_volume(volume)
            raise

    def _make_volume(self, size_mb: int, run_id: str) -> Any:
        import docker

        try:
            return client().volumes.create(
                name=f"p2pci-out-{run_id}",
                driver="local",
                driver_opts={
                    "type": "tmpfs",
                    "device": "tmpfs",
                    "o": f"size={size_mb}m,nr_inodes=65536,uid=65534,gid=65534,mode=0755,nosuid,nodev",
                },
                labels={**self.labels, LABEL: "1", LABEL_RUN: run_id},
            )
        except docker.errors.APIError as e:
            raise BuildError(f"cannot create the /out volume: {e.explanation or e}") from None

    def _hardening(self, run_id: str) -> dict[str, Any]:
        """What every container of a run is created with, the build and its /out holder alike:
        an unprivileged user, no network, a read-only root, no capabilities, no privilege gain,
        no Docker log, a private IPC namespace, and the run's labels."""
        from docker.types import LogConfig

        return {
            "user": BUILD_USER,
            "network_mode": "none",
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "log_config": LogConfig(type="none"),
            "labels": {**self.labels, LABEL: "1", LABEL_RUN: run_id},
            "ipc_mode": "private",
            "detach": True,
        }

    def _start_holder(self, volume: Any, size_mb: int, run_id: str) -> _Out:
        """Start the idle holder of `volume` (same hardening as the build); removed on failure."""
        import docker
        from docker.types import Mount

        dc = client()
        holder: Any = None
        try:
            holder = dc.containers.create(
                image=self._holder_image(),
                command=_HOLDER_CMD,
                mounts=[
                    Mount(target=OUT_DIR, source=volume.name, type="volume", read_only=True, no_copy=True)
                ],
                pids_limit=8,
                mem_limit="32m",
                **self._hardening(run_id),
            )
            holder.start()
            state = dc.api.inspect_container(holder.id)["State"]
            if not state.get("Running"):
                raise BuildError("the /out holder container exited at once")
            return _Out(run_id, size_mb, volume, holder, str(state.get("StartedAt")))
        except BaseException as e:
            if holder is not None:
                try:
                    _remove(holder)
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
            if isinstance(e, docker.errors.APIError):
                raise BuildError(f"cannot start the /out holder: {e.explanation or e}") from None
            raise

    def drain(self, timeout: float = 60.0) -> None:
        """Wait for the background holder work (making and removing) to finish."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._background)
            if not pending:
                return
            for t in pending:
                t.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return

    def close(self) -> None:
        """Stop warming, remove the ready holders, wait for background removals. Idempotent."""
        with self._lock:
            self._closed = True
        self.drain()
        with self._lock:
            ready = list(self._ready.values())
            self._ready.clear()
        for out in ready:
            try:
                _dispose(out)
            except Exception:  # noqa: BLE001 - reap_orphans gets it at the next start
                pass

    def reap_orphans(self) -> int:
        """Remove containers and /out volumes labelled with this runner's owner.

        Call it before the first build: anything with our owner label then belongs to a
        previous process of the same node that died without cleaning up. Returns the count.
        """
        if self.owner is None:
            return 0
        import docker

        dc = client()
        selector = {"label": [f"{LABEL}=1", f"{LABEL_OWNER}={self.owner}"]}
        found = []
        for c in dc.api.containers(all=True, filters=selector):
            try:
                found.append(dc.containers.get(c["Id"]))
            except docker.errors.NotFound:
                pass
        _remove_all(found)
        volumes = dc.volumes.list(filters=selector)
        for v in volumes:
            try:
                _remove_volume(v)
            except docker.errors.APIError:
                pass
        return len(found) + len(volumes)

    # ------------------------------------------------------------------ a build

    def run(
        self,
        spec: BuildSpec,
        source_tar: Path,
        *,
        cancel: threading.Event,
        on_log: OnLog | None = None,
        inputs_tar: Path | None = None,
    ) -> BuildResult:
        check_spec(spec)
        limits = self.policy.clamp(spec.limits)
        result_dir = Path(tempfile.mkdtemp(prefix="p2pci-result-", dir=self.work_dir))
        log_path = result_dir / "build.log"
        out_dir = result_dir / "out"
        scratch = Path(tempfile.mkdtemp(prefix="p2pci-run-", dir=self.work_dir))
        t0 = time.monotonic()
        phases: dict[str, float] = {}
        try:
            src = scratch / "src"
            unpack_source(source_tar, src, max_bytes=self.policy.max_source_mb << 20)
            phases["unpack"] = time.monotonic() - t0
            inputs = unpack_inputs(spec, inputs_tar, scratch / "inputs")  # checks the pinned sha256 first
            if cancel.is_set():
                raise BuildError("build cancelled")
            with open(log_path, "wb") as log:
                return self._run_container(
                    spec, limits, src, log, log_path, out_dir, cancel, t0, phases, on_log, inputs
                )
        except BaseException:
            shutil.rmtree(result_dir, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run_container(
        self,
        spec: BuildSpec,
        limits: Any,
        src: Path,
        log: IO[bytes],
        log_path: Path,
        out_dir: Path,
        cancel: threading.Event,
        t0: float,
        phases: dict[str, float],
        on_log: OnLog | None = None,
        inputs: Path | None = None,
    ) -> BuildResult:
        import docker
        from docker.types import Mount, Ulimit

        dc = client()

        def result(status: Any, exit_code: int | None, error: str | None, manifest: Any = ()) -> BuildResult:
            digest = result_digest(exit_code, manifest) if status == "ok" and exit_code is not None else None
            return BuildResult(
                status=status,
                exit_code=exit_code,
                manifest=tuple(manifest),
                digest=digest,
                log_path=log_path,
                out_dir=out_dir if status == "ok" else None,
                duration_s=time.monotonic() - t0,
                error=error,
                phases=tuple((k, round(v, 4)) for k, v in phases.items()),
            )

        size_mb = limits.out_mb + OUT_SLACK_MB
        t = time.monotonic()
        out = self._take_out(size_mb) if self.warm_depth else None
        # No ready holder: start one in a thread while the build container is created. It
        # must be running before the build starts (else /out would die with the build).
        maker: threading.Thread | None = None
        made: list[_Out] = []
        failed: list[BaseException] = []
        volume: Any = None
        if out is None:
            run_id = uuid.uuid4().hex
            volume = self._make_volume(size_mb, run_id)

            def make() -> None:
                try:
                    made.append(self._start_holder(volume, size_mb, run_id))
                except BaseException as e:  # noqa: BLE001 - re-raised by the build thread
                    failed.append(e)

            maker = threading.Thread(target=make, daemon=True, name="p2pci-out-make")
            maker.start()
        else:
            run_id, volume = out.run_id, out.volume
        container: Any = None
        ok = finished = False
        try:
            try:
                container = dc.containers.create(
                    image=spec.image_id,
                    command=build_command(spec),
                    cpuset_cpus=spec.cpuset,
                    environment=build_env(spec),
                    working_dir=SOURCE_DIR,
                    hostname=BUILD_HOSTNAME,
                    pids_limit=limits.pids,
                    mem_limit=f"{limits.memory_mb}m",
                    memswap_limit=f"{limits.memory_mb}m",
                    nano_cpus=min(limits.cpus, os.cpu_count() or 1)
                    * 1_000_000_000,  # docker refuses more than the host has
                    tmpfs={"/tmp": f"rw,exec,nosuid,nodev,size={limits.memory_mb}m,mode=1777"},
                    mounts=[
                        Mount(target=SOURCE_DIR, source=str(src), type="bind", read_only=True),
                        Mount(target=OUT_DIR, source=volume.name, type="volume", no_copy=True),
                        *_inputs_mounts(inputs),
                    ],
                    ulimits=[
                        Ulimit(name="core", soft=0, hard=0),
                        Ulimit(name="nofile", soft=4096, hard=4096),
                    ],
                    stdin_open=False,
                    tty=False,
                    **self._hardening(run_id),
                )
            except docker.errors.ImageNotFound:
                raise BuildError(f"image {spec.image_id} is not present (ensure_image first)") from None
            except docker.errors.APIError as e:
                raise BuildError(f"cannot create the build container: {e.explanation or e}") from None
            finally:
                if maker is not None:
                    maker.join()
                    out = made[0] if made else None
            if failed:
                raise failed[0]
            assert out is not None
            phases["create"] = time.monotonic() - t
            res = self._build(container, out, limits, log, out_dir, cancel, result, phases, on_log)
            ok, finished = res.status == "ok", True
            return res
        except docker.errors.APIError as e:
            raise BuildError(f"docker failed during the build: {e.explanation or e}") from None
        finally:
            doomed = [c for c in (container, out.holder if out is not None else None) if c is not None]
            if ok:
                # the outputs are copied and the build is dead: removal leaves the critical
                # path (`drain`/`close` wait for it; after kill -9, `reap_orphans` does it)
                self._spawn(_remove_everything, doomed, volume)
            else:
                _remove_everything(doomed, volume)
            if self.warm_depth and finished:
                self._refill(size_mb)  # after the build, not during it: the next one finds it ready

    def _holder_image(self) -> str:
        if self.holder_image is None:
            from p2pci.runner.images import resolve_image

            self.holder_image = resolve_image("busybox")
        return self.holder_image

    def _build(
        self,
        container: Any,
        out: _Out,
        limits: Any,
        log: IO[bytes],
        out_dir: Path,
        cancel: threading.Event,
        result: Callable[..., BuildResult],
        phases: dict[str, float],
        on_log: OnLog | None = None,
    ) -> BuildResult:
        import docker

        pump: _LogPump | None = None
        exited = False  # the build container has exited: nothing to kill

        def note(text: str) -> None:
            """The runner's own line in the log (after the pump is done with the file)."""
            data = f"\n[p2pci: {text}]\n".encode()
            if pump is not None:
                pump._emit(data)
            else:
                log.write(data)

        try:
            t = time.monotonic()
            stream = container.attach(stdout=True, stderr=True, stream=True, logs=False)
            pump = _LogPump(stream, log, self.policy.log_cap, on_log)
            pump.start()
            waiter = _Waiter(container)
            try:
                container.start()
            except docker.errors.APIError as e:
                return result("error", None, f"cannot start the build: {e.explanation or e}")
            started = time.monotonic()
            phases["start"] = started - t
            timed_out = False
            waiter.start()
            while not waiter.done.wait(_POLL):
                if cancel.is_set():
                    _kill(container)
                    raise BuildError("build cancelled")
                if time.monotonic() - started > limits.timeout_s:
                    _kill(container)
                    timed_out = True
                    break
            if not waiter.done.wait(60) or waiter.failure is not None:
                raise BuildError(
                    f"lost track of the build container: {waiter.failure or 'no exit after 60 s'}"
                )
            exited = True
            phases["run"] = time.monotonic() - started
            pump.done.wait(10)
            state = waiter.state
            if timed_out:
                note(f"killed after the {limits.timeout_s} s time limit")
                return result("timeout", None, f"timed out after {limits.timeout_s} s")
            t = time.monotonic()
            exit_code = int(state.get("StatusCode", -1))
            # one inspect of each: the build (OOM) and the holder (must have held /out throughout)
            info = container.client.api.inspect_container(container.id)
            if info.get("State", {}).get("OOMKilled"):
                note(f"killed: out of memory ({limits.memory_mb} MiB)")
            if cancel.is_set():
                raise BuildError("build cancelled")
            held = out.holder.client.api.inspect_container(out.holder.id).get("State", {})
            if not held.get("Running") or held.get("StartedAt") != out.started_at:
                raise BuildError("the /out holder container stopped during the build: outputs lost")
            try:
                chunks, _stat = out.holder.get_archive(OUT_DIR)
                manifest = read_outputs(IterStream(chunks), out_dir, max_bytes=limits.out_mb << 20)
            except OutputError as e:
                shutil.rmtree(out_dir, ignore_errors=True)
                note(f"rejected outputs: {e}")
                return result("error", exit_code, str(e))
            phases["copy_out"] = time.monotonic() - t
            return result("ok", exit_code, None, manifest)
        except (docker.errors.APIError, OSError) as e:
            raise BuildError(f"docker failed during the build: {e}") from None
        finally:
            if not exited:
                _kill(container)
            if pump is not None:
                try:
                    pump.stream.close()
                except Exception:
                    pass
                pump.join(5)


def _dispose(out: _Out) -> None:
    """Remove a holder, then its volume."""
    _remove_everything([out.holder], out.volume)


def _remove_everything(containers: list[Any], volume: Any) -> None:
    """Remove the containers (concurrently), then the volume (once nothing uses it)."""
    try:
        _remove_all(containers)
    finally:
        _remove_volume(volume)


def _inputs_mounts(inputs: Path | None) -> list[Any]:
    """The pinned inputs, unpacked like the source, read-only at /build/inputs (none: no mount)."""
    from docker.types import Mount

    if inputs is None:
        return []
    return [Mount(target=INPUTS_DIR, source=str(inputs), type="bind", read_only=True)]


class _Waiter(threading.Thread):
    """Waits for the container to exit (the attach stream may end earlier)."""

    def __init__(self, container: Any) -> None:
        super().__init__(daemon=True, name="p2pci-wait")
        self.container = container
        self.state: dict[str, Any] = {}
        self.failure: str | None = None
        self.done = threading.Event()

    def run(self) -> None:
        import requests

        try:
            while True:
                try:
                    self.state = self.container.wait(timeout=30)
                    return
                except requests.exceptions.ReadTimeout:
                    continue
                except requests.exceptions.ConnectionError as e:
                    if "timed out" in str(e).lower():
                        continue
                    raise
        except Exception as e:
            self.failure = str(e) or type(e).__name__
        finally:
            self.done.set()


def _kill(container: Any) -> None:
    import docker

    try:
        container.kill()
    except docker.errors.APIError:
        pass  # already exited


def _remove_volume(volume: Any) -> None:
    import docker

    for _ in range(50):
        try:
            volume.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            if e.status_code == 409:  # still in use by a container being removed
                time.sleep(0.1)
                continue
            raise LocalError(f"cannot remove build volume {volume.name}: {e}") from None


def _remove_all(containers: list[Any]) -> None:
    """Remove the containers concurrently; re-raise the first failure after all were tried."""
    errors: list[BaseException] = []

    def remove(c: Any) -> None:
        try:
            _remove(c)
        except BaseException as e:  # noqa: BLE001 - collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=remove, args=(c,), daemon=True) for c in containers[1:]]
    for t in threads:
        t.start()
    if containers:
        remove(containers[0])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _remove(container: Any) -> None:
    import docker

    for _ in range(50):
        try:
            container.remove(force=True, v=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            if e.status_code == 409:  # removal already in progress
                time.sleep(0.1)
                continue
            raise LocalError(f"cannot remove build container {container.id[:12]}: {e}") from None
