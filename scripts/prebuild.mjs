#!/usr/bin/env node
// `npm run prebuild`: the binaries shipped in the npm package, in prebuilds/<platform>-<arch>/:
//   casspec.cuda.node  CPU + CUDA backends (sm_90a + compute_90 PTX), static cudart, no cuBLAS
//   casspec.cpu.node   CPU backend only
// ts/native.ts loads the CUDA one when it finds a usable GPU, else the CPU one.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(out, { recursive: true });
const cmakeJs = join(root, 'node_modules', '.bin', 'cmake-js');
const hasNvcc = spawnSync('nvcc', ['--version'], { stdio: 'ignore' }).status === 0;

function build(variant, cuda) {
  const dir = `build-prebuild-${variant}`;
  const args = ['configure', '--out', dir, `--CDCASSPEC_CUDA=${cuda ? 'ON' : 'OFF'}`, '--CDCASSPEC_STATIC_RUNTIME=ON'];
  console.log(`prebuild ${variant}: cmake-js ${args.join(' ')}`);
  for (const a of [args, ['build', '--out', dir]]) {
    const r = spawnSync(cmakeJs, a, { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  const target = join(out, `casspec.${variant}.node`);
  copyFileSync(join(root, dir, 'Release', 'casspec.node'), target);
  const ldd = spawnSync('ldd', [target], { encoding: 'utf8' }).stdout ?? '';
  for (const lib of ['libcudart', 'libcublas', 'libstdc++'])
    if (ldd.includes(lib)) {
      console.error(`prebuild ${variant}: ${target} links ${lib} dynamically; prebuilt binaries must not`);
      process.exit(1);
    }
  console.log(`prebuild ${variant}: ${target}`);
}

if (hasNvcc) build('cuda', true);
else console.warn('prebuild: no nvcc here, so no CUDA variant');
build('cpu', false);
