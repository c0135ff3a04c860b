#!/bin/sh
# Everything the outputs contain is derived from the source: no time, no
# randomness, modes set explicitly (the umask varies between workers),
# and file lists sorted (directory order varies too).
set -eu
mkdir -p /out/share
for f in $(ls data | LC_ALL=C sort); do
    printf '%s %s\n' "$(sha256sum "data/$f" | cut -d' ' -f1)" "$f"
done > /out/share/SHA256SUMS
cat data/* | tr 'a-z' 'A-Z' > /out/share/shouted.txt
printf '#!/bin/sh\necho "hello from busybox-smoke"\n' > /out/hello
chmod 0755 /out/hello
chmod 0644 /out/share/SHA256SUMS /out/share/shouted.txt
