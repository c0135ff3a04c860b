#!/usr/bin/env bash
# `make mutate [MUTATE="codec signing"]`: mutation testing (mutmut 2) of p2pci/core modules.
# Each module is mutated against the unit tests that cover it (the whole unit suite per mutant
# would take hours on two cores). Runs in a throw-away copy of the committed tree, so the
# working tree is never left mutated; prints the surviving mutants with their diffs.
# Record survivors in docs/testing.md (killed by a new test, or justified as equivalent).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
PY=${PY:-$here/.venv/bin/python}
mods=${*:-codec results signing selection tally}
export P2PCI_HYPOTHESIS=mutate  # 25 examples per property test and mutant

declare -A tests=(
  [codec]="tests/unit/test_codec_props.py tests/unit/test_messages.py"
  [results]="tests/unit/test_source_trial.py tests/unit/test_store_workerstate.py tests/unit/test_codec_props.py"
  [signing]="tests/unit/test_messages.py tests/unit/test_codec_props.py tests/unit/test_evidence.py"
  [selection]="tests/unit/test_selection_board.py tests/unit/test_worker.py tests/unit/test_worker_sim.py"
  [tally]="tests/unit/test_tally_cases.py tests/unit/test_tally_observer.py tests/unit/test_evidence.py tests/unit/test_convergence.py"
  [board]="tests/unit/test_selection_board.py tests/unit/test_tally_cases.py tests/unit/test_evidence.py"
  [evidence]="tests/unit/test_evidence.py"
  [messages]="tests/unit/test_messages.py tests/unit/test_codec_props.py"
  [worker]="tests/unit/test_worker.py tests/unit/test_worker_sim.py"
)

work=${MUTATE_DIR:-$(mktemp -d /tmp/p2pci-mutate.XXXXXX)}
mkdir -p "$work"
git archive --format=tar HEAD | tar -x -C "$work"
cd "$work"
for m in $mods; do
  t=${tests[$m]:-tests/unit}
  echo "== mutmut: p2pci/core/$m.py against $t" >&2
  start=$(date +%s)
  "$PY" -m mutmut run --paths-to-mutate "p2pci/core/$m.py" --tests-dir tests/unit \
    --runner "$PY -m pytest -x -q -p no:cacheprovider -p no:randomly $t" --no-progress || true
  echo "== mutmut: $m took $(($(date +%s) - start)) s" >&2
done
"$PY" -m mutmut results || true
for id in $("$PY" -m mutmut result-ids survived 2>/dev/null || true); do
  echo "---- surviving mutant $id"
  "$PY" -m mutmut show "$id" || true
done
echo "mutmut cache kept in $work/.mutmut-cache" >&2
