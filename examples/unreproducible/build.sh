#!/bin/sh
# Two classic mistakes: a build timestamp and a random build id.
set -eu
mkdir -p /out
cp message.txt /out/message.txt          # this file is the same every time
chmod 0644 /out/message.txt
{
    echo "built at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build id $(cat /proc/sys/kernel/random/uuid)"
} > /out/stamp.txt
chmod 0644 /out/stamp.txt
