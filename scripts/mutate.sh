#!/usr/bin/env bash
# `make mutate [MUTATE="codec signing"]`: mutation testing of p2pci/core modules.
#
# mutmut 2 generates the mutants; each one is applied in turn to a throw-away copy of the
# committed tree (the working tree is never touched) and the unit tests that cover the module run
# against it (the whole unit suite per mutant would take hours on two cores). We drive the loop
# ourselves: `mutmut run` in the background hung on this machine. Prints every surviving mutant
# as a diff and a summary line per module; record survivors in docs/testing.md (killed by a new
# test, or justified).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
PY=${PY:-$here/.venv/bin/python}
mods=${*:-codec results signing selection tally}
export P2PCI_HYPOTHESIS=mutate  # 25 examples per property test and mutant

declare -A tests=(
  [codec]="tests/unit/test_protocol_bytes.py tests/unit/test_codec_props.py tests/unit/test_messages.py"
  [results]="tests/unit/test_protocol_bytes.py tests/unit/test_source_trial.py tests/unit/test_store_workerstate.py tests/unit/test_codec_props.py"
  [signing]="tests/unit/test_protocol_bytes.py tests/unit/test_messages.py tests/unit/test_codec_props.py tests/unit/test_evidence.py"
  [selection]="tests/unit/test_reason_strings.py tests/unit/test_selection_board.py tests/unit/test_selection_allowlist.py tests/unit/test_tally_observer.py tests/unit/test_worker.py tests/unit/test_worker_sim.py"
  [tally]="tests/unit/test_reason_strings.py tests/unit/test_tally_cases.py tests/unit/test_tally_observer.py tests/unit/test_selection_allowlist.py tests/unit/test_trust_v2_props.py tests/unit/test_evidence.py tests/unit/test_convergence.py"
  [board]="tests/unit/test_selection_board.py tests/unit/test_tally_cases.py tests/unit/test_evidence.py"
  [evidence]="tests/unit/test_evidence.py"
  [messages]="tests/unit/test_messages.py tests/unit/test_codec_props.py tests/unit/test_protocol_bytes.py"
  [worker]="tests/unit/test_worker.py tests/unit/test_worker_sim.py"
)

work=${MUTATE_DIR:-$(mktemp -d /tmp/p2pci-mutate.XXXXXX)}
mkdir -p "$work"
git archive --format=tar HEAD | tar -x -C "$work"
cd "$work"
report="$work/survivors.txt"
: > "$report"
for m in $mods; do
  src="p2pci/core/$m.py"
  t=${tests[$m]:-tests/unit}
  # the tests must pass on the unmutated tree, or every mutant would count as killed
  if ! timeout 600 "$PY" -m pytest -x -q -p no:cacheprovider $t >/dev/null 2>&1; then
    echo "== mutate $m: the tests fail without a mutant; fix them first: $t" | tee -a "$work/summary.txt"
    continue
  fi
  cp "$src" "$src.orig"
  rm -f .mutmut-cache
  # register the mutants (runner `true`: every mutant "survives" instantly), then test each one
  "$PY" -m mutmut run --paths-to-mutate "$src" --tests-dir tests/unit --runner true --no-progress >/dev/null 2>&1 || true
  cp "$src.orig" "$src"
  ids=$("$PY" -m mutmut result-ids survived 2>/dev/null || true)
  killed=0 survived=0 start=$(date +%s)
  for id in $ids; do
    "$PY" -m mutmut apply "$id" >/dev/null 2>&1 || { cp "$src.orig" "$src"; continue; }
    if cmp -s "$src" "$src.orig"; then continue; fi
    if timeout 300 "$PY" -m pytest -x -q -p no:cacheprovider $t >/dev/null 2>&1; then
      survived=$((survived + 1))
      { echo "---- $m mutant $id survived"; diff -u "$src.orig" "$src" | tail -n +3 || true; } >> "$report"
    else
      killed=$((killed + 1))
    fi
    cp "$src.orig" "$src"
  done
  rm -f "$src.orig"
  echo "== mutate $m: $((killed + survived)) mutants, $killed killed, $survived survived ($(($(date +%s) - start)) s)" | tee -a "$work/summary.txt"
done
cat "$report"
cat "$work/summary.txt"
echo "work dir: $work" >&2
