#!/usr/bin/env node
// Generation soak: 1,000 sequential generations, then 1,000 more as 125 rounds of 8 concurrent
// ones, on one loaded model (pycode-tiny on the CPU by default), sampling RSS as it goes. Mixes
// strategies, greedy and sampling, and aborts every 25th request mid-stream. Checks that a fixed
// greedy request gives the same tokens at the start, middle and end, that no native context is
// left behind, and reports the event-loop delay.
//
//   npx tsc -p tsconfig.json && node scripts/soak/generations.mjs
//
// Options: --model DIR (default <models>/pycode-tiny), --backend cpu|cuda (cpu), --sequential N
// (1000), --rounds R (125), --concurrent C (8), --max-tokens T (32), --warmup W (200), --json FILE.
// Passes when nothing failed, a fixed greedy request stays identical, nothing native is left after
// dispose(), and RSS does not grow (< 8 MiB) over the second half of either phase.
import { spawnSync, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { PROMPTS } from './concurrency-checks.mjs';

if (typeof globalThis.gc !== 'function') {
  // RSS samples are taken after a full GC: re-run with --expose-gc.
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const models = resolve(process.env.CASSPEC_MODELS ?? join(root, '..', 'shared', 'models'));
const modelPath = resolve(arg('model', join(models, 'pycode-tiny')));
const backend = arg('backend', 'cpu');
const sequential = Number(arg('sequential', 1000));
const rounds = Number(arg('rounds', 125));
const concurrent = Number(arg('concurrent', 8));
const maxTokens = Number(arg('max-tokens', 32));
const jsonOut = arg('json');

const { Model, CasspecError, strategyNames } = await import(join(root, 'dist', 'index.js'));
const { native } = await import(join(root, 'dist', 'native.js'));
const counts = () => native().debugCounts();

// Prompts: the benchmark's code prompts when present, else a few built-in ones.
let prompts = PROMPTS;
const benchFile = join(models, '..', 'bench', 'pycode-dev.jsonl');
if (existsSync(benchFile)) {
  const lines = readFileSync(benchFile, 'utf8').split('\n').filter(Boolean);
  const texts = lines.map((l) => JSON.parse(l)).map((o) => o.prompt ?? o.text ?? o.input).filter((t) => typeof t === 'string');
  if (texts.length) prompts = texts.map((t) => t.slice(-600));
}
const strategies = strategyNames();

const mib = (b) => +(b / 2 ** 20).toFixed(1);
let loop; // the event-loop histogram: paused while sampling (a forced GC is not the library's delay)
function sample(label, done) {
  loop?.disable();
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  const s = { label, generations: done, rssMiB: mib(m.rss), heapUsedMiB: mib(m.heapUsed), externalMiB: mib(m.external), arrayBuffersMiB: mib(m.arrayBuffers), native: counts() };
  console.log(`  ${label.padEnd(22)} after ${String(done).padStart(4)}: RSS ${s.rssMiB} MiB, heap ${s.heapUsedMiB} MiB, live contexts ${s.native.contexts}`);
  loop?.enable();
  return s;
}

const tally = { ok: 0, aborted: 0, tokens: 0, errors: [] };
let n = 0;
async function one(i) {
  const p = prompts[i % prompts.length];
  const strategy = strategies[i % strategies.length];
  const sampling = i % 10 === 3;
  const ac = new AbortController();
  const abort = i % 25 === 7;
  const opts = {
    maxTokens: 8 + (i % Math.max(1, maxTokens)),
    strategy,
    ignoreEos: i % 2 === 0,
    signal: ac.signal,
    ...(sampling ? { temperature: 0.8, topP: 0.95, seed: i } : {}),
  };
  try {
    let got = 0;
    const g = model.generate(p, opts);
    for await (const c of g) {
      got += c.tokens.length;
      if (abort && got >= 3) ac.abort();
    }
    const r = await g.result;
    tally.ok++;
    tally.tokens += r.tokens.length;
  } catch (e) {
    if (abort && e instanceof CasspecError && e.code === 'E_ABORTED') tally.aborted++;
    else tally.errors.push({ i, strategy, error: `${e?.code ?? ''} ${e?.message ?? e}` });
  }
  n++;
}

const fixed = { maxTokens: 48, strategy: 'plain', ignoreEos: true };
const model = await Model.load(modelPath, { backend, maxConcurrent: concurrent });
console.log(`casspec generation soak: ${modelPath} on ${model.info.backend} (${model.info.device}); ${strategies.length} strategies: ${strategies.join(', ')}`);
const reference = (await model.complete(prompts[0], fixed)).tokens;
const warmup = Number(arg('warmup', 200));
for (let i = 0; i < warmup; i++) await one(i); // warm-up: JIT, calibration caches, allocator pools, driver caches
n = 0;
Object.assign(tally, { ok: 0, aborted: 0, tokens: 0, errors: [] });

const samples = [];
loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();
const t0 = performance.now();
samples.push(sample('sequential', 0));
for (let i = 0; i < sequential; i++) {
  await one(i);
  if ((i + 1) % Math.max(1, Math.floor(sequential / 10)) === 0 || i + 1 === sequential) samples.push(sample('sequential', i + 1));
}
const seqMs = performance.now() - t0;
const midCheck = (await model.complete(prompts[0], fixed)).tokens;
const seqLoop = { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 };
loop.reset();

const t1 = performance.now();
samples.push(sample('concurrent', 0));
let maxActive = 0;
const watch = setInterval(() => (maxActive = Math.max(maxActive, model.scheduling.activeGenerations)), 2);
for (let r = 0; r < rounds; r++) {
  await Promise.all(Array.from({ length: concurrent }, (_, k) => one(sequential + r * concurrent + k)));
  if ((r + 1) % Math.max(1, Math.floor(rounds / 5)) === 0 || r + 1 === rounds) samples.push(sample('concurrent', (r + 1) * concurrent));
}
clearInterval(watch);
const concMs = performance.now() - t1;
loop.disable();
const finalLoop = loop;
loop = undefined;
const concLoop = { p50: finalLoop.percentile(50) / 1e6, p99: finalLoop.percentile(99) / 1e6, max: finalLoop.max / 1e6 };
const endCheck = (await model.complete(prompts[0], fixed)).tokens;
const info = model.info;
model.dispose();
await new Promise((r) => setTimeout(r, 100));
const after = sample('after dispose', n);

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const seqS = samples.filter((s) => s.label.startsWith('sequential'));
const conS = samples.filter((s) => s.label.startsWith('concurrent'));
const pick = (arr) => {
  const mid = arr.reduce((best, s) => (Math.abs(s.generations - arr[arr.length - 1].generations / 2) < Math.abs(best.generations - arr[arr.length - 1].generations / 2) ? s : best));
  return { start: arr[0].rssMiB, middle: mid.rssMiB, end: arr[arr.length - 1].rssMiB, max: Math.max(...arr.map((s) => s.rssMiB)) };
};
let commit = 'unknown';
try {
  commit = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
} catch {}
const round2 = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, +v.toFixed(2)]));
const report = {
  date: new Date().toISOString(),
  host: hostname(),
  cpu: cpus()[0]?.model,
  cpus: cpus().length,
  totalMemGiB: +(totalmem() / 2 ** 30).toFixed(1),
  node: process.version,
  commit,
  model: modelPath,
  backend: info.backend,
  device: info.device,
  sequential: { generations: sequential, seconds: +(seqMs / 1000).toFixed(1), rssMiB: pick(seqS), eventLoopMs: round2(seqLoop) },
  concurrent: { rounds, concurrent, generations: rounds * concurrent, maxActive, seconds: +(concMs / 1000).toFixed(1), rssMiB: pick(conS), eventLoopMs: round2(concLoop) },
  completed: tally.ok,
  abortedOnPurpose: tally.aborted,
  tokens: tally.tokens,
  errors: tally.errors.slice(0, 20),
  errorCount: tally.errors.length,
  deterministic: same(reference, midCheck) && same(reference, endCheck),
  liveNativeAfterDispose: after.native,
  rssAfterDisposeMiB: after.rssMiB,
  samples,
};
// Flat: RSS may still settle early on (allocator arenas, driver caches), but the second half of
// each phase must not grow: a leak of even 16 KiB per generation would show as 8 MiB there.
const growth = Math.max(report.sequential.rssMiB.end - report.sequential.rssMiB.middle, report.concurrent.rssMiB.end - report.concurrent.rssMiB.middle);
report.secondHalfGrowthMiB = +growth.toFixed(1);
console.log(JSON.stringify({ ...report, samples: undefined }, null, 2));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(report, null, 2));
const ok = report.errorCount === 0 && report.deterministic && after.native.contexts === 0 && after.native.models === 0 && growth < 8;
console.log(
  `\n${ok ? 'PASS' : 'FAIL'}: ${report.completed} completed + ${report.abortedOnPurpose} aborted on purpose, ${report.errorCount} errors; ` +
    `RSS sequential ${report.sequential.rssMiB.start} -> ${report.sequential.rssMiB.middle} -> ${report.sequential.rssMiB.end} MiB, ` +
    `concurrent ${report.concurrent.rssMiB.start} -> ${report.concurrent.rssMiB.middle} -> ${report.concurrent.rssMiB.end} MiB; ` +
    `event loop p99 ${report.sequential.eventLoopMs.p99} / ${report.concurrent.eventLoopMs.p99} ms`,
);
process.exitCode = ok ? 0 : 1;
