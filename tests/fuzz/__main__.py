"""Coverage-guided fuzzing of every decoder of outside bytes (atheris / libFuzzer).

    python -m tests.fuzz run [--seconds N] [TARGET...]   # make fuzz (FUZZ_SECONDS each)
    python -m tests.fuzz coverage [TARGET...]            # make fuzz-cov: line coverage of the decoders
    python -m tests.fuzz one TARGET [libFuzzer args]     # one target; a crash file as argument replays it
    python -m tests.fuzz list

Work files live in .fuzz/: seeds/<target> (valid inputs, regenerated each run), corpus/<target>
(what libFuzzer found interesting, kept between runs), crashes/<target> (findings). A finding
becomes a regression test: copy the input to tests/fuzz/regressions/<target>/ and fix the decoder;
tests/fuzz/test_fuzz_regressions.py replays them (and the seeds) in `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fuzz.targets import SCRATCH_ENV, TARGETS

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".fuzz"
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
LIBFUZZER_INTERRUPTED = 72  # libFuzzer's -interrupted_exitcode: it got SIGINT and stopped


def _inputs(name: str) -> list[Path]:
    files: list[Path] = []
    for d in (WORK / "seeds" / name, WORK / "corpus" / name, REGRESSIONS / name):
        if d.is_dir():
            files.extend(sorted(p for p in d.iterdir() if p.is_file()))
    return files


@contextmanager
def _scratch_env() -> Iterator[dict[str, str]]:
    """The environment of one fuzzing process: a scratch directory for the targets that write files
    ($P2PCI_FUZZ_SCRATCH, /tmp/p2pci-fuzz-<pid>-*), created here and removed here after the process
    ends, however it ends (libFuzzer's exit at a finding or Ctrl-C skips Python's exit handlers)."""
    path = tempfile.mkdtemp(prefix=f"p2pci-fuzz-{os.getpid()}-")
    try:
        yield {**os.environ, SCRATCH_ENV: path}
    finally:
        shutil.rmtree(path, ignore_errors=True)


def cmd_one(name: str, args: list[str]) -> int:
    if not os.environ.get(SCRATCH_ENV):  # run the fuzzing process as a child that owns no scratch
        with _scratch_env() as env:
            return subprocess.run([sys.executable, "-m", "tests.fuzz", "one", name, *args], env=env).returncode
    import atheris

    with atheris.instrument_imports(include=["p2pci", "tarfile", "tomllib", "json"]):
        one = TARGETS[name].make()
    atheris.Setup([sys.argv[0], *args], one)
    atheris.Fuzz()
    return 0  # pragma: no cover - atheris.Fuzz exits the process


def cmd_run(names: list[str], seconds: int) -> int:
    from tests.fuzz.seeds import write_seeds

    counts = write_seeds(WORK / "seeds")
    results = []
    for name in names:
        corpus, crashes = WORK / "corpus" / name, WORK / "crashes" / name
        corpus.mkdir(parents=True, exist_ok=True)
        crashes.mkdir(parents=True, exist_ok=True)
        before = len(list(corpus.iterdir()))
        args = [
            f"-max_total_time={seconds}",
            "-timeout=20",
            "-rss_limit_mb=2048",
            "-max_len=65536",
            "-print_final_stats=1",
            f"-artifact_prefix={crashes}/",
            str(corpus),
            str(WORK / "seeds" / name),
        ]
        if (REGRESSIONS / name).is_dir():  # past findings seed the search too (read, never written)
            args.append(str(REGRESSIONS / name))
        print(f"== fuzz {name}: {TARGETS[name].doc}, {counts.get(name, 0)} seeds, {seconds} s", flush=True)
        t0 = time.monotonic()
        with _scratch_env() as env:
            proc = subprocess.run(
                [sys.executable, "-m", "tests.fuzz", "one", name, *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                errors="replace",
            )
        log = proc.stdout + proc.stderr
        (WORK / f"{name}.log").write_text(log)
        if proc.returncode == LIBFUZZER_INTERRUPTED and "libFuzzer: run interrupted" in log:
            raise KeyboardInterrupt  # the child got the Ctrl-C (its group's SIGINT): not a finding
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
        cov = re.findall(r"cov: (\d+)", log)
        after = len(list(corpus.iterdir()))
        found = sorted(p.name for p in crashes.iterdir())
        ok = proc.returncode == 0
        results.append((name, ok, runs[-1] if runs else "?", cov[-1] if cov else "?", after - before, found))
        status = "ok" if ok else f"FINDING (exit {proc.returncode}, see {WORK / (name + '.log')})"
        print(f"   {status}; {time.monotonic() - t0:.0f} s", flush=True)
        if not ok:
            print("\n".join(log.splitlines()[-40:]))
    print("\n== fuzz summary (target, execs, libFuzzer edges, new corpus files, findings)")
    for name, ok, runs, cov, new, found in results:
        print(f"   {name:14} {'ok' if ok else 'FINDING':8} {runs:>9} execs  cov {cov:>5}  +{new:<4} {' '.join(found)}")
    return 0 if all(r[1] for r in results) else 1


def cmd_cov_one(name: str) -> int:
    import coverage

    target = TARGETS[name]
    files = [str(ROOT / m) for m in target.modules]
    cov = coverage.Coverage(data_file=None, include=files, branch=False)
    cov.start()
    one = target.make()
    for p in _inputs(name):
        one(p.read_bytes())
    cov.stop()
    out = {}
    for f, m in zip(files, target.modules, strict=True):
        _, statements, _, missing, _ = cov.analysis2(f)
        wanted = _decoder_lines(Path(f), target.functions)
        stmts = [n for n in statements if wanted is None or n in wanted]
        out[m] = [len([n for n in stmts if n not in missing]), len(stmts)]
    print(json.dumps(out))
    return 0


def _decoder_lines(path: Path, names: tuple[str, ...]) -> set[int] | None:
    """Line numbers of the top-level functions/classes `names` of a module (None: all of it)."""
    import ast

    if not names:
        return None
    lines: set[int] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def cmd_coverage(names: list[str]) -> int:
    from tests.fuzz.seeds import write_seeds

    write_seeds(WORK / "seeds")
    print("== line coverage of the decoding functions by the seeds + fuzz corpus (coverage.py)")
    rows: dict[str, list[int]] = {}
    for name in names:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.fuzz", "cov-one", name], cwd=ROOT, capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr)
            return 1
        per = json.loads(proc.stdout.strip().splitlines()[-1])
        n = len(_inputs(name))
        shown = ", ".join(f"{m} {a}/{b} = {100 * a / b:.0f}%" for m, (a, b) in per.items())
        print(f"   {name:14} {n:5} inputs  {shown}")
        for m, (a, b) in per.items():  # a module reached by several targets: the best of them
            if m not in rows or a > rows[m][0]:
                rows[m] = [a, b]
    print("== per decoder module (best target)")
    for m, (a, b) in sorted(rows.items()):
        print(f"   {m:28} {a:4}/{b:<4} {100 * a / b:5.1f}%")
    total_a, total_b = sum(a for a, _ in rows.values()), sum(b for _, b in rows.values())
    print(f"   {'all decoders':28} {total_a:4}/{total_b:<4} {100 * total_a / total_b:5.1f}%")
    return 0


def main() -> int:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background of a shell without job control: Ctrl-C to the group must still
        # stop the run (and its scratch directories) as it does in a terminal
        signal.signal(signal.SIGINT, signal.default_int_handler)
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    r.add_argument("targets", nargs="*")
    c = sub.add_parser("coverage")
    c.add_argument("targets", nargs="*")
    o = sub.add_parser("one")
    o.add_argument("target", choices=sorted(TARGETS))
    o.add_argument("args", nargs=argparse.REMAINDER)
    co = sub.add_parser("cov-one")
    co.add_argument("target", choices=sorted(TARGETS))
    sub.add_parser("list")
    a = ap.parse_args()
    names = getattr(a, "targets", None) or list(TARGETS)
    for n in names:
        if n not in TARGETS:
            ap.error(f"unknown target {n!r}; known: {', '.join(TARGETS)}")
    try:
        if a.cmd == "run":
            return cmd_run(names, a.seconds)
        if a.cmd == "one":
            return cmd_one(a.target, a.args)
    except KeyboardInterrupt:  # the fuzzing child was killed and its scratch directory removed
        print("\n== fuzz interrupted", flush=True)
        return 130
    if a.cmd == "coverage":
        return cmd_coverage(names)
    if a.cmd == "cov-one":
        return cmd_cov_one(a.target)
    for t in TARGETS.values():
        print(f"{t.name:14} {t.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
