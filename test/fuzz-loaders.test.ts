// Loader fuzzing, fast deterministic subset (issue 8): 2,000 mutated model folders (bit flips,
// truncations, header-length edits, structured edits of safetensors headers, config.json,
// model.safetensors.index.json, tokenizer.json, tokenizer_config.json, generation_config.json,
// path/symlink tricks and special files) through the real loaders, and about a third of them
// through Model.load (native setTensor + createContext) and a 2-token generation.
// Every case must end in success or a CasspecError, each within a time bound; nothing may leak.
// scripts/soak/fuzz.mjs runs the same cases by the hundred thousand (in child processes, to catch
// crashes and hangs).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CasspecError, Model } from '../ts/index.js';
import * as loader from '../ts/loader/index.js';
import { native } from '../ts/native.js';
import { buildCorpus, newTally, prepareWorkDir, record, runCase, TARGETS, type Corpus } from '../scripts/soak/fuzz-lib.mjs';
import { modelDir } from './reference/models.js';

const CASES = Number(process.env.CASSPEC_FUZZ_CASES ?? 2000);
const SEED = Number(process.env.CASSPEC_FUZZ_SEED ?? 0x5eed);
const CASE_MS = 5000; // a case slower than this counts as a hang

const counts = () => (native() as unknown as { debugCounts(): { models: number; contexts: number } }).debugCounts();

describe('loader fuzzing (fast subset)', () => {
  let root: string;
  let corpus: Corpus;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'casspec-fuzz-'));
    const tiny = modelDir('pycode-tiny');
    corpus = await buildCorpus(join(root, 'corpus'), await readFile(join(tiny, 'tokenizer.json'), 'utf8'), await readFile(join(tiny, 'tokenizer_config.json'), 'utf8'));
    await prepareWorkDir(join(root, 'case'), corpus);
  });
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('the unmutated corpus loads and generates', async () => {
    const res = await runCase({ ...loader, Model, CasspecError }, corpus, join(root, 'case'), SEED, 0, { target: 'none', loadShare: 1 });
    expect(res).toMatchObject({ outcome: 'ok/ok' });
  });

  it(`${CASES} mutated model folders: only successes and CasspecErrors, each bounded, nothing leaks`, async () => {
    const api = { ...loader, Model, CasspecError };
    const base = counts();
    const tally = newTally();
    const slow: { i: number; ms: number; what: string }[] = [];
    const t0 = performance.now();
    for (let i = 0; i < CASES; i++) {
      const t = performance.now();
      const res = await runCase(api, corpus, join(root, 'case'), SEED, i);
      const ms = performance.now() - t;
      if (ms > CASE_MS) slow.push({ i, ms: Math.round(ms), what: `${res.target}: ${res.what}` });
      record(tally, res, ms, i);
    }
    const summary = {
      cases: tally.total,
      ok: tally.ok,
      errors: tally.errors,
      byTarget: tally.byTarget,
      slowest: { ...tally.slowest, ms: Math.round(tally.slowest.ms) },
      msPerCase: +((performance.now() - t0) / CASES).toFixed(2),
    };
    console.log(`loader fuzz (seed ${SEED}): ${JSON.stringify(summary)}`);
    expect(tally.unexpected, 'cases that threw something other than a CasspecError').toEqual([]);
    expect(slow, `cases slower than ${CASE_MS} ms`).toEqual([]);
    // Every target was exercised, and each produced both kinds of outcome somewhere.
    for (const t of TARGETS) expect(tally.byTarget[t]?.total, t).toBeGreaterThan(0);
    expect(tally.ok).toBeGreaterThan(CASES * 0.05);
    expect(Object.keys(tally.errors).length).toBeGreaterThan(4);
    // Failed and successful loads alike leave no native model or context behind.
    for (let i = 0; i < 100 && counts().contexts > base.contexts; i++) await new Promise((r) => setTimeout(r, 10));
    expect(counts()).toMatchObject(base);
  }, 600_000);
});
