"""`make mutate [MUTATE="tally selection"]`: mutation testing of p2pci/core modules.

mutmut 2 generates the mutants (its Python API, in-process); each mutant is tested in a forked
child of one server process that has already imported pytest, Hypothesis and the third-party
libraries, so a mutant costs its tests, not a Python and pytest start-up (about 15 s each on
two loaded cores, more than most test files take). The children work in throw-away copies of
the committed tree (`git archive HEAD`), one per parallel slot; the working tree is never
touched. Only the mutated module is compiled from source (no .pyc is written), every other
module comes from its ahead-of-time .pyc.

Two passes: every mutant against the module's fast unit tests (`-x`: the first failure kills
it); the survivors again against the slower property tests of the module. A mutant whose tests
run over `--timeout` seconds counts as killed (a hang is detected). Prints every survivor as a
diff and a count per module; record survivors in docs/testing.md (killed by a new test, or
justified).

    python scripts/mutate.py [--jobs 2] [--timeout 120] [--limit N] [MODULE...]
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> (fast unit tests, slower property tests run on the fast pass's survivors)
TESTS: dict[str, tuple[list[str], list[str]]] = {
    "codec": (
        ["tests/unit/test_protocol_bytes.py", "tests/unit/test_messages.py"],
        ["tests/unit/test_codec_props.py"],
    ),
    "results": (
        [
            "tests/unit/test_protocol_bytes.py",
            "tests/unit/test_source_trial.py",
            "tests/unit/test_store_workerstate.py",
        ],
        ["tests/unit/test_codec_props.py"],
    ),
    "signing": (
        [
            "tests/unit/test_signing_mutants.py",
            "tests/unit/test_messages.py",
            "tests/unit/test_evidence.py",
            "tests/unit/test_vectors.py",
            "tests/unit/test_protocol_bytes.py",
            "tests/unit/test_opened_facts.py",
            "tests/unit/test_reveal_parser.py",
        ],
        ["tests/unit/test_codec_props.py", "tests/unit/test_decline.py"],
    ),
    "selection": (
        [
            "tests/unit/test_selection_mutants.py",
            "tests/unit/test_reason_strings.py",
            "tests/unit/test_selection_allowlist.py",
            "tests/unit/test_selection_board.py",
            "tests/unit/test_tally_observer.py",
            "tests/unit/test_worker.py",
        ],
        [  # select_wakeup and live_claimants are exercised by the node machine and the simulation
            "tests/unit/test_node_machine.py",
            "tests/unit/test_late_witness.py",
            "tests/unit/test_worker_sim.py",
            "tests/unit/test_trust_v2_props.py",
        ],
    ),
    "tally": (
        [
            "tests/unit/test_tally_mutants.py",
            "tests/unit/test_reason_strings.py",
            "tests/unit/test_tally_cases.py",
            "tests/unit/test_tally_observer.py",
            "tests/unit/test_selection_allowlist.py",
            "tests/unit/test_evidence.py",
            "tests/unit/test_vectors.py",
            "tests/unit/test_decline.py",
            "tests/unit/test_tally_reference.py",
            "tests/unit/test_tally_incremental.py",  # the kept votes against a full count
            "tests/unit/test_selection_board.py",  # the verdict memo, EXPIRED/PENDING by `now`
            "tests/unit/test_selection_mutants.py",  # verdict_json of selections
            "tests/unit/test_late_witness.py",  # the witness rule
            "tests/unit/test_worker.py",
        ],
        [
            "tests/unit/test_convergence.py",
            "tests/unit/test_trust_v2_props.py",
            "tests/unit/test_node_machine.py",
        ],
    ),
}

PRELOAD = [
    "pytest",
    "hypothesis",
    "msgpack",
    "nacl.signing",
    "nacl.exceptions",
    "trio",
    "pytest_trio",
    "pytest_timeout",
]


def mutants(path: Path) -> list[tuple[int, str]]:
    """(line number, mutated source) of every mutant mutmut makes of `path`."""
    from mutmut import ALL, Context, list_mutations, mutate

    source = path.read_text()
    ids = list_mutations(Context(source=source, filename=str(path), mutation_id=ALL))
    out = []
    for mid in ids:
        ctx = Context(source=source, filename=str(path), mutation_id=mid)
        text, n = mutate(ctx)
        if n and text != source:
            out.append((mid.line_number + 1, text))
    return out


def run_child(copy: Path, rel: str, text: str, tests: list[str]) -> int:
    """Fork: write the mutant into `copy` and run the tests there. Returns the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child
        sys.dont_write_bytecode = True
        os.chdir(copy)
        (copy / rel).write_text(text)
        sys.path.insert(0, str(copy))
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        import pytest

        rc = pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests])
        os._exit(int(rc))
    except BaseException:
        os._exit(99)


def test_all(
    module: str,
    cands: list[tuple[int, int, str]],
    tests: list[str],
    copies: list[Path],
    timeout: float,
    log: Path | None = None,
) -> tuple[list[tuple[int, int, str]], int]:
    """Run `tests` against each candidate (index, line, text); returns (survivors, timeouts).

    `log`: one line per tested mutant as it ends (`<module> <n> <line> killed|survived|timeout`),
    so an interrupted run still tells how far it got and what survived."""
    rel = f"p2pci/core/{module}.py"
    original = (copies[0] / rel).read_text()
    free = list(copies)
    running: dict[int, tuple[Path, float, tuple[int, int, str]]] = {}
    queue = list(cands)
    survivors: list[tuple[int, int, str]] = []
    timeouts = 0
    while queue or running:
        while queue and free:
            c = queue.pop(0)
            copy = free.pop()
            running[run_child(copy, rel, c[2], tests)] = (copy, time.monotonic(), c)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for p, (_, t0, _) in list(running.items()):
                if now - t0 > timeout:
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.05)  # a poll of our own children, not a wait for a duration to pass
            continue
        copy, t0, c = running.pop(pid)
        (copy / rel).write_text(original)
        free.append(copy)
        outcome = "killed"
        if os.WIFSIGNALED(status):
            timeouts += 1  # killed by us: a hang counts as killed
            outcome = "timeout"
        elif os.WEXITSTATUS(status) == 0:
            survivors.append(c)
            outcome = "survived"
        if log is not None:
            with log.open("a") as f:
                f.write(f"{module} {c[0]} {c[1]} {outcome}\n")
    return sorted(survivors), timeouts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", default=["codec", "results", "signing", "selection", "tally"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--limit", type=int, default=0, help="test only the first N mutants of each module")
    ap.add_argument("--report", type=Path, default=None, help="also write the survivors' diffs here")
    ap.add_argument("--fast-only", action="store_true", help="skip the second pass (property tests)")
    ap.add_argument("--progress", type=Path, default=None, help="append one line per tested mutant here")
    ap.add_argument("--lines", default="", help="only mutants on these source lines, e.g. 120-310")
    ap.add_argument("--only", default="", help="comma-separated mutant numbers (as printed) to test")
    ap.add_argument("--tests", default="", help="comma-separated test files instead of the module's fast set")
    a = ap.parse_args()
    os.environ.setdefault("P2PCI_HYPOTHESIS", "mutate")  # 25 examples per property test
    work = Path(tempfile.mkdtemp(prefix="p2pci-mutate-"))
    copies = []
    tree = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    for i in range(a.jobs):
        c = work / f"tree{i}"
        c.mkdir()
        subprocess.run(["tar", "-x", "-C", str(c)], input=tree, check=True)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(c / "p2pci")], check=True)
        copies.append(c)
    for name in PRELOAD:
        __import__(name)
    lines: list[str] = []
    summary: list[str] = []
    for m in a.modules:
        fast, slow = TESTS[m]
        if a.tests:
            fast = a.tests.split(",")
        if a.fast_only:
            slow = []
        rel = f"p2pci/core/{m}.py"
        for c in copies:
            shutil.rmtree(c / "p2pci" / "core" / "__pycache__", ignore_errors=True)
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(c / "p2pci" / "core")], check=True)
            for pyc in (c / "p2pci" / "core" / "__pycache__").glob(f"{m}.*.pyc"):
                pyc.unlink()  # the mutated module is always compiled from its (mutated) source
        original = (copies[0] / rel).read_text()
        base, _ = test_all(m, [(0, 0, original)], fast + slow, copies[:1], a.timeout * 4)
        if not base:
            summary.append(f"== mutate {m}: the tests fail on the unmutated tree; fix them first")
            continue
        cands = [(i, ln, text) for i, (ln, text) in enumerate(mutants(copies[0] / rel), 1)]
        if a.limit:
            cands = cands[: a.limit]
        if a.lines:
            lo, _, hi = a.lines.partition("-")
            cands = [c for c in cands if int(lo) <= c[1] <= int(hi or lo)]
        if a.only:
            wanted = {int(x) for x in a.only.split(",")}
            cands = [c for c in cands if c[0] in wanted]
        t0 = time.monotonic()
        surv1, to1 = test_all(m, cands, fast, copies, a.timeout, a.progress)
        surv2, to2 = test_all(m, surv1, slow, copies, a.timeout * 4) if slow else (surv1, 0)
        for i, ln, text in surv2:
            diff = difflib.unified_diff(original.splitlines(), text.splitlines(), lineterm="", n=0)
            lines.append(f"---- {m} mutant {i} (line {ln}) survived")
            lines.extend(list(diff)[2:])
        summary.append(
            f"== mutate {m}: {len(cands)} mutants, {len(cands) - len(surv2)} killed "
            f"({len(cands) - len(surv1)} by the fast tests, {len(surv1) - len(surv2)} more by the "
            f"property tests; {to1 + to2} of them by timeout), {len(surv2)} survived "
            f"({time.monotonic() - t0:.0f} s)"
        )
        print(summary[-1], flush=True)
        if a.report:  # after each module: a long run can be read while it goes on
            a.report.write_text("\n".join(lines + summary) + "\n")
    print("\n".join(lines))
    print("\n".join(summary))
    if a.report:
        a.report.write_text("\n".join(lines + summary) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
