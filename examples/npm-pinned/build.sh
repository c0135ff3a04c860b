#!/bin/sh
# Minify src/greet.js with terser and pack the package with npm pack, offline and reproducibly.
# node_modules comes from /build/inputs (what `npm ci` installed in [fetch], pinned by the offer).
set -eu
out=${1:-/out}
umask 022
rm -rf /tmp/w
cp -r /build/src /tmp/w
cd /tmp/w
ln -s /build/inputs/node_modules node_modules
mkdir -p dist
node node_modules/terser/bin/terser src/greet.js --compress --mangle --output dist/greet.min.js
node -e 'const g = require("./dist/greet.min.js"); console.log(g.greetAll(["Ada", "Linus"]))' > "$out/selftest.txt"
cp dist/greet.min.js "$out/"
# Pack from a directory with only what the package ships (npm pack always adds README*).
mkdir /tmp/pkg && cp -r package.json dist /tmp/pkg/ && cd /tmp/pkg
npm pack --offline --pack-destination "$out" > /dev/null
cd "$out" && sha256sum greet-min-1.0.0.tgz greet.min.js > SHA256SUMS
