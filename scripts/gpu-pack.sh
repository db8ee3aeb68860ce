#!/usr/bin/env bash
# Packs everything a GPU run needs into .device/ (git-ignored; carry it with the device tool):
# node (xz), the models (tar.xz), and the app (dist/, the CUDA addon, runtime node_modules).
# Builds here first: nvcc is here, the GPU machine has no Node.js.
#   scripts/gpu-pack.sh [MODEL ...]     default: pycode-tiny pycode-small
#   CASSPEC_TGZ=casspec-X.tgz SKIP_BUILD=1 scripts/gpu-pack.sh   ship the npm tarball (its prebuilds) instead
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(pycode-tiny pycode-small)
shared=$(cd "$root/../shared" && pwd)
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude

[ "${SKIP_BUILD:-0}" = 1 ] || { npx cmake-js configure --out build --CDCASSPEC_CUDA=ON >/dev/null && npx cmake-js build --out build >/dev/null; npx tsc -p tsconfig.json; }

rm -rf .device /tmp/casspec-app && mkdir -p .device /tmp/casspec-app/app/node_modules /tmp/casspec-app/app/build/Release
cache=/tmp/node-$(node --version).xz
[ -s "$cache" ] || xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > "$cache"
cp "$cache" .device/node.xz
tar cf - -C "$shared/models" "${models[@]}" | xz -T2 -9 > .device/models.tar.xz
app=/tmp/casspec-app/app
if [ -n "${CASSPEC_TGZ:-}" ]; then
  # The published tarball as-is (prebuilds/ inside, no build/): what an H100 host would install.
  rm -rf "$app/build" && tar xzf "$CASSPEC_TGZ" -C "$app" --strip-components=1
else
  cp -r dist package.json "$app/"
  cp build/Release/casspec.node "$app/build/Release/"
fi
for dep in @huggingface commander node-gyp-build; do cp -r "node_modules/$dep" "$app/node_modules/"; done
# The standalone kernel check (scripts/gpu/build.sh), when built.
[ -x .gpubin/gpu_check ] && cp .gpubin/gpu_check "$app/"
tar cf - -C /tmp/casspec-app app | xz -T2 -9 > .device/app.tar.xz
cp "$shared/bench/pycode-dev.jsonl" .device/
cat > .device/activate.sh <<'ACT'
# Source first in every device command: node on PATH, models unpacked, CASSPEC_MODELS set.
d=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -x /tmp/node-bin/node ] || { mkdir -p /tmp/node-bin; xz -d -c "$d/node.xz" > /tmp/node-bin/node; chmod +x /tmp/node-bin/node; }
[ -d /tmp/models ] || { mkdir -p /tmp/models; xz -d -c "$d/models.tar.xz" | tar xf - -C /tmp/models; }
[ -d /tmp/casspec-app/app ] || { mkdir -p /tmp/casspec-app; xz -d -c "$d/app.tar.xz" | tar xf - -C /tmp/casspec-app; }
export PATH=/tmp/node-bin:$PATH CASSPEC_MODELS=/tmp/models CASSPEC_APP=/tmp/casspec-app/app CASSPEC_PROMPTS="$d/pycode-dev.jsonl"
ACT
du -sh .device | sed 's/^/carry size: /'
