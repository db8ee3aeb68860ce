// Issue 8 on the public API (CPU): concurrent generations, queueing limits, AbortSignal,
// dispose() while requests run, KV memory budget, out-of-memory recovery, event-loop delay,
// worker_threads, abandoned generations, and hostile arguments. The concurrency checks live in
// scripts/soak/concurrency-checks.mjs so that scripts/soak/gpu-concurrency.mjs runs the very same
// ones on a GPU (`--backend cuda`).
import { mkdir, mkdtemp, rm, symlink, writeFile, readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CasspecError, Model } from '../ts/index.js';
import { native } from '../ts/native.js';
import { makeChecks } from '../scripts/soak/concurrency-checks.mjs';
import { expectCasspecError } from './fixtures/expect-error.js';
import { modelDir, repoRoot } from './reference/models.js';

const counts = () => (native() as unknown as { debugCounts(): { models: number; contexts: number } }).debugCounts();

describe('concurrency, cancellation and limits (cpu)', () => {
  const checks = makeChecks({
    api: { Model, CasspecError },
    counts,
    backend: 'cpu',
    tinyDir: modelDir('pycode-tiny'),
    smallDir: modelDir('pycode-small'),
    distDir: join(repoRoot, 'dist'),
    log: (m: string) => console.log(m),
  });
  for (const c of checks)
    it(c.name, async () => {
      const details = await c.run();
      if (details) console.log(`${c.name}: ${JSON.stringify(details)}`);
    }, 120_000);
});

describe('hostile arguments to the public API', () => {
  let model: Model;
  beforeAll(async () => {
    model = await Model.load(modelDir('pycode-tiny'), { backend: 'cpu', contextLength: 128 });
  });
  afterAll(() => model?.dispose());

  it('generate() refuses bad prompts and options with E_INVALID_ARG (never a TypeError)', async () => {
    const bad: [unknown, unknown][] = [
      [42, {}], [null, {}], [undefined, {}], [{}, {}], [[1.5], {}], [[NaN], {}], [['a'], {}], [[-1], {}], [[8192], {}], [[], {}],
      ['a', null], ['a', 'x'], ['a', 5],
      ['a', { maxTokens: NaN }], ['a', { maxTokens: Infinity }], ['a', { maxTokens: -1 }], ['a', { maxTokens: 1.5 }], ['a', { maxTokens: '5' }],
      ['a', { temperature: NaN }], ['a', { temperature: Infinity }], ['a', { temperature: -0.1 }], ['a', { temperature: '1' }],
      ['a', { topP: NaN }], ['a', { topP: 0 }], ['a', { topP: 1.5 }],
      ['a', { seed: NaN }], ['a', { seed: 1.5 }], ['a', { seed: 2 ** 60 }],
      ['a', { signal: {} }], ['a', { signal: 'x' }], ['a', { signal: null }],
      ['a', { strategy: 5 }], ['a', { strategy: {} }], ['a', { strategy: { name: 'x' } }], ['a', { strategy: 'nope' }], ['a', { strategy: null }],
    ];
    for (const [prompt, opts] of bad) {
      const err = await expectCasspecError(model.complete(prompt as string, opts as never), 'E_INVALID_ARG');
      expect(err.message.length).toBeGreaterThan(0);
    }
    await expectCasspecError(model.complete('x = 1\n'.repeat(100)), 'E_CONTEXT_FULL');
    expect(() => model.encode(5 as unknown as string)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARG' }));
    expect(() => model.decode('x' as unknown as number[])).toThrow(expect.objectContaining({ code: 'E_INVALID_ARG' }));
    expect(() => model.decode([1.5])).toThrow(expect.objectContaining({ code: 'E_INVALID_ARG' }));
    expect(model.decode([])).toBe('');
    // Still fine afterwards.
    expect((await model.complete('def f(x):', { maxTokens: 4, strategy: 'plain', ignoreEos: true })).tokens.length).toBe(4);
  });

  it('a strategy that throws something odd surfaces as a CasspecError and frees the context', async () => {
    const base = counts();
    const strategy = {
      name: 'broken',
      async draft() {
        throw 'not even an Error';
      },
    };
    const err = await expectCasspecError(model.complete('def f(x):', { maxTokens: 8, strategy }), 'E_INTERNAL', 'not even an Error');
    expect(err.cause).toBe('not even an Error');
    for (let i = 0; i < 50 && counts().contexts > base.contexts; i++) await new Promise((r) => setTimeout(r, 10));
    expect(counts()).toEqual(base);
  });

  it('Model.load / loadDummy refuse bad options with E_INVALID_ARG', async () => {
    const dir = modelDir('pycode-tiny');
    const bad: unknown[] = [
      { maxConcurrent: 0 }, { maxConcurrent: -1 }, { maxConcurrent: 1.5 }, { maxConcurrent: NaN }, { maxConcurrent: '2' },
      { maxQueued: -1 }, { maxQueued: NaN }, { kvBudgetBytes: 0 }, { kvBudgetBytes: NaN }, { kvBudgetBytes: -5 },
      { contextLength: NaN }, { contextLength: 1 }, { contextLength: 1e9 }, { threads: -1 }, { threads: 1.5 }, { threads: '2' },
      { backend: 'gpu' }, { signal: {} }, { onProgress: 'x' },
    ];
    for (const o of bad) await expectCasspecError(Model.load(dir, { backend: 'cpu', ...(o as object) }), 'E_INVALID_ARG');
    await expectCasspecError(Model.load(dir, null as never), 'E_INVALID_ARG');
    await expectCasspecError(Model.load(dir, 'x' as never), 'E_INVALID_ARG');
    await expectCasspecError(Model.load(null as unknown as string), 'E_INVALID_ARG');
    await expectCasspecError(Model.load(''), 'E_INVALID_ARG');
    await expectCasspecError(Model.load('a\0b'), 'E_INVALID_ARG');
    await expectCasspecError(Model.load(dir, { backend: 'cpu', signal: AbortSignal.abort() }), 'E_ABORTED');
    await expectCasspecError(Model.loadDummy('llama-2-7b', { backend: 'cpu', maxConcurrent: 0 }), 'E_INVALID_ARG');
    await expectCasspecError(Model.loadDummy('nope', { backend: 'cpu' }), 'E_INVALID_ARG');
    expect(counts().models).toBe(1); // only the suite's model
  });

  it('loadDummy of a shape whose F32 weights exceed physical memory is E_OOM, not the OOM killer', async () => {
    const huge = {
      vocabSize: 1 << 22, hiddenSize: 1 << 16, numLayers: 1, numHeads: 1, numKvHeads: 1, headDim: 1 << 16, intermediateSize: 8,
      maxPositions: 16, ropeTheta: 10000, rmsNormEps: 1e-5, tieWordEmbeddings: true, torchDtype: 'F32' as const, eosTokenIds: [],
    };
    await expectCasspecError(Model.loadDummy({ ...huge, headDim: 1024 }, { backend: 'cpu', threads: 1 }), 'E_OOM');
  });

  describe('special files in a model folder fail fast with a typed error', () => {
    let root: string;
    beforeAll(async () => {
      root = await mkdtemp(join(tmpdir(), 'casspec-special-'));
    });
    afterAll(async () => {
      await rm(root, { recursive: true, force: true });
    });
    const src = () => modelDir('pycode-tiny');
    const cases: [string, string, string][] = [
      ['config.json', 'fifo', 'E_CONFIG'],
      ['config.json', '/dev/zero', 'E_CONFIG'],
      ['config.json', 'dir', 'E_CONFIG'],
      ['tokenizer.json', 'fifo', 'E_TOKENIZER'],
      ['tokenizer.json', '/dev/urandom', 'E_TOKENIZER'],
      ['tokenizer_config.json', 'fifo', 'E_TOKENIZER'],
      ['generation_config.json', 'fifo', 'E_CONFIG'],
      ['model.safetensors', 'fifo', 'E_SAFETENSORS'],
      ['model.safetensors', '/dev/zero', 'E_SAFETENSORS'],
    ];
    for (const [file, kind, code] of cases)
      it.skipIf(process.platform === 'win32')(`${file} is ${kind}: ${code}`, async () => {
        const dir = join(root, `${file}-${kind.replace(/\W/g, '')}`);
        await mkdir(dir, { recursive: true });
        for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'])
          if (f !== file) await writeFile(join(dir, f), await readFile(join(src(), f)));
        const p = join(dir, file);
        if (kind === 'fifo') execFileSync('mkfifo', [p]);
        else if (kind === 'dir') await mkdir(p);
        else await symlink(kind, p);
        const t0 = performance.now();
        await expectCasspecError(Model.load(dir, { backend: 'cpu' }), code as never, 'not a regular file');
        expect(performance.now() - t0).toBeLessThan(2000);
      });
  });
});
