"""`make realworld`: real upstream projects through `p2pci try` and a 4-worker mesh; regenerates docs/realworld.md.

Each case is a tiny p2pci project written into a scratch directory: its
`[fetch]` / `[[input]]` bring the upstream source (and dependencies) from the
registries reachable here (PyPI, npm, Debian), pinned by SHA-256, and its
build turns them into the usual artifacts. The script runs `p2pci try` on
each (two builds with varied conditions; see docs/publishing.md), records the
verdict, the wall time, the output size and file count, and for an
unreproducible build the first differences and the result of the case's
smallest fix. Then it starts a publisher and 4 worker daemons on loopback
and publishes every case (and the fixed variant of an unreproducible one)
with `--replicas 4 --quorum 4`, fetching the agreed artifacts. Last, it
rewrites the table in docs/realworld.md between its markers (only after a
full run: not with --only, --no-try or --no-mesh). Not part of `make test`
(it downloads, and builds images the first time: tens of minutes); `make
test` runs the `cjson-make` row (tests/integration/test_realworld_case.py).

    python -m bench.realworld [--only NAME ...] [--list] [--no-write] [--keep DIR] [--no-mesh] [--no-try]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "realworld.md"
BEGIN, END = "<!-- realworld:begin -->", "<!-- realworld:end -->"

PY_IMAGE = "debian:bookworm+python3-pip,python3-setuptools,python3-wheel"
C_PY_IMAGE = "debian:bookworm+build-essential,python3-dev,python3-pip,python3-setuptools,python3-wheel"
DEB_IMAGE = "debian:bookworm+build-essential,debhelper,dpkg-dev,fakeroot,help2man,texinfo"
DEBIAN_POOL = "http://deb.debian.org/debian/pool/main"
C_IMAGE = "debian:bookworm+build-essential"  # also built by `make test` (tests/integration)
NPM_IMAGE = "debian:bookworm+npm"
GO_IMAGE = (
    "debian:bookworm+golang-github-fatih-color-dev,golang-github-mattn-go-colorable-dev,"
    "golang-github-nwidger-jsoncolor-dev,golang-github-pkg-errors-dev,golang-go,xz-utils"
)
DOCS_IMAGE = "debian:bookworm+python3-sphinx"
CASE_FILES = Path(__file__).resolve().parent / "realworld_cases"  # files too long to write inline


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # the row of the list it fills
    upstream: str  # what is built, and from where
    files: dict[str, str]  # the project: p2pci.toml, build.sh, …
    fix: dict[str, str] | None = None  # files replaced by the smallest fix (when unreproducible)
    fix_note: str = ""
    mesh: bool = True  # False: only `p2pci try` (mesh_note says why)
    mesh_note: str = ""


@dataclass
class Row:
    case: Case
    verdict: str = "not run"
    seconds: float | None = None
    out_bytes: int | None = None
    out_files: int | None = None
    reason: str = ""
    fixed_verdict: str = ""
    notes: list[str] = field(default_factory=list)
    mesh: MeshResult | None = None
    fixed_mesh: MeshResult | None = None


@dataclass
class MeshResult:
    """One `p2pci publish --wait` through the 4-worker mesh, and what `p2pci fetch` got."""

    verdict: str  # REPRODUCED, DISPUTED, FAILED, EXPIRED, … or "error"
    seconds: float
    agreeing: int = 0  # workers in the largest group
    groups: int = 0
    out_bytes: int | None = None
    out_files: int | None = None
    note: str = ""

    def cell(self) -> str:
        if self.verdict == "error":
            return f"error ({_cell(self.note)})"
        text = f"{self.verdict} ({self.agreeing}/{MESH_WORKERS} agree" + (
            f", {self.groups} groups" if self.groups > 1 else ""
        )
        text += f"), {self.seconds:.0f} s"
        if self.out_files is not None:
            text += f", fetched {_fmt_size(self.out_bytes)} in {self.out_files} file{'' if self.out_files == 1 else 's'}"
        return text + (f" ({_cell(self.note)})" if self.note else "")


def _toml(
    image: str, fetch: str | None = None, inputs: str = "", sde: int | None = 1700000000, timeout: str = "20m"
) -> str:
    text = f'[build]\nimage = "{image}"\ncommand = ["sh", "build.sh"]\ntimeout = "{timeout}"\nmemory = "2g"\ncpus = 2\n'
    if sde is not None:
        text += f"source_date_epoch = {sde}\n"
    if fetch is not None:
        text += f'\n[fetch]\ncommand = "{fetch}"\ntimeout = "10m"\n'
    text += inputs
    return text


def _input(url: str, sha256: str) -> str:
    return f'\n[[input]]\nurl = "{url}"\nsha256 = "{sha256}"\n'


HELLO_INPUTS = (
    _input(
        f"{DEBIAN_POOL}/h/hello/hello_2.10-3.dsc",
        "75296f5ef618ae2f1849e22b142a2b5ab52c452ebefa4e7b0564c44617db3790",
    )
    + _input(
        f"{DEBIAN_POOL}/h/hello/hello_2.10.orig.tar.gz",
        "31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b",
    )
    + _input(
        f"{DEBIAN_POOL}/h/hello/hello_2.10-3.debian.tar.xz",
        "60ee7a466808301fbaa7fea2490b5e7a6d86f598956fb3e79c71b3295dc1f249",
    )
)

CASES: list[Case] = [
    Case(
        name="requests-wheel",
        kind="PyPI sdist with dependencies, built into a wheel",
        upstream="requests 2.32.3 sdist (PyPI), its 4 dependencies as wheels",
        files={
            "p2pci.toml": _toml(
                PY_IMAGE,
                fetch="pip download --no-binary requests --disable-pip-version-check requests==2.32.3 -d /inputs",
            ),
            "build.sh": """set -eu
umask 022
pip wheel --no-deps --no-build-isolation --no-index --disable-pip-version-check -w /out /build/inputs/requests-2.32.3.tar.gz
pip install --no-index --find-links /build/inputs --target /tmp/site --disable-pip-version-check /out/requests-2.32.3-*.whl
PYTHONPATH=/tmp/site python3 -c 'import requests; print(requests.__version__)' > /out/import-check.txt
""",
        },
    ),
    Case(
        name="markupsafe-c-ext",
        kind="PyPI project with a C extension",
        upstream="MarkupSafe 2.1.5 sdist (PyPI): the `_speedups` C extension",
        files={
            "p2pci.toml": _toml(C_PY_IMAGE)
            + _input(
                "https://files.pythonhosted.org/packages/87/5b/aae44c6655f3801e81aa3eef09dbbf012431987ba564d7231722f68df02d/MarkupSafe-2.1.5.tar.gz",
                "d283d37a890ba4c1ae73ffadf8046435c76e7bc2247bbb63c00bd1a709c6544b",
            ),
            "build.sh": """set -eu
umask 022
pip wheel --no-deps --no-build-isolation --no-index --disable-pip-version-check -w /out /build/inputs/MarkupSafe-2.1.5.tar.gz
""",
        },
        fix={
            "build.sh": """set -eu
umask 022
# Build in a fixed directory (pip would pick a random /tmp/pip-req-build-*), and map it away.
mkdir -p /tmp/b && tar -xzf /build/inputs/MarkupSafe-2.1.5.tar.gz -C /tmp/b
export CFLAGS="-ffile-prefix-map=/tmp/b=."
pip wheel --no-deps --no-build-isolation --no-index --disable-pip-version-check -w /out /tmp/b/MarkupSafe-2.1.5
"""
        },
        fix_note="build in a fixed directory with `-ffile-prefix-map` (pip's random build directory ends up in the debug info)",
    ),
    Case(
        name="hello-deb",
        kind="Debian source package built into .debs with dpkg-buildpackage",
        upstream="GNU hello 2.10-3 (Debian bookworm source package: .dsc, .orig.tar.gz, .debian.tar.xz)",
        files={
            "p2pci.toml": _toml(DEB_IMAGE, sde=None) + HELLO_INPUTS,
            "build.sh": """set -eu
umask 022
unset SOURCE_DATE_EPOCH  # dpkg takes it from debian/changelog, as Debian's own builds do
mkdir -p /tmp/b && cd /tmp/b
cp /build/inputs/hello_2.10* .
dpkg-source --no-check -x hello_2.10-3.dsc hello
cd hello
dpkg-buildpackage -b -us -uc --no-sign
cp ../*.deb /out/
""",
        },
    ),
    Case(
        name="hello-autotools",
        kind="C autotools project",
        upstream="GNU hello 2.10 release tarball (from Debian's .orig.tar.gz): ./configure && make install",
        files={
            "p2pci.toml": _toml(DEB_IMAGE)
            + _input(
                f"{DEBIAN_POOL}/h/hello/hello_2.10.orig.tar.gz",
                "31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b",
            ),
            "build.sh": """set -eu
umask 022
mkdir -p /tmp/b && cd /tmp/b
tar -xzf /build/inputs/hello_2.10.orig.tar.gz
cd hello-2.10
./configure --prefix=/usr --disable-nls
make
make install DESTDIR=/out
""",
        },
    ),
]


def _case_files(name: str) -> dict[str, str]:
    d = CASE_FILES / name
    return {p.name: p.read_text() for p in sorted(d.iterdir()) if p.is_file()}


CASES += [
    Case(
        name="cjson-make",
        kind="C library with a plain Makefile (the `make test` case)",
        upstream="cJSON 1.7.15 (Debian's .orig.tar.gz): shared and static libraries and headers in a tarball, its test program's output",
        files={
            "p2pci.toml": _toml(C_IMAGE, timeout="10m")
            + _input(
                f"{DEBIAN_POOL}/c/cjson/cjson_1.7.15.orig.tar.gz",
                "5308fd4bd90cef7aa060558514de6a1a4a0819974a26e6ed13973c5f624c24b2",
            ),
            "build.sh": """set -eu
umask 022
mkdir -p /tmp/b && cd /tmp/b
tar -xzf /build/inputs/cjson_1.7.15.orig.tar.gz
cd cJSON-1.7.15
make all
./cJSON_test > /out/selftest.txt
# /out takes regular files only: the installed tree (with its .so links) goes into one tarball
make install DESTDIR=/tmp/root PREFIX=/usr
cp libcjson.a libcjson_utils.a /tmp/root/usr/lib/
tar -C /tmp/root --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -cf - usr \
  | gzip -9n > /out/cjson-1.7.15-linux-x86_64.tar.gz
""",
        },
    ),
    Case(
        name="cowsay-npm",
        kind="npm package with a lockfile and dependencies, packed as a bundle",
        upstream="cowsay 1.6.0 and its 41 dependencies (npm registry, locked with integrity hashes), "
        "`npm pack` with bundleDependencies",
        files={
            "p2pci.toml": _toml(
                NPM_IMAGE,
                fetch="cp package.json package-lock.json /inputs/ && cd /inputs && "
                "npm ci --ignore-scripts --no-audit --no-fund --no-update-notifier",
                timeout="10m",
            ),
            "build.sh": """set -eu
umask 022
mkdir -p /tmp/w && cd /tmp/w
cp /build/src/package.json /build/src/package-lock.json .
cp -r /build/inputs/node_modules .
npm pack --offline --pack-destination /out > /dev/null
mkdir /tmp/t && tar -xzf /out/cowsay-bundle-1.6.0.tgz -C /tmp/t
node /tmp/t/package/node_modules/cowsay/cli.js -f tux "built offline from a lockfile" > /out/selftest.txt
""",
            **_case_files("cowsay-bundle"),
        },
    ),
    Case(
        name="gron-go",
        kind="Go program on Debian's toolchain with vendored dependencies",
        upstream="gron 0.7.1 (Debian's .orig.tar.xz), Go 1.19 from Debian, its dependencies vendored "
        "from 6 of Debian's golang-*-dev packages (listed in `vendored.txt`)",
        files={
            "p2pci.toml": _toml(GO_IMAGE, timeout="15m")
            + _input(
                f"{DEBIAN_POOL}/g/gron/gron_0.7.1.orig.tar.xz",
                "fcd12b1b7a2b4d9e8340a451285fd679f2d66933349351c527ac3a5d6cb46fa9",
            ),
            "build.sh": """set -eu
umask 022
export HOME=/tmp GOCACHE=/tmp/gocache GOPATH=/tmp/gopath GO111MODULE=off CGO_ENABLED=0 GOFLAGS=
src=$GOPATH/src/github.com/tomnomnom/gron
mkdir -p "$src" && cd "$src"
tar -xJf /build/inputs/gron_0.7.1.orig.tar.xz --strip-components=1
# Vendor the dependencies from the Debian packages in the image (golang-*-dev: /usr/share/gocode/src).
mkdir vendor && cp -a /usr/share/gocode/src/. vendor/
dpkg-query -W -f '${Package} ${Version}\n' 'golang-*-dev' golang-go > /out/vendored.txt
go build -o /out/gron .
/out/gron testdata/one.json > /out/selftest.txt
""",
        },
    ),
    Case(
        name="django-docs",
        kind="Sphinx documentation build with more than 1,000 output files",
        upstream="Django 4.2.16 sdist (PyPI): its docs/ (588 pages) with Debian's Sphinx 5.3",
        files={
            "p2pci.toml": _toml(DOCS_IMAGE, timeout="40m")
            + _input(
                "https://files.pythonhosted.org/packages/65/d8/a607ee443b54a4db4ad28902328b906ae6218aa556fb9b3ac45c0bcb313d/Django-4.2.16.tar.gz",
                "6f1616c2786c408ce86ab7e10f792b8f15742f7b7b7460243929cb371e7f1dad",
            ),
            "build.sh": """set -eu
umask 022
mkdir -p /tmp/b && cd /tmp/b
tar -xzf /build/inputs/Django-4.2.16.tar.gz Django-4.2.16/docs Django-4.2.16/django
cd Django-4.2.16/docs
# -j 1: one process whatever the worker's CPUs; the doctrees stay out of /out
sphinx-build -b html -j 1 -q -d /tmp/doctrees . /out/html 2> /tmp/warnings.txt || { tail -50 /tmp/warnings.txt; exit 1; }
grep -c WARNING /tmp/warnings.txt > /out/warnings-count.txt || true
""",
        },
    ),
]


def _p2pci(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pci.cli.main", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


def _write_project(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


def _try(d: Path, keep: Path, cache: Path) -> tuple[str, float, str, str]:
    t0 = time.monotonic()
    r = _p2pci("try", str(d), "--keep", str(keep), env={"P2PCI_CACHE_DIR": str(cache)})
    seconds = time.monotonic() - t0
    verdict = {0: "reproducible", 1: "NOT reproducible"}.get(r.returncode, f"error (exit {r.returncode})")
    return verdict, seconds, r.stdout, r.stderr


def _size(out: Path) -> tuple[int, int]:
    files = [p for p in out.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def _reason(stdout: str) -> str:
    """The first differing files, and the first changed diffoscope line that names a cause."""
    differs = [ln.removeprefix("differs: ") for ln in stdout.splitlines() if ln.startswith("differs: ")]
    changed = []
    for ln in stdout.splitlines():
        text = ln.lstrip("│┄├└─ ")
        if text.startswith("- ") and not text.startswith("--- "):
            changed.append(" ".join(text[2:].split()))
    clues = [
        c
        for c in changed
        if re.search(r"/tmp/|/build/|comp_dir|date|time|[0-9]{4}-[0-9]{2}-[0-9]{2}", c, re.I)
    ]
    parts = []
    if differs:
        parts.append(
            "differs: " + ", ".join(f"`{p}`" for p in differs[:3]) + (" …" if len(differs) > 3 else "")
        )
    if clues or changed:
        parts.append("diffoscope: `" + (clues or changed)[0][:120].replace("`", "'").replace("|", "/") + "`")
    return "; ".join(parts)


def run_case(case: Case, root: Path, cache: Path) -> Row:
    row = Row(case)
    d = root / case.name
    _write_project(d, case.files)
    keep = root / f"{case.name}.keep"
    verdict, seconds, out, err = _try(d, keep, cache)
    row.verdict, row.seconds = verdict, seconds
    if (keep / "run-1" / "out").is_dir():
        row.out_bytes, row.out_files = _size(keep / "run-1" / "out")
    if verdict.startswith("error"):
        row.notes.append(err.strip().splitlines()[-1][:200] if err.strip() else "no output")
    if verdict == "NOT reproducible":
        row.reason = _reason(out)
        if case.fix is not None:
            _write_project(d, case.fix)
            fixed, _, _, ferr = _try(d, root / f"{case.name}.fixed", cache)
            row.fixed_verdict = fixed
            if fixed.startswith("error"):
                row.notes.append(ferr.strip().splitlines()[-1][:200] if ferr.strip() else "no output")
    return row


MESH_WORKERS = 4
MESH_PUBLISH_TIMEOUT_S = 3600  # four builds side by side on a small machine


async def _mesh_publish(mesh: Any, pub: Any, project: Path, fetch_dir: Path) -> MeshResult:
    """Publish `project` to the 4 workers (all must agree), wait, fetch and measure the artifacts."""
    import trio

    t0 = time.monotonic()
    with trio.move_on_after(MESH_PUBLISH_TIMEOUT_S) as scope:
        res = await mesh.cli(
            pub,
            "publish",
            str(project),
            "--wait",
            "--json",
            "--replicas",
            str(MESH_WORKERS),
            "--quorum",
            str(MESH_WORKERS),
            check=False,
        )
    seconds = time.monotonic() - t0
    if scope.cancelled_caught:
        return MeshResult("error", seconds, note=f"no verdict in {MESH_PUBLISH_TIMEOUT_S} s")
    try:
        view = res.json()
    except Exception:  # not JSON (ValueError), or nothing on stdout (MeshError)
        view = None
    if not isinstance(view, dict) or "verdict" not in view:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return MeshResult("error", seconds, note=f"publish exited {res.returncode}: {last[:160]}")
    groups = [g for g in (view.get("groups") or []) if isinstance(g, dict)]
    sizes = sorted((len(g.get("workers") or []) for g in groups), reverse=True)
    result = MeshResult(str(view["verdict"]), seconds, agreeing=sizes[0] if sizes else 0, groups=len(groups))
    if result.verdict == "REPRODUCED":
        shutil.rmtree(fetch_dir, ignore_errors=True)
        got = await mesh.cli(pub, "fetch", str(view["job"]), "--out", str(fetch_dir), check=False)
        if got.returncode == 0:
            result.out_bytes, result.out_files = _size(fetch_dir)
        else:
            result.note = "fetch failed: " + (got.stderr.strip().splitlines() or ["?"])[-1][:160]
    return result


async def _run_mesh(rows: list[Row], root: Path, cache: Path) -> None:
    """One publisher (--no-build) and 4 workers, real daemons on loopback; every case in turn."""
    import trio

    from p2pci.testing.mesh import open_mesh

    env = {"PYTHONPATH": str(REPO), "P2PCI_CACHE_DIR": str(cache)}
    async with open_mesh(root / "mesh", env=env) as mesh:
        with trio.fail_after(300):
            pub = await mesh.add("publisher", build=False)
            for i in range(1, MESH_WORKERS + 1):
                await mesh.add(f"worker{i}", bootstrap=[pub])
            await mesh.wait_connected(minimum=1)
        for row in rows:
            c = row.case
            if not c.mesh:
                continue
            print(f"realworld: {c.name}: {MESH_WORKERS}-worker mesh …", file=sys.stderr, flush=True)
            d = root / f"{c.name}.mesh"
            _write_project(d, c.files)
            row.mesh = await _mesh_publish(mesh, pub, d, root / f"{c.name}.mesh-out")
            print(f"realworld: {c.name}: mesh {row.mesh.cell()}", file=sys.stderr, flush=True)
            if c.fix is not None and row.mesh.verdict != "REPRODUCED":
                fixed = root / f"{c.name}.mesh-fixed"
                _write_project(fixed, {**c.files, **c.fix})
                row.fixed_mesh = await _mesh_publish(mesh, pub, fixed, root / f"{c.name}.mesh-fixed-out")
                print(
                    f"realworld: {c.name}: mesh after the fix {row.fixed_mesh.cell()}",
                    file=sys.stderr,
                    flush=True,
                )


def run_mesh(rows: list[Row], root: Path, cache: Path) -> None:
    import trio

    trio.run(_run_mesh, rows, root, cache)


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _cell(text: str) -> str:
    """One line of text from a build, safe inside a Markdown table cell."""
    return " ".join(text.replace("|", "/").replace("`", "'").split())


def render(rows: list[Row]) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    lines = [
        BEGIN,
        f"Measured {when} on {os.cpu_count()} CPUs by `make realworld` (`p2pci try`, 2 runs each; then "
        f"a mesh of {MESH_WORKERS} worker daemons and a publisher on loopback, "
        f"`publish --replicas {MESH_WORKERS} --quorum {MESH_WORKERS}`, the artifacts fetched and checked).",
        "",
        f"| project | kind | `p2pci try` | wall time | output | why not reproducible | smallest fix → verdict | {MESH_WORKERS}-worker mesh |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r.case
        size = (
            "–"
            if r.out_files is None
            else f"{_fmt_size(r.out_bytes)}, {r.out_files} file{'' if r.out_files == 1 else 's'}"
        )
        secs = "–" if r.seconds is None else f"{r.seconds:.0f} s"
        fix = (
            f"{c.fix_note} → {r.fixed_verdict}"
            if r.fixed_verdict
            else ("–" if r.verdict == "reproducible" else "")
        )
        verdict = r.verdict + (f" ({'; '.join(_cell(n) for n in r.notes)})" if r.notes else "")
        if r.mesh is not None:
            mesh = r.mesh.cell()
            if r.fixed_mesh is not None:
                mesh += f"; after the fix: {r.fixed_mesh.cell()}"
        else:
            mesh = c.mesh_note or "not run"
        lines.append(
            f"| {c.name}: {c.upstream} | {c.kind} | {verdict} | {secs} | {size} | {r.reason or '–'} | {fix} | {mesh} |"
        )
    lines.append(END)
    return "\n".join(lines)


def write_doc(table: str) -> None:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} … {END} markers")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + table + tail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.realworld", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only this case (repeatable)"
    )
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave docs/realworld.md alone")
    ap.add_argument("--keep", type=Path, default=None, help="keep the projects, outputs and logs here")
    ap.add_argument("--no-mesh", action="store_true", help=f"only `p2pci try`, no {MESH_WORKERS}-worker mesh")
    ap.add_argument("--no-try", action="store_true", help="only the mesh (the try columns say 'not run')")
    args = ap.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.name:<20} {c.kind}: {c.upstream}")
        return 0
    unknown = set(args.only) - {c.name for c in CASES}
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    cases = [c for c in CASES if not args.only or c.name in args.only]
    root = args.keep or Path(tempfile.mkdtemp(prefix="p2pci-realworld-"))
    cache = root / "cache"
    rows = []
    try:
        for c in cases:
            if args.no_try:
                rows.append(Row(c))
                continue
            print(f"realworld: {c.name} …", file=sys.stderr, flush=True)
            row = run_case(c, root, cache)
            print(
                f"realworld: {c.name}: {row.verdict} in {row.seconds or 0:.0f} s", file=sys.stderr, flush=True
            )
            rows.append(row)
        if not args.no_mesh:
            run_mesh(rows, root, cache)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    table = render(rows)
    print(table)
    if not args.no_write and not args.only and not args.no_try and not args.no_mesh:
        write_doc(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
