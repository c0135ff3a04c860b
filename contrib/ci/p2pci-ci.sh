#!/bin/sh
# Publish a project to the p2pci mesh from CI and act on the verdict (docs/ci.md).
#
#   p2pci-ci.sh [DIR]          DIR holds p2pci.toml (default: .)
#
# Needs a running `p2pci daemon` for $P2PCI_HOME (the CI machine's own node, or one
# reachable through a shared home). Prints one line, writes the final job object to
# ${P2PCI_RESULT:-p2pci-result.json}, and exits with `p2pci publish --wait`'s code:
#   0 REPRODUCED: enough workers agree on the result, and the build succeeded
#   1 DISPUTED or FAILED: the workers disagree, or agree that the build fails
#   2 no verdict: EXPIRED, CANCELLED, or an error (bad recipe, no daemon)
set -u
dir=${1:-.}
result=${P2PCI_RESULT:-p2pci-result.json}

p2pci publish "$dir" --wait --json >"$result"
rc=$?

# The job object (one JSON document); empty when publish failed before publishing.
field() { python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")
except Exception: print("")' "$result" "$1"; }
job=$(field job)
verdict=$(field verdict)

case $rc in
0) echo "p2pci: REPRODUCED: job $job, digest $(field digest)" ;;
1) echo "p2pci: $verdict: job $job; see why with: p2pci diff $job" ;;
*) if [ -n "$job" ]; then
     echo "p2pci: no verdict ($verdict): job $job; see p2pci show $job"
   else
     echo "p2pci: nothing published (exit $rc); the error is above"
   fi ;;
esac
exit $rc
