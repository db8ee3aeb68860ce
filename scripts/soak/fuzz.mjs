#!/usr/bin/env node
// Loader fuzz soak: >= 100,000 mutated model folders through the real loaders (and a third of them
// through Model.load + a 2-token generation), in child processes so that a native crash or a hang
// is caught, attributed to its case, and the run goes on.
//
//   npx tsc -p tsconfig.json && node scripts/soak/fuzz.mjs --cases 100000
//
// Options: --cases N (100000), --seed S (1), --workers W (CPU count), --hang-ms T (30000: a case
// running longer is killed and counted as a hang), --models DIR (folder holding pycode-tiny;
// default $CASSPEC_MODELS or ../shared/models), --json FILE (write the summary).
// Case i of seed S is the same mutation on every machine: rerun one with --only i.
import { fork } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { cpus, tmpdir, hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { buildCorpus, prepareWorkDir, runCase, newTally, record } from './fuzz-lib.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const models = resolve(arg('models', process.env.CASSPEC_MODELS ?? join(root, '..', 'shared', 'models')));

if (argv.includes('--child')) await child();
else await parent();

// ---------------------------------------------------------------------------------------------

async function child() {
  // CASSPEC_FUZZ_SELFTEST=1: cases 7 and 9 of every 500 crash and hang on purpose (checks the harness).
  const selfTest = process.env.CASSPEC_FUZZ_SELFTEST === '1';
  const seed = Number(arg('seed', 1));
  const work = arg('work');
  const loader = await import(join(root, 'dist', 'loader', 'index.js'));
  const { Model, CasspecError } = await import(join(root, 'dist', 'index.js'));
  const { native } = await import(join(root, 'dist', 'native.js'));
  const api = { ...loader, Model, CasspecError };
  const tiny = join(models, 'pycode-tiny');
  const corpus = await buildCorpus(join(work, 'corpus'), await readFile(join(tiny, 'tokenizer.json'), 'utf8'), await readFile(join(tiny, 'tokenizer_config.json'), 'utf8'));
  await prepareWorkDir(join(work, 'case'), corpus);
  const send = (m) => new Promise((res) => process.send(m, res));
  process.on('message', async (m) => {
    if (m.t === 'run') {
      for (let i = m.from; i < m.to; i++) {
        if (selfTest && i % 500 === 7) {
          process.send({ t: 'start', i, target: 'self-test', what: 'SIGSEGV' });
          await new Promise((r) => setTimeout(r, 20));
          process.kill(process.pid, 'SIGSEGV');
        }
        if (selfTest && i % 500 === 9) {
          process.send({ t: 'start', i, target: 'self-test', what: 'busy loop' });
          for (;;);
        }
        const t0 = performance.now();
        let res;
        try {
          res = await runCase(api, corpus, join(work, 'case'), seed, i, { onCase: (c) => process.send({ t: 'start', i, target: c.target, what: c.what }) });
        } catch (e) {
          res = { target: 'harness', what: '', unexpected: `harness error: ${e?.stack ?? e}` }; // a bug in fuzz-lib, not in casspec
        }
        await send({ t: 'done', i, res, ms: performance.now() - t0 });
      }
      await send({ t: 'idle' });
    } else if (m.t === 'exit') {
      await new Promise((r) => setTimeout(r, 50));
      await send({ t: 'final', counts: native().debugCounts(), rss: process.memoryUsage().rss });
      process.exit(0);
    }
  });
  await send({ t: 'ready' });
}

async function parent() {
  const cases = Number(arg('cases', 100000));
  const seed = Number(arg('seed', 1));
  const workers = Number(arg('workers', Math.max(1, cpus().length)));
  const hangMs = Number(arg('hang-ms', 30000));
  const only = arg('only');
  const jsonOut = arg('json');
  const chunk = 250;
  const tmp = await mkdtemp(join(tmpdir(), 'casspec-fuzz-soak-'));
  const tally = newTally();
  const crashes = [];
  const hangs = [];
  const finals = [];
  let next = only !== undefined ? Number(only) : 0;
  const end = only !== undefined ? Number(only) + 1 : cases;
  let pendingRanges = []; // ranges left over by a crashed or hung child
  const t0 = performance.now();
  let lastReport = 0;
  let failedStarts = 0;

  const takeRange = () => {
    if (pendingRanges.length) return pendingRanges.shift();
    if (next >= end) return undefined;
    const r = { from: next, to: Math.min(end, next + chunk) };
    next = r.to;
    return r;
  };

  await new Promise((allDone) => {
    let live = 0;
    const start = (id) => {
      const proc = fork(fileURLToPath(import.meta.url), ['--child', '--seed', String(seed), '--work', join(tmp, `w${id}`), '--models', models], {
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      });
      live++;
      const st = { proc, range: undefined, current: undefined, lastBeat: Date.now(), killedForHang: false, stderr: '', failures: 0 };
      proc.stderr.on('data', (d) => (st.stderr = (st.stderr + d).slice(-4000)));
      const assign = () => {
        st.range = takeRange();
        if (!st.range) {
          proc.send({ t: 'exit' });
          return;
        }
        st.lastBeat = Date.now();
        proc.send({ t: 'run', ...st.range });
      };
      proc.on('message', (m) => {
        st.lastBeat = Date.now();
        if (m.t === 'ready' || m.t === 'idle') assign();
        else if (m.t === 'start') st.current = m;
        else if (m.t === 'done') {
          record(tally, m.res, m.ms, m.i);
          st.current = undefined;
          if (st.range) st.range.from = m.i + 1;
          const now = performance.now();
          if (now - lastReport > 10000) {
            lastReport = now;
            process.stderr.write(`  ${tally.total} cases, ${((tally.total * 1000) / (now - t0)).toFixed(0)}/s, ${tally.unexpectedCount} unexpected, ${crashes.length} crashes, ${hangs.length} hangs\n`);
          }
        } else if (m.t === 'final') finals.push(m);
      });
      const watchdog = setInterval(() => {
        if (st.current && Date.now() - st.lastBeat > hangMs) {
          st.killedForHang = true;
          proc.kill('SIGKILL');
        }
      }, 1000);
      proc.on('exit', (code, signal) => {
        clearInterval(watchdog);
        live--;
        const abnormal = code !== 0 || signal;
        if (abnormal && !st.current && st.range === undefined && ++st.failures > 0 && (failedStarts += 1) > 5) {
          console.error(`a fuzz worker keeps dying before running any case: ${st.stderr}`);
          process.exit(2);
        }
        if (abnormal) {
          const c = st.current ?? { i: st.range?.from, target: '?', what: '?' };
          const rec = { i: c.i, target: c.target, what: c.what, code, signal, stderr: st.stderr.trim().split('\n').slice(-5).join(' | ') };
          (st.killedForHang ? hangs : crashes).push(rec);
          process.stderr.write(`  ${st.killedForHang ? 'HANG' : 'CRASH'} at case ${rec.i} (${rec.target}: ${rec.what}) ${signal ?? code} ${rec.stderr}\n`);
          if (st.range && c.i !== undefined && c.i + 1 < st.range.to) pendingRanges.push({ from: c.i + 1, to: st.range.to });
          start(id); // replace the worker and go on
        }
        if (live === 0) allDone();
      });
    };
    for (let w = 0; w < workers; w++) start(w);
  });

  const elapsed = (performance.now() - t0) / 1000;
  await rm(tmp, { recursive: true, force: true });
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {}
  const summary = {
    date: new Date().toISOString(),
    host: hostname(),
    cpu: cpus()[0]?.model,
    cpus: cpus().length,
    node: process.version,
    commit,
    seed,
    cases: tally.total,
    ok: tally.ok,
    errorsByCode: tally.errors,
    byTarget: tally.byTarget,
    unexpected: tally.unexpectedCount,
    unexpectedExamples: tally.unexpected.slice(0, 20),
    crashes: crashes.length,
    crashExamples: crashes.slice(0, 20),
    hangs: hangs.length,
    hangExamples: hangs.slice(0, 20),
    slowestCase: { ...tally.slowest, ms: Math.round(tally.slowest.ms) },
    seconds: +elapsed.toFixed(1),
    casesPerSecond: +(tally.total / elapsed).toFixed(1),
    workers,
    childFinal: finals.map((f) => ({ rssMiB: Math.round(f.rss / 2 ** 20), liveNative: f.counts })),
  };
  console.log(JSON.stringify(summary, null, 2));
  if (jsonOut) writeFileSync(jsonOut, JSON.stringify(summary, null, 2));
  const leaked = finals.some((f) => f.counts.models !== 0 || f.counts.contexts !== 0);
  const bad = summary.unexpected + summary.crashes + summary.hangs + (leaked ? 1 : 0);
  console.log(
    `\n${summary.cases} cases in ${summary.seconds} s: ${summary.ok} loaded, ${summary.cases - summary.ok - summary.unexpected} refused with a CasspecError, ` +
      `${summary.unexpected} unexpected errors, ${summary.crashes} crashes, ${summary.hangs} hangs${leaked ? ', LEAKED native objects' : ''}`,
  );
  process.exitCode = bad ? 1 : 0;
}
