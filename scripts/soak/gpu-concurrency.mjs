#!/usr/bin/env node
// The concurrency / cancellation / disposal / OOM / event-loop checks of test/robustness.test.ts as
// a plain script, for a machine with a GPU (or any backend):
//
//   npx tsc -p tsconfig.json && node scripts/soak/gpu-concurrency.mjs --backend cuda
//
// Options: --backend cpu|cuda (default cuda), --models <folder holding pycode-tiny and
// pycode-small> (default $CASSPEC_MODELS or ../shared/models), --only <substring of a check name>,
// --json <file> (write the results). Exit code 0 when every check passes.
import { writeFileSync } from 'node:fs';
import { hostname, cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { makeChecks } from './concurrency-checks.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const backend = arg('backend', 'cuda');
const models = resolve(arg('models', process.env.CASSPEC_MODELS ?? join(root, '..', 'shared', 'models')));
const only = arg('only');
const jsonOut = arg('json');

const { Model, CasspecError } = await import(join(root, 'dist', 'index.js'));
const { native } = await import(join(root, 'dist', 'native.js'));
const addon = native();
if (typeof addon.debugCounts !== 'function') {
  console.error('this build of the addon has no debugCounts(); rebuild it (npm run build:native)');
  process.exit(2);
}
const status = addon.cudaStatus();
if (backend === 'cuda' && !status.usable) {
  console.error(`CUDA is not usable here: ${status.reason}`);
  process.exit(2);
}

const checks = makeChecks({
  api: { Model, CasspecError },
  counts: () => addon.debugCounts(),
  backend,
  tinyDir: join(models, 'pycode-tiny'),
  smallDir: join(models, 'pycode-small'),
  distDir: join(root, 'dist'),
  log: (m) => console.log(`    ${m}`),
});

let commit = 'unknown';
try {
  commit = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
} catch {}
const report = {
  date: new Date().toISOString(),
  host: hostname(),
  cpu: cpus()[0]?.model,
  node: process.version,
  commit,
  backend,
  cuda: status.reason,
  results: [],
};
console.log(`casspec concurrency checks, backend ${backend} (${status.reason})`);
let failed = 0;
for (const c of checks) {
  if (only && !c.name.includes(only)) continue;
  const t0 = performance.now();
  try {
    const details = await c.run();
    const ms = Math.round(performance.now() - t0);
    console.log(`PASS ${c.name} (${ms} ms) ${details ? JSON.stringify(details) : ''}`);
    report.results.push({ name: c.name, pass: true, ms, details });
  } catch (e) {
    failed++;
    const ms = Math.round(performance.now() - t0);
    console.log(`FAIL ${c.name} (${ms} ms)\n    ${String(e?.stack ?? e).split('\n').join('\n    ')}`);
    report.results.push({ name: c.name, pass: false, ms, error: String(e?.message ?? e) });
  }
}
report.counts = addon.debugCounts();
report.rssMiB = Math.round(process.memoryUsage().rss / 2 ** 20);
console.log(`${report.results.length - failed} passed, ${failed} failed; live native objects now ${JSON.stringify(report.counts)}`);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(report, null, 2));
process.exitCode = failed ? 1 : 0;
