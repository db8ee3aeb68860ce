#!/usr/bin/env node
// Builds the native addon at install time, unless a prebuilt binary for this platform exists.
//   CMake present  -> cmake-js (CPU backend, plus CUDA when nvcc is found; CASSPEC_CUDA=0 to skip)
//   no CMake       -> node-gyp with binding.gyp (CPU backend only)
// --force rebuilds even when a prebuild exists.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force');
const prebuildDir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);

if (!force && existsSync(prebuildDir) && readdirSync(prebuildDir).some((f) => f.endsWith('.node'))) {
  console.log(`casspec: using prebuilt binaries in ${prebuildDir}`);
  process.exit(0);
}

const has = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const run = (cmd, args) => {
  console.log(`casspec: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
const localBin = (name) => join(root, 'node_modules', '.bin', name);

if (has('cmake')) {
  // Always pass the choice: CMake caches options, so an earlier OFF would otherwise stick.
  const cuda = [`--CDCASSPEC_CUDA=${process.env.CASSPEC_CUDA === '0' ? 'OFF' : 'ON'}`];
  const cmakeJs = existsSync(localBin('cmake-js')) ? localBin('cmake-js') : 'cmake-js';
  run(cmakeJs, ['configure', '--out', 'build', ...cuda]);
  run(cmakeJs, ['build', '--out', 'build']);
} else {
  // npm puts its bundled node-gyp on the script's PATH through npm_config_node_gyp.
  const gyp = process.env.npm_config_node_gyp;
  if (gyp) run(process.execPath, [gyp, 'rebuild']);
  else run('node-gyp', ['rebuild']);
}
