// Garbage at the raw N-API surface (issue 8): every entry point must refuse wrong types, ranges,
// lengths, receivers and lifetimes with a coded error (or a JS TypeError where the language itself
// refuses, e.g. calling a class without `new`), never crash, never corrupt state; afterwards the
// same model and context still compute exactly what they computed before.
import { describe, expect, it } from 'vitest';
import { native, type NativeConfig, type NativeContext, type NativeModel } from '../ts/native.js';

interface Counts {
  models: number;
  contexts: number;
  cpuKvBytes: number;
}
type Addon = ReturnType<typeof native> & { debugCounts(): Counts };
const addon = () => native() as Addon;

const CONFIG: NativeConfig = {
  vocabSize: 64, hiddenSize: 16, numLayers: 2, numHeads: 2, numKvHeads: 1, headDim: 8,
  intermediateSize: 32, maxPositions: 64, ropeTheta: 10000, rmsNormEps: 1e-5, tieWordEmbeddings: false,
};

// Values of every JS type, and the numeric edge cases that break naive conversions.
/** Runs f (which may throw synchronously or reject) as a promise. */
const call = (f: () => unknown) => Promise.resolve().then(f);

/** A view whose buffer was detached after the view was made (it reads as length 0). */
function detached<T extends ArrayBufferView>(make: (ab: ArrayBuffer) => T): T {
  const ab = new ArrayBuffer(16);
  const view = make(ab);
  structuredClone(ab, { transfer: [ab] });
  return view;
}
const GARBAGE: unknown[] = [
  undefined, null, true, false, 0, -0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 31, -(2 ** 31) - 1, 2 ** 53, 2 ** 64, 1e308, -1e308,
  '', 'x', 'F32', 'cpu', Symbol('s'), 10n, {}, [], [1], [NaN], ['1'], [1, 2, 3, 4, 5, 6, 7, 8, 9],
  new Int32Array(0), Int32Array.of(0), Int32Array.of(-1), Int32Array.of(2 ** 31 - 1), new Uint8Array(0), new Uint8Array(64),
  new Float32Array(4), new Float64Array(2), new Int16Array(2), new BigInt64Array(1), new Uint8ClampedArray(4),
  detached((ab) => new Int32Array(ab)), detached((ab) => new Uint8Array(ab)), new Int32Array(new SharedArrayBuffer(8)),
  new ArrayBuffer(8), new DataView(new ArrayBuffer(8)), Buffer.alloc(4), () => 1, new Date(0), /x/, new Map(), Promise.resolve(1),
  Object.create(null), new Proxy({}, {}),
];

// A thrown value is acceptable when it is a coded casspec error, or a TypeError that the JS engine
// itself raised (e.g. "Class constructor cannot be invoked without 'new'").
function acceptable(e: unknown): boolean {
  const err = e as { code?: unknown; name?: unknown };
  if (typeof err?.code === 'string' && err.code.startsWith('E_')) return true;
  return e instanceof TypeError;
}

async function outcome(f: () => unknown): Promise<string> {
  try {
    const r = f();
    if (r && typeof (r as Promise<unknown>).then === 'function') await r;
    return 'ok';
  } catch (e) {
    if (!acceptable(e)) throw new Error(`not a coded error: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, { cause: e });
    return (e as { code?: string }).code ?? 'TypeError';
  }
}

async function newModel(): Promise<NativeModel> {
  const m = addon().createModel(CONFIG, { backend: 'cpu', threads: 1 });
  await m.fillDummy(7);
  return m;
}

const prefill = (n: number) => ({
  tokens: Int32Array.from({ length: n }, (_, i) => (i * 7 + 3) % 64),
  slots: Int32Array.from({ length: n }, (_, i) => i),
  parents: Int32Array.from({ length: n }, (_, i) => i - 1),
});

async function reference(m: NativeModel): Promise<number[]> {
  const ctx = await m.createContext(16);
  try {
    return [...(await ctx.forward(prefill(6))).argmax];
  } finally {
    ctx.dispose();
  }
}

describe('raw addon: hostile arguments', () => {
  it('createModel refuses bad configs and options with coded errors', async () => {
    const counts0 = addon().debugCounts();
    const tally = new Map<string, number>();
    const note = (o: string) => tally.set(o, (tally.get(o) ?? 0) + 1);
    for (const g of GARBAGE) {
      note(await outcome(() => addon().createModel(g as NativeConfig, { backend: 'cpu' }).dispose()));
      note(await outcome(() => addon().createModel(CONFIG, g as never).dispose()));
      for (const key of Object.keys(CONFIG)) {
        const made = await outcome(() => {
          const m = addon().createModel({ ...CONFIG, [key]: g } as NativeConfig, { backend: 'cpu', threads: 1 });
          m.dispose();
        });
        note(made);
      }
      for (const key of ['backend', 'threads', 'device', 'weightDType'])
        note(await outcome(() => addon().createModel(CONFIG, { backend: 'cpu', threads: 1, [key]: g } as never).dispose()));
    }
    // Dimensions past the supported range, or whose weights cannot fit in memory.
    for (const big of [{ vocabSize: 1 << 22, hiddenSize: 1 << 16 }, { numLayers: 1 << 20 }, { headDim: 3 }, { numKvHeads: 3 }]) {
      note(await outcome(async () => {
        const m = addon().createModel({ ...CONFIG, ...big }, { backend: 'cpu', threads: 1 });
        try {
          await m.fillDummy(1);
        } finally {
          m.dispose();
        }
      }));
    }
    expect(tally.get('ok')).toBeGreaterThan(0);
    expect(tally.get('E_INVALID_ARG')).toBeGreaterThan(0);
    expect(tally.get('E_CONFIG')).toBeGreaterThan(0);
    expect(tally.get('E_OOM')).toBeGreaterThan(0);
    expect(addon().debugCounts().models).toBe(counts0.models);
  });

  it('every model and context method refuses garbage; state is untouched afterwards', async () => {
    const m = await newModel();
    const before = await reference(m);
    const ctx = await m.createContext(16);
    const seen = new Set<string>();
    const mm = m as unknown as Record<string, (...a: unknown[]) => unknown>;
    const cc = ctx as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const g of GARBAGE) {
      for (const name of ['setTensor', 'fillDummy', 'createContext', 'tensorSpecs', 'info'])
        for (const args of [[g], [g, g], ['model.norm.weight', 'F32', g, new Uint8Array(64)], ['model.norm.weight', g, [16], new Uint8Array(64)], ['model.norm.weight', 'F32', [16], g], [g, 'F32', [16], new Uint8Array(64)]]) {
          if (name === 'fillDummy' && typeof g === 'number' && Number.isSafeInteger(g)) continue; // valid: refills weights
          if (name === 'setTensor' && ((g instanceof Uint8Array && g.length === 64) || g === 'F32')) continue; // valid: replaces a weight
          seen.add(`${name}:${await outcome(() => mm[name].apply(m, args))}`);
        }
      for (const name of ['forward', 'commit', 'truncate']) seen.add(`${name}:${await outcome(() => cc[name].call(ctx, g))}`);
      for (const key of ['tokens', 'slots', 'parents', 'skip', 'outRows', 'quant', 'wantLogits', 'topk'])
        seen.add(`forward.${key}:${await outcome(() => ctx.forward({ ...prefill(3), [key]: g } as never))}`);
    }
    // The context still works from a clean start, and the weights are the ones we started with.
    await ctx.truncate(0);
    const out = await ctx.forward(prefill(6));
    expect([...out.argmax]).toEqual(before);
    ctx.dispose();
    expect(await reference(m)).toEqual(before);
    for (const s of seen) expect(s).toMatch(/:(ok|E_[A-Z_]+|TypeError)$/);
    m.dispose();
  });

  it('typed-array views: byte offsets, shared memory, detaching or shrinking the buffer right after the call', async () => {
    const m = await newModel();
    const before = await reference(m);
    const ctx = await m.createContext(16);
    // A view into the middle of a larger buffer reads the right elements.
    const big = new Int32Array(64).fill(-7);
    const p = prefill(6);
    big.set(p.tokens, 10);
    const shared = new Int32Array(new SharedArrayBuffer(24));
    shared.set(p.slots);
    const out = await ctx.forward({ tokens: big.subarray(10, 16), slots: shared, parents: p.parents });
    expect([...out.argmax]).toEqual(before);
    await ctx.truncate(0);
    // The call copies its arguments: detaching them at once changes nothing.
    const tokens = Int32Array.from(p.tokens);
    const pending = ctx.forward({ tokens, slots: p.slots, parents: p.parents });
    structuredClone(tokens.buffer, { transfer: [tokens.buffer] });
    expect([...(await pending).argmax]).toEqual(before);
    ctx.dispose();
    // setTensor copies too: shrink a resizable buffer (or detach it) while the worker runs.
    const spec = m.tensorSpecs().find((s) => s.name === 'model.norm.weight')!;
    const rab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void })(spec.shape[0] * 4, {
      maxByteLength: 1 << 16,
    });
    new Float32Array(rab).fill(1);
    const set = m.setTensor(spec.name, 'F32', spec.shape, new Uint8Array(rab));
    rab.resize(0);
    await set;
    const buf = new Float32Array(spec.shape[0]).fill(1);
    const set2 = m.setTensor(spec.name, 'F32', spec.shape, new Uint8Array(buf.buffer));
    structuredClone(buf.buffer, { transfer: [buf.buffer] });
    await set2;
    m.dispose();
  });

  it('methods called on the wrong receiver, and construction from JS, are refused', async () => {
    const m = await newModel();
    const ctx = await m.createContext(8);
    const mp = Object.getPrototypeOf(m) as Record<string, unknown>;
    const cp = Object.getPrototypeOf(ctx) as Record<string, unknown>;
    const receivers: unknown[] = [m, ctx, {}, Object.create(mp), Object.create(cp), undefined, null, 1, 'x', mp, cp, () => 1];
    let refused = 0;
    for (const proto of [mp, cp])
      for (const name of Object.getOwnPropertyNames(proto)) {
        if (name === 'constructor') continue;
        const d = Object.getOwnPropertyDescriptor(proto, name)!;
        const fn = (d.get ?? d.value) as (...a: unknown[]) => unknown;
        for (const r of receivers) {
          const own = (proto === mp && r === m) || (proto === cp && r === ctx);
          if (own) continue;
          const o = await outcome(() => fn.call(r, 4));
          expect(o, `${name} on ${String(r)}`).toBe('E_INVALID_ARG');
          refused++;
        }
      }
    expect(refused).toBeGreaterThan(50);
    for (const C of [mp.constructor, cp.constructor] as (new (...a: unknown[]) => unknown)[]) {
      expect(await outcome(() => new C())).toBe('E_INVALID_ARG');
      expect(await outcome(() => new C({}))).toBe('E_INVALID_ARG');
      expect(await outcome(() => (C as unknown as () => unknown)())).toBe('TypeError');
      class Sub extends C {}
      expect(await outcome(() => new Sub())).toBe('E_INVALID_ARG');
    }
    ctx.dispose();
    m.dispose();
  });

  it('lifetimes: E_BUSY for two operations on one context, E_DISPOSED after dispose, dispose under a running operation', async () => {
    const counts0 = addon().debugCounts();
    const m = await newModel();
    const before = await reference(m);
    const ctx = await m.createContext(64);
    const a = ctx.forward(prefill(40));
    await expect(call(() => ctx.forward(prefill(2)))).rejects.toMatchObject({ code: 'E_BUSY' });
    await expect(call(() => ctx.truncate(0))).rejects.toMatchObject({ code: 'E_BUSY' });
    await expect(call(() => ctx.commit(Int32Array.of(0)))).rejects.toMatchObject({ code: 'E_BUSY' });
    await a;
    // Dispose the context and the model while a forward pass runs: it completes on its own reference.
    await ctx.truncate(0);
    const running = ctx.forward(prefill(40));
    ctx.dispose();
    ctx.dispose();
    m.dispose();
    m.dispose();
    expect((await running).argmax.length).toBe(40);
    await expect(call(() => ctx.forward(prefill(1)))).rejects.toMatchObject({ code: 'E_DISPOSED' });
    expect(() => ctx.truncate(0)).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    expect(() => m.createContext(4)).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    expect(() => m.info()).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    expect(ctx.committed).toBe(0);
    expect(ctx.capacity).toBe(0);
    // Getters that run JS while arguments are read: dispose, or start another operation, mid-parse.
    const m2 = await newModel();
    const c2 = await m2.createContext(16);
    let inner: Promise<unknown> | undefined;
    const reentrant = {
      ...prefill(3),
      get parents() {
        inner = c2.forward(prefill(2));
        return prefill(3).parents;
      },
    };
    await expect(call(() => c2.forward(reentrant as never))).rejects.toMatchObject({ code: 'E_BUSY' });
    await inner;
    const disposing = {
      ...prefill(3),
      get slots() {
        c2.dispose();
        return prefill(3).slots;
      },
    };
    await expect(call(() => c2.forward(disposing as never))).rejects.toMatchObject({ code: 'E_DISPOSED' });
    const throwing = {
      get tokens(): Int32Array {
        throw new RangeError('from a getter');
      },
    };
    const c3 = await m2.createContext(8);
    await expect(call(() => c3.forward(throwing as never))).rejects.toThrow('from a getter');
    expect([...(await c3.forward(prefill(6))).argmax]).toEqual(before);
    c3.dispose();
    m2.dispose();
    // Everything is freed once nothing runs.
    for (let i = 0; i < 100 && addon().debugCounts().contexts > counts0.contexts; i++) await new Promise((r) => setTimeout(r, 10));
    expect(addon().debugCounts()).toEqual(counts0);
  });

  it('lengths past the context are refused before any work (no quadratic validation)', async () => {
    const m = await newModel();
    const ctx = await m.createContext(32);
    const huge = 1 << 22;
    const t0 = performance.now();
    await expect(
      call(() => ctx.forward({ tokens: new Int32Array(huge), slots: new Int32Array(huge), parents: new Int32Array(huge).fill(-1) })),
    ).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    await expect(call(() => ctx.commit(new Int32Array(huge)))).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    await expect(call(() => ctx.forward({ ...prefill(3), skip: new Uint8Array(1 << 20) }))).rejects.toMatchObject({
      code: 'E_INVALID_ARG',
    });
    expect(performance.now() - t0).toBeLessThan(1000);
    await expect(call(() => m.createContext(2 ** 31 - 1))).rejects.toMatchObject({ code: 'E_INVALID_ARG' }); // > maxPositions
    ctx.dispose();
    m.dispose();
  });

  it('random operation sequences against the engine: only coded errors, exact results survive', async () => {
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const pick = <T,>(a: T[]): T => a[rnd(a.length)];
    const m = await newModel();
    const before = await reference(m);
    const tally = new Map<string, number>();
    let ctx: NativeContext | undefined;
    for (let step = 0; step < 3000; step++) {
      const op = rnd(10);
      let o: string;
      if (!ctx || op === 0) {
        ctx?.dispose();
        o = await outcome(async () => {
          ctx = await m.createContext(pick([1, 2, 8, 16, 64, 65, 0, -3]));
        });
        if (o !== 'ok') ctx = undefined;
      } else if (op <= 5) {
        const n = pick([1, 1, 2, 3, 5, 8, 17]);
        const base = ctx.committed;
        const ints = (f: (i: number) => number) => Int32Array.from({ length: n }, (_, i) => f(i));
        const req = {
          tokens: ints(() => pick([rnd(64), rnd(64), -1, 64, 2 ** 31 - 1])),
          slots: ints((i) => pick([base + i, base + i, base + n - 1 - i, rnd(70) - 3])),
          parents: ints((i) => pick([i === 0 ? -1 : base + i - 1, -1, base + rnd(n + 1) - 1, -2, base + i])),
          skip: rnd(3) === 0 ? Uint8Array.from({ length: pick([4, 4, 3, 0]) }, () => rnd(2)) : undefined,
          outRows: rnd(3) === 0 ? Int32Array.from({ length: rnd(n + 1) }, (_, i) => pick([i, n - 1 - i, n + 1])) : undefined,
          quant: pick([0, 0, 0, 1, -1]),
          wantLogits: rnd(2) === 0,
          topk: pick([0, 0, 4, 16, 17, -1]),
        };
        o = await outcome(() => ctx!.forward(req));
      } else if (op <= 7) {
        const base = ctx.committed;
        o = await outcome(() => ctx!.commit(Int32Array.from({ length: rnd(4) }, (_, i) => pick([base + i, base + i, rnd(70) - 3]))));
      } else {
        o = await outcome(() => ctx!.truncate(pick([0, rnd(Math.max(1, ctx!.committed + 2)), -1, 1e9])));
      }
      tally.set(o, (tally.get(o) ?? 0) + 1);
    }
    ctx?.dispose();
    expect(tally.get('ok')).toBeGreaterThan(100);
    expect(tally.get('E_INVALID_ARG')).toBeGreaterThan(100);
    for (const k of tally.keys()) expect(k).toMatch(/^(ok|E_[A-Z_]+)$/);
    expect(await reference(m)).toEqual(before);
    m.dispose();
  });

  it('cudaStatus and debugCounts take no arguments and ignore garbage', async () => {
    for (const g of GARBAGE) {
      expect(typeof (addon().cudaStatus as (x: unknown) => { usable: boolean })(g).usable).toBe('boolean');
      expect(typeof (addon().debugCounts as (x: unknown) => Counts)(g).models).toBe('number');
    }
  });
});
