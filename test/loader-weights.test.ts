// Weight-file discovery and tensor streaming: single files, shards with an index, and an index
// that is hostile (paths escaping the folder) or inconsistent with the shards.
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { iterateTensors, listWeightFiles, type LoadedTensor } from '../ts/loader/weights.js';
import { expectCasspecError } from './fixtures/expect-error.js';
import { writeSafetensors, type FixtureTensor } from './fixtures/safetensors-writer.js';
import { useTempDir } from './fixtures/temp-dir.js';
import { writeTinyModel } from './fixtures/tiny-model.js';

const tmp = useTempDir('casspec-weights-');
let n = 0;
const freshDir = async (name: string) => {
  const dir = join(tmp(), `${name}-${n++}`);
  await mkdir(dir, { recursive: true });
  return dir;
};
const tensor = (name: string, values: number[]): FixtureTensor => ({ name, dtype: 'F32', shape: [values.length], data: Float32Array.from(values) });
const collect = async (dir: string) => {
  const out: LoadedTensor[] = [];
  for await (const t of iterateTensors(dir)) out.push(t);
  return out;
};

/** Two shards a.safetensors {x, y} and b.safetensors {z}, plus an index (overridable). */
async function shardedDir(weightMap?: Record<string, unknown>): Promise<string> {
  const dir = await freshDir('sharded');
  await writeSafetensors(join(dir, 'a.safetensors'), [tensor('x', [1, 2]), tensor('y', [3])]);
  await writeSafetensors(join(dir, 'b.safetensors'), [tensor('z', [4, 5, 6])]);
  const map = weightMap ?? { x: 'a.safetensors', y: 'a.safetensors', z: 'b.safetensors' };
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: map }));
  return dir;
}

describe('listWeightFiles / iterateTensors', () => {
  it('streams a single-file model, one tensor at a time', async () => {
    const dir = await freshDir('tiny');
    await writeTinyModel(dir, { hidden: 16, layers: 1, heads: 2, kvHeads: 1, ffn: 32, vocab: 50, dtype: 'BF16' });
    expect(await listWeightFiles(dir)).toEqual({ files: [join(dir, 'model.safetensors')] });
    const ts = await collect(dir);
    expect(ts.map((t) => t.name)).toContain('model.layers.0.self_attn.k_proj.weight');
    const k = ts.find((t) => t.name === 'model.layers.0.self_attn.k_proj.weight')!;
    expect(k).toMatchObject({ dtype: 'BF16', shape: [8, 16], file: join(dir, 'model.safetensors') });
    expect(k.data.length).toBe(8 * 16 * 2);
  });

  it('streams sharded weights and checks them against the index', async () => {
    const dir = await shardedDir();
    const wf = await listWeightFiles(dir);
    expect(wf.files).toEqual([join(dir, 'a.safetensors'), join(dir, 'b.safetensors')]);
    expect(wf.weightMap?.get('z')).toBe(join(dir, 'b.safetensors'));
    const ts = await collect(dir);
    expect(ts.map((t) => [t.name, t.file.endsWith('a.safetensors') ? 'a' : 'b'])).toEqual([['x', 'a'], ['y', 'a'], ['z', 'b']]);
    expect([...new Float32Array(ts[2].data.slice().buffer)]).toEqual([4, 5, 6]);
  });

  it('accepts a shard symlinked inside the folder and an HF cache snapshot', async () => {
    const dir = await shardedDir({ x: 'link.safetensors', y: 'link.safetensors', z: 'b.safetensors' });
    await symlink(join(dir, 'a.safetensors'), join(dir, 'link.safetensors'));
    expect((await collect(dir)).length).toBe(3);

    const repo = await freshDir('models--org--m');
    await mkdir(join(repo, 'blobs'));
    await mkdir(join(repo, 'snapshots', 'abc123'), { recursive: true });
    const snap = join(repo, 'snapshots', 'abc123');
    await writeSafetensors(join(repo, 'blobs', 'f00d'), [tensor('x', [1])]);
    await symlink('../../blobs/f00d', join(snap, 'model-1.safetensors'));
    await writeFile(join(snap, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'model-1.safetensors' } }));
    expect((await collect(snap)).map((t) => t.name)).toEqual(['x']);
  });
});

describe('a hostile or inconsistent index is E_SAFETENSORS naming the index', () => {
  const indexOf = (dir: string) => join(dir, 'model.safetensors.index.json');

  it.each([
    ['a ../ path', '../etc/passwd'],
    ['an absolute path', '/etc/passwd'],
    ['a sub-folder path', 'sub/a.safetensors'],
    ['a backslash path', '..\\a.safetensors'],
    ['"..", literally', '..'],
    ['an empty name', ''],
  ])('shard named by %s', async (_label, shard) => {
    const dir = await shardedDir({ x: shard, y: 'a.safetensors', z: 'b.safetensors' });
    await expectCasspecError(listWeightFiles(dir), 'E_SAFETENSORS', indexOf(dir), 'plain file name');
  });

  it('a symlink that escapes the folder', async () => {
    const outside = await freshDir('outside');
    await writeSafetensors(join(outside, 'secret.safetensors'), [tensor('x', [1, 2])]);
    const dir = await shardedDir({ x: 'evil.safetensors', y: 'a.safetensors', z: 'b.safetensors' });
    await symlink(join(outside, 'secret.safetensors'), join(dir, 'evil.safetensors'));
    await expectCasspecError(listWeightFiles(dir), 'E_SAFETENSORS', indexOf(dir), 'evil.safetensors', 'outside the model folder');
  });

  it('a shard that does not exist', async () => {
    const dir = await shardedDir({ x: 'a.safetensors', y: 'a.safetensors', z: 'c.safetensors' });
    await expectCasspecError(listWeightFiles(dir), 'E_SAFETENSORS', indexOf(dir), 'c.safetensors', 'does not exist');
  });

  it('a tensor listed in the wrong shard', async () => {
    const dir = await shardedDir({ x: 'a.safetensors', y: 'b.safetensors', z: 'b.safetensors' });
    await expectCasspecError(collect(dir), 'E_SAFETENSORS', indexOf(dir), "'y'", 'b.safetensors', 'in a.safetensors');
  });

  it('a tensor listed but absent everywhere', async () => {
    const dir = await shardedDir({ x: 'a.safetensors', y: 'a.safetensors', z: 'b.safetensors', w: 'b.safetensors' });
    await expectCasspecError(collect(dir), 'E_SAFETENSORS', indexOf(dir), "'w'");
  });

  it('the same tensor in two shards', async () => {
    const dir = await shardedDir();
    await writeSafetensors(join(dir, 'b.safetensors'), [tensor('z', [4]), tensor('x', [9, 9])]);
    await expectCasspecError(collect(dir), 'E_SAFETENSORS', "'x'", 'a.safetensors', 'b.safetensors');
  });

  it.each([
    ['weight_map missing', { metadata: {} }, 'weight_map'],
    ['weight_map a list', { weight_map: ['a.safetensors'] }, 'weight_map'],
    ['weight_map empty', { weight_map: {} }, 'empty'],
    ['a non-string shard', { weight_map: { x: 3 } }, "weight_map['x']"],
  ])('%s', async (_label, index, fragment) => {
    const dir = await shardedDir();
    await writeFile(indexOf(dir), JSON.stringify(index));
    await expectCasspecError(listWeightFiles(dir), 'E_SAFETENSORS', indexOf(dir), fragment);
  });

  it('malformed index JSON', async () => {
    const dir = await shardedDir();
    await writeFile(indexOf(dir), '{"weight_map": ');
    await expectCasspecError(listWeightFiles(dir), 'E_SAFETENSORS', indexOf(dir), 'malformed JSON');
  });

  it('a folder without weights', async () => {
    const dir = await freshDir('none');
    await writeFile(join(dir, 'pytorch_model.bin'), 'x');
    await expectCasspecError(listWeightFiles(dir), 'E_SAFETENSORS', dir, 'pytorch_model.bin');
  });
});
