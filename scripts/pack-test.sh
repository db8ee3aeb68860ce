#!/usr/bin/env bash
# The published package, as a user gets it: build the prebuilt binaries, `npm pack`, install the
# tarball into an empty folder (no compiler may run: the prebuilds must be used), then run the CLI
# on the CPU with pycode-tiny. Used by .ci/run; also what to carry to the GPU machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
models=${CASSPEC_MODELS:-$(cd "$root/../shared/models" && pwd)}
npm run prebuild
tgz="$root/$(npm pack --silent | tail -1)"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
npm init -y >/dev/null
# PATH without cmake/nvcc/g++ would be the strict test; instead we check the install log and tree.
npm install "$tgz" --no-audit --no-fund --foreground-scripts 2>&1 | tee install.log
grep -q 'using prebuilt binaries' install.log || { echo "pack-test: install did not use the prebuilt binaries"; exit 1; }
[ ! -d node_modules/casspec/build ] || { echo "pack-test: install compiled the addon"; exit 1; }
npx casspec doctor
npx casspec generate -m "$models/pycode-tiny" -p 'def main():' -n 16 --backend cpu
echo "pack-test: OK ($tgz)"
