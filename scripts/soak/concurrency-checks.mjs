// Concurrency, cancellation, disposal, memory-limit and event-loop checks of the public Model API,
// shared by test/robustness.test.ts (CPU, on ts/ sources) and scripts/soak/gpu-concurrency.mjs
// (any backend, on the compiled dist/). Plain JS so both can load it.
//
// makeChecks(env) returns [{ name, run }]: run() resolves to a small record of measurements, or
// throws (node:assert) when the behaviour is wrong.
//
// env: {
//   api: { Model, CasspecError },          the library (ts/ or dist/)
//   counts: () => { models, contexts },    live native objects (the addon's debugCounts())
//   backend: 'cpu' | 'cuda',
//   tinyDir, smallDir: model folders (pycode-tiny, pycode-small),
//   distDir: compiled dist/ (for worker_threads and child processes),
//   log?: (msg) => void,
// }
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { totalmem } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

export const PROMPTS = [
  'import numpy as np\n\n\ndef ',
  'class Config:\n    def __init__(self, path',
  'for i in range(10):\n    print(',
  '# Copyright\n"""Utilities for reading files."""\n',
  'def fibonacci(n):\n    ',
  'import os\nimport sys\n\n',
  'with open(path) as f:\n    ',
  'try:\n    x = int(value)\nexcept ',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(cond, ms, what) {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - t0;
    if (Date.now() - t0 > ms) throw new assert.AssertionError({ message: `timed out after ${ms} ms waiting for ${what}` });
    await sleep(5);
  }
}

export function makeChecks(env) {
  const { api, counts, backend, tinyDir, smallDir, distDir } = env;
  const log = env.log ?? (() => {});
  const load = (dir, opts = {}) => api.Model.load(dir, { backend, ...opts });

  async function expectCode(action, code) {
    let caught;
    try {
      await (typeof action === 'function' ? action() : action);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught !== undefined, `expected ${code}, but it succeeded`);
    assert.ok(caught instanceof api.CasspecError, `expected a CasspecError ${code}, got ${caught?.constructor?.name}: ${caught?.message}`);
    assert.equal(caught.code, code, caught.message);
    return caught;
  }

  // Every native object made since `base` is gone (disposed contexts are freed through the queue).
  const released = (base, ms = 5000) =>
    until(() => {
      const c = counts();
      return c.contexts <= base.contexts && c.models <= base.models;
    }, ms, `native objects to return to ${JSON.stringify(base)} (now ${JSON.stringify(counts())})`);

  const greedy = { maxTokens: 24, strategy: 'plain', ignoreEos: true };

  return [
    {
      name: 'concurrent generations on one model: each its own KV state, same tokens as sequential',
      async run() {
        const base = counts();
        const m = await load(tinyDir);
        try {
          const seq = [];
          for (const p of PROMPTS) seq.push((await m.complete(p, greedy)).tokens);
          let maxActive = 0;
          const timer = setInterval(() => (maxActive = Math.max(maxActive, m.scheduling.activeGenerations)), 1);
          const t0 = performance.now();
          const conc = await Promise.all(PROMPTS.map((p) => m.complete(p, greedy)));
          const concMs = performance.now() - t0;
          // The default (speculative) strategy is lossless: 8 at once still give greedy's tokens.
          const spec = await Promise.all(PROMPTS.map((p) => m.complete(p, { maxTokens: 24, ignoreEos: true })));
          // Sampling: per-request seeds, unaffected by interleaving.
          const sOpts = (i) => ({ maxTokens: 16, temperature: 0.8, topP: 0.95, seed: 100 + i, ignoreEos: true, strategy: 'plain' });
          const sSeq = [];
          for (const [i, p] of PROMPTS.entries()) sSeq.push((await m.complete(p, sOpts(i))).tokens);
          const sConc = await Promise.all(PROMPTS.map((p, i) => m.complete(p, sOpts(i))));
          clearInterval(timer);
          for (let i = 0; i < PROMPTS.length; i++) {
            assert.deepEqual(conc[i].tokens, seq[i], `concurrent greedy, prompt ${i}`);
            assert.deepEqual(spec[i].tokens, seq[i], `concurrent speculative, prompt ${i}`);
            assert.deepEqual(sConc[i].tokens, sSeq[i], `concurrent sampling, prompt ${i}`);
          }
          assert.ok(maxActive > 1 && maxActive <= 8, `interleaved: at most maxConcurrent (8) active, saw ${maxActive}`);
          assert.equal(m.scheduling.activeGenerations, 0);
          return { prompts: PROMPTS.length, maxActive, concurrentMs: Math.round(concMs) };
        } finally {
          m.dispose();
          await released(base);
        }
      },
    },
    {
      name: 'maxConcurrent queues in arrival order; maxQueued overflows with E_BUSY',
      async run() {
        const base = counts();
        const m = await load(tinyDir, { maxConcurrent: 2, maxQueued: 3 });
        try {
          const opts = { maxTokens: 12, strategy: 'plain', ignoreEos: true };
          const first = [];
          const done = [];
          const runs = PROMPTS.slice(0, 5).map(async (p, i) => {
            const g = m.generate(p, opts);
            for await (const c of g) if (c.tokens.length && first[i] === undefined) first[i] = performance.now();
            done[i] = performance.now();
            return (await g.result).tokens;
          });
          await until(() => m.scheduling.activeGenerations === 2 && m.scheduling.queuedGenerations === 3, 2000, '2 active + 3 queued');
          await expectCode(m.complete(PROMPTS[5], opts), 'E_BUSY');
          const out = await Promise.all(runs);
          for (let i = 0; i < 5; i++) assert.deepEqual(out[i], (await m.complete(PROMPTS[i], opts)).tokens);
          // FIFO: a queued generation starts only after one of the first two finished.
          for (const q of [2, 3, 4]) assert.ok(first[q] >= Math.min(done[0], done[1]), `queued ${q} started before a slot was free`);
          assert.ok(first[4] >= first[2] && first[4] >= first[3], 'queued generations start in arrival order');
          return { maxConcurrent: 2, maxQueued: 3 };
        } finally {
          m.dispose();
          await released(base);
        }
      },
    },
    {
      name: 'AbortSignal: mid-stream, not pulling, queued, before start, via result: E_ABORTED and the context is freed',
      async run() {
        const base = counts();
        const m = await load(tinyDir, { maxConcurrent: 1 });
        const long = { maxTokens: 400, strategy: 'plain', ignoreEos: true };
        try {
          // 1. Mid-stream: abort after 5 tokens; rejection is prompt (between native operations).
          const ac = new AbortController();
          let n = 0;
          let tAbort = 0;
          const err = await expectCode(async () => {
            for await (const c of m.generate(PROMPTS[0], { ...long, signal: ac.signal })) {
              n += c.tokens.length;
              if (n >= 5 && !tAbort) {
                tAbort = performance.now();
                ac.abort(new Error('client went away'));
              }
            }
          }, 'E_ABORTED');
          const abortLatencyMs = performance.now() - tAbort;
          assert.equal(err.cause?.message, 'client went away');
          assert.ok(abortLatencyMs < 1000, `abort took ${abortLatencyMs} ms`);
          await released({ ...base, models: base.models + 1 });

          // 2. The consumer stopped pulling (suspended at a yield): abort frees the cache at once.
          const ac2 = new AbortController();
          const g2 = m.generate(PROMPTS[1], { ...long, signal: ac2.signal });
          const it = g2[Symbol.asyncIterator]();
          await it.next();
          await it.next();
          assert.equal(counts().contexts, base.contexts + 1, 'a suspended generation holds its context');
          ac2.abort();
          const freeMs = await released({ ...base, models: base.models + 1 }, 2000);
          await expectCode(it.next(), 'E_ABORTED');

          // 3. Queued behind a running generation (maxConcurrent 1): rejects without waiting.
          const running = m.complete(PROMPTS[2], long);
          const ac3 = new AbortController();
          const queued = m.complete(PROMPTS[3], { ...long, signal: ac3.signal });
          await until(() => m.scheduling.queuedGenerations === 1, 2000, 'a queued generation');
          const tq = performance.now();
          ac3.abort();
          await expectCode(queued, 'E_ABORTED');
          const queuedAbortMs = performance.now() - tq;
          assert.ok(queuedAbortMs < 100, `queued abort took ${queuedAbortMs} ms`);
          assert.equal(m.scheduling.queuedGenerations, 0);
          assert.equal((await running).tokens.length, 400, 'the running generation is unaffected');

          // 4. Already aborted: no context is ever created.
          const before = counts();
          await expectCode(m.complete(PROMPTS[4], { ...long, signal: AbortSignal.abort() }), 'E_ABORTED');
          assert.deepEqual(counts(), before);

          // 5. Through `result` (nobody iterating), aborted by a timeout signal.
          await expectCode(m.complete(PROMPTS[5], { ...long, maxTokens: 450, signal: AbortSignal.timeout(30) }), 'E_ABORTED');
          await released({ ...base, models: base.models + 1 });

          // The model is still fine.
          const r = await m.complete(PROMPTS[0], greedy);
          assert.equal(r.tokens.length, 24);
          return { abortLatencyMs: +abortLatencyMs.toFixed(1), freedWithoutPullMs: freeMs, queuedAbortMs: +queuedAbortMs.toFixed(1) };
        } finally {
          m.dispose();
          await released(base);
        }
      },
    },
    {
      name: 'dispose() twice while generations run and wait: E_DISPOSED everywhere, everything freed',
      async run() {
        const base = counts();
        const m = await load(tinyDir, { maxConcurrent: 4 });
        const gens = PROMPTS.slice(0, 6).map((p) => m.generate(p, { maxTokens: 400, strategy: 'plain', ignoreEos: true }));
        const settled = gens.map((g) => g.result.then((r) => ({ r }), (e) => ({ e })));
        await until(() => m.scheduling.activeGenerations === 4 && m.scheduling.queuedGenerations === 2, 2000, '4 running, 2 waiting');
        await sleep(20);
        m.dispose();
        m.dispose();
        m[Symbol.dispose]();
        const out = await Promise.all(settled);
        for (const o of out) {
          assert.ok(o.e, 'a generation in flight at dispose() rejects');
          assert.ok(o.e instanceof api.CasspecError && o.e.code === 'E_DISPOSED', `got ${o.e?.code}: ${o.e?.message}`);
        }
        await expectCode(m.complete('x'), 'E_DISPOSED');
        await expectCode(() => m.info, 'E_DISPOSED');
        const freeMs = await released(base);
        return { generations: gens.length, freedMs: freeMs };
      },
    },
    {
      name: 'kvBudgetBytes: too big is E_OOM at once, the rest waits for room',
      async run() {
        const base = counts();
        const probe = await load(tinyDir);
        const perSlot = probe.info.kvBytesPerSlot;
        const promptLen = probe.encode(PROMPTS[0]).length;
        probe.dispose();
        const m = await load(tinyDir, { kvBudgetBytes: perSlot * 300 });
        try {
          const cap = (maxTokens) => promptLen + maxTokens + 80;
          const big = 300 - promptLen - 80 + 1;
          assert.equal(cap(big), 301);
          await expectCode(m.complete(PROMPTS[0], { maxTokens: big, strategy: 'plain' }), 'E_OOM');
          const half = 150 - promptLen - 80; // two of these fit, three do not
          const opts = { maxTokens: half, strategy: 'plain', ignoreEos: true };
          const three = [0, 0, 0].map(() => m.complete(PROMPTS[0], opts));
          await until(() => m.scheduling.activeGenerations === 2 && m.scheduling.queuedGenerations === 1, 2000, '2 admitted + 1 waiting for budget');
          assert.ok(m.scheduling.kvBytesInUse <= perSlot * 300);
          const out = await Promise.all(three);
          for (const o of out) assert.equal(o.tokens.length, half);
          assert.equal(m.scheduling.kvBytesInUse, 0);
          return { kvBytesPerSlot: perSlot, budget: perSlot * 300 };
        } finally {
          m.dispose();
          await released(base);
        }
      },
    },
    {
      name: 'out of memory for a KV cache is E_OOM, and the model stays usable',
      async run() {
        const base = counts();
        // 64 layers x 8 kv heads x 128: 256-512 KiB of KV per slot; a million slots is far beyond
        // any host or device memory.
        const config = {
          vocabSize: 512, hiddenSize: 128, numLayers: 64, numHeads: 8, numKvHeads: 8, headDim: 128, intermediateSize: 128,
          maxPositions: 1 << 20, ropeTheta: 10000, rmsNormEps: 1e-5, tieWordEmbeddings: false, torchDtype: 'BF16', eosTokenIds: [],
        };
        const m = await api.Model.loadDummy(config, { backend, contextLength: 1 << 20, seed: 1 });
        const need = (1 << 20) * m.info.kvBytesPerSlot;
        if (backend === 'cpu' && need < 2 * totalmem()) {
          m.dispose(); // a host this big could really allocate it: nothing to show here
          return { skipped: `host has ${totalmem()} bytes of memory` };
        }
        try {
          const err = await expectCode(m.complete([1, 2, 3], { maxTokens: (1 << 20) - 100, strategy: 'plain' }), 'E_OOM');
          const r = await m.complete([1, 2, 3], { maxTokens: 4, strategy: 'plain', ignoreEos: true });
          assert.equal(r.tokens.length, 4);
          const r2 = await m.complete([1, 2, 3], { maxTokens: 4, strategy: 'plain', ignoreEos: true });
          assert.deepEqual(r2.tokens, r.tokens);
          return { message: err.message.slice(0, 160) };
        } finally {
          m.dispose();
          await released(base);
        }
      },
    },
    {
      name: 'event loop stays responsive: p99 delay < 50 ms during load and generation (pycode-small)',
      async run() {
        const h = monitorEventLoopDelay({ resolution: 1 });
        h.enable();
        const m = await load(smallDir);
        h.disable();
        const loadP99 = h.percentile(99) / 1e6;
        const loadMax = h.max / 1e6;
        try {
          await m.complete(PROMPTS[0], { maxTokens: 8, ignoreEos: true }); // warm up (strategy calibration)
          const g = monitorEventLoopDelay({ resolution: 1 });
          g.enable();
          const t0 = performance.now();
          const r = await m.complete(PROMPTS[1], { maxTokens: 200, ignoreEos: true });
          const seqMs = performance.now() - t0;
          const conc = await Promise.all(PROMPTS.slice(0, 4).map((p) => m.complete(p, { maxTokens: 64, ignoreEos: true })));
          g.disable();
          const p99 = g.percentile(99) / 1e6;
          const out = {
            generateP99Ms: +p99.toFixed(2),
            generateMaxMs: +(g.max / 1e6).toFixed(2),
            generateP50Ms: +(g.percentile(50) / 1e6).toFixed(2),
            loadP99Ms: +loadP99.toFixed(2),
            loadMaxMs: +loadMax.toFixed(2),
            tokens: r.tokens.length + conc.reduce((a, c) => a + c.tokens.length, 0),
            tokensPerSecond: +((r.tokens.length * 1000) / seqMs).toFixed(1),
          };
          log(`event loop: ${JSON.stringify(out)}`);
          assert.ok(p99 < 50, `event-loop delay p99 ${p99.toFixed(1)} ms during generation`);
          assert.ok(loadP99 < 50, `event-loop delay p99 ${loadP99.toFixed(1)} ms during load`);
          return out;
        } finally {
          m.dispose();
        }
      },
    },
    {
      name: 'worker_threads: the addon works in several environments; terminating one mid-generation is safe',
      async run() {
        const base = counts();
        const src = `
          const { parentPort, workerData } = require('node:worker_threads');
          import(workerData.index).then(async ({ Model }) => {
            const m = await Model.load(workerData.dir, { backend: workerData.backend });
            const r = await m.complete('def f(x):', { maxTokens: 8, strategy: 'plain', ignoreEos: true });
            parentPort.postMessage({ tokens: r.tokens });
            for (;;) await m.complete('class A:', { maxTokens: 400, strategy: 'plain', ignoreEos: true });
          }).catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));`;
        const index = pathToFileURL(join(distDir, 'index.js')).href;
        const main = await load(tinyDir);
        const expected = (await main.complete('def f(x):', { maxTokens: 8, strategy: 'plain', ignoreEos: true })).tokens;
        const runs = [];
        for (let round = 0; round < 3; round++) {
          const workers = [0, 1].map(() => new Worker(src, { eval: true, workerData: { index, dir: tinyDir, backend } }));
          const firsts = await Promise.all(
            workers.map((w) => new Promise((res, rej) => {
              w.once('message', res);
              w.once('error', rej);
            })),
          );
          for (const f of firsts) {
            assert.ok(!f.error, f.error);
            assert.deepEqual(f.tokens, expected);
          }
          // Main thread keeps generating while the workers are mid-generation and get terminated.
          const mainGen = main.complete(PROMPTS[1], greedy);
          await sleep(20);
          const codes = await Promise.all(workers.map((w) => w.terminate()));
          runs.push(codes);
          assert.equal((await mainGen).tokens.length, 24);
        }
        main.dispose();
        // Terminated environments tear their objects down; allow the in-flight operation to finish.
        await released(base, 10000);
        return { rounds: runs.length };
      },
    },
    {
      name: 'a generation dropped mid-stream (never finished or aborted) frees its slot when collected',
      async run() {
        const script = `
          const { Model } = await import(${JSON.stringify(pathToFileURL(join(distDir, 'index.js')).href)});
          const { native } = await import(${JSON.stringify(pathToFileURL(join(distDir, 'native.js')).href)});
          const m = await Model.load(${JSON.stringify(tinyDir)}, { backend: ${JSON.stringify(backend)}, maxConcurrent: 1 });
          (async () => {
            const it = m.generate('def f(x):', { maxTokens: 400, strategy: 'plain', ignoreEos: true })[Symbol.asyncIterator]();
            await it.next();
          })();
          await new Promise((r) => setTimeout(r, 50));
          const held = native().debugCounts().contexts;
          for (let i = 0; i < 20 && m.scheduling.activeGenerations > 0; i++) {
            globalThis.gc();
            await new Promise((r) => setTimeout(r, 20));
          }
          const r = await m.complete('def g(y):', { maxTokens: 4, strategy: 'plain', ignoreEos: true });
          await new Promise((r) => setTimeout(r, 50));
          console.log(JSON.stringify({ held, active: m.scheduling.activeGenerations, after: native().debugCounts().contexts, tokens: r.tokens.length }));
          m.dispose();`;
        const out = await new Promise((res, rej) => {
          const p = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
          let so = '';
          let se = '';
          p.stdout.on('data', (d) => (so += d));
          p.stderr.on('data', (d) => (se += d));
          p.on('error', rej);
          p.on('exit', (code, sig) => (code === 0 ? res(so) : rej(new Error(`child exited ${code ?? sig}: ${se}`))));
        });
        const r = JSON.parse(out.trim().split('\n').pop());
        assert.equal(r.held, 1, 'the dropped generation held a context');
        assert.equal(r.active, 0, 'its slot came back after GC');
        assert.equal(r.after, 0, 'its context was freed');
        assert.equal(r.tokens, 4, 'the next generation ran (maxConcurrent 1)');
        return r;
      },
    },
    {
      name: 'chaos: random generate / abort / dispose across models, no crash, nothing leaks',
      async run() {
        const base = counts();
        let seed = 7;
        const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
        const tally = { ok: 0, aborted: 0, disposed: 0, busy: 0, other: 0 };
        for (let round = 0; round < 4; round++) {
          const m = await load(tinyDir, { maxConcurrent: 1 + Math.floor(rand() * 4), maxQueued: 6 });
          const jobs = [];
          for (let i = 0; i < 12; i++) {
            const ac = new AbortController();
            const opts = { maxTokens: 5 + Math.floor(rand() * 60), ignoreEos: true, signal: ac.signal, strategy: rand() < 0.7 ? 'plain' : undefined, temperature: rand() < 0.3 ? 0.9 : 0 };
            jobs.push(m.complete(PROMPTS[i % PROMPTS.length], opts).then(() => 'ok', (e) => e));
            if (rand() < 0.4) setTimeout(() => ac.abort(), Math.floor(rand() * 40));
          }
          if (rand() < 0.5) setTimeout(() => m.dispose(), Math.floor(rand() * 80));
          for (const j of await Promise.all(jobs)) {
            if (j === 'ok') tally.ok++;
            else if (j instanceof api.CasspecError && j.code === 'E_ABORTED') tally.aborted++;
            else if (j instanceof api.CasspecError && j.code === 'E_DISPOSED') tally.disposed++;
            else if (j instanceof api.CasspecError && j.code === 'E_BUSY') tally.busy++;
            else {
              tally.other++;
              throw new assert.AssertionError({ message: `unexpected outcome: ${j?.code ?? ''} ${j?.stack ?? j}` });
            }
          }
          m.dispose();
        }
        await released(base);
        return tally;
      },
    },
  ];
}
