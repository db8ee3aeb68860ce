// Finds a model folder's safetensors files (one model.safetensors, or shards named by
// model.safetensors.index.json) and streams their tensors one at a time. The index is untrusted:
// shard names must be plain file names that stay inside the folder, and it must agree with the
// shards' own headers.
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { CasspecError } from '../errors.js';
import { isPlainObject, readJsonFile } from './json-file.js';
import { openSafetensors, type SafetensorsDType, type SafetensorsFile } from './safetensors.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

export interface WeightFiles {
  /** Absolute paths of the safetensors files, in load order. */
  files: string[];
  /** The index file, when the weights are sharded. */
  indexFile?: string;
  /** From the index: tensor name -> absolute shard path. */
  weightMap?: Map<string, string>;
}

export interface LoadedTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array;
  /** The file it came from. */
  file: string;
}

/** model.safetensors when present, else the shards listed by model.safetensors.index.json. */
export async function listWeightFiles(dir: string): Promise<WeightFiles> {
  const single = join(dir, SINGLE_FILE);
  if (await isFile(single)) return { files: [single] };
  const indexFile = join(dir, INDEX_FILE);
  const index = await readJsonFile(indexFile, { code: 'E_SAFETENSORS', maxBytes: MAX_INDEX_BYTES, optional: true });
  if (index === undefined) {
    const hint = (await isFile(join(dir, 'pytorch_model.bin'))) ? ' (only safetensors weights are supported, not pytorch_model.bin)' : '';
    throw new CasspecError('E_SAFETENSORS', `${dir}: no ${SINGLE_FILE} or ${INDEX_FILE} found${hint}`);
  }
  const bad = (msg: string) => new CasspecError('E_SAFETENSORS', `${indexFile}: ${msg}`);
  if (!isPlainObject(index) || !isPlainObject(index.weight_map)) throw bad('weight_map is missing or not an object');
  const entries = Object.entries(index.weight_map);
  if (entries.length === 0) throw bad('weight_map is empty');

  const roots = await allowedRoots(dir);
  const shardPaths = new Map<string, string>(); // shard name -> absolute path
  const weightMap = new Map<string, string>();
  for (const [tensor, shard] of entries) {
    if (typeof shard !== 'string') throw bad(`weight_map['${tensor}'] is not a string`);
    let path = shardPaths.get(shard);
    if (path === undefined) {
      path = await checkShard(dir, shard, roots, indexFile);
      shardPaths.set(shard, path);
    }
    weightMap.set(tensor, path);
  }
  return { files: [...shardPaths.values()].sort(), indexFile, weightMap };
}

/** Every tensor of the model, one at a time, each file opened once (in file, then offset order). */
export async function* iterateTensors(dir: string): AsyncGenerator<LoadedTensor> {
  const wf = await listWeightFiles(dir);
  const open: SafetensorsFile[] = [];
  try {
    for (const f of wf.files) open.push(await openSafetensors(f));
    checkAgainstIndex(open, wf);
    for (const sf of open) {
      const names = [...sf.tensors].sort((a, b) => a[1].begin - b[1].begin);
      for (const [name, t] of names) {
        yield { name, dtype: t.dtype, shape: [...t.shape], data: await sf.read(name), file: sf.path };
      }
      await sf.close();
    }
  } finally {
    await Promise.all(open.map((f) => f.close().catch(() => {})));
  }
}

function checkAgainstIndex(files: SafetensorsFile[], wf: WeightFiles): void {
  const owner = new Map<string, string>();
  for (const f of files)
    for (const name of f.tensors.keys()) {
      const prev = owner.get(name);
      if (prev !== undefined) throw new CasspecError('E_SAFETENSORS', `tensor '${name}' appears in both ${prev} and ${f.path}`);
      owner.set(name, f.path);
    }
  if (!wf.weightMap) return;
  for (const [name, path] of wf.weightMap)
    if (owner.get(name) !== path)
      throw new CasspecError(
        'E_SAFETENSORS',
        `${wf.indexFile}: lists tensor '${name}' in ${basename(path)}, but that file does not hold it` +
          (owner.has(name) ? ` (it is in ${basename(owner.get(name)!)})` : ''),
      );
}

// Shards must resolve inside the model folder. A Hugging Face hub cache snapshot
// (<repo>/snapshots/<rev>/) holds symlinks into <repo>/blobs/, which is allowed too.
async function allowedRoots(dir: string): Promise<string[]> {
  const real = await realpath(dir);
  const roots = [real];
  if (basename(dirname(real)) === 'snapshots') {
    const blobs = join(dirname(dirname(real)), 'blobs');
    roots.push(await realpath(blobs).catch(() => blobs));
  }
  return roots;
}

async function checkShard(dir: string, shard: string, roots: string[], indexFile: string): Promise<string> {
  const bad = (msg: string) => new CasspecError('E_SAFETENSORS', `${indexFile}: shard '${shard}' ${msg}`);
  if (shard === '' || shard === '.' || shard === '..' || isAbsolute(shard) || /[/\\\0]/.test(shard))
    throw bad('must be a plain file name inside the model folder');
  const path = join(dir, shard);
  let real: string;
  try {
    real = await realpath(path);
  } catch (e) {
    throw new CasspecError('E_SAFETENSORS', `${indexFile}: shard '${shard}' does not exist (${path})`, { cause: e });
  }
  if (!roots.some((r) => real.startsWith(r.endsWith(sep) ? r : r + sep)))
    throw bad(`resolves to ${real}, outside the model folder`);
  if (!(await isFile(real))) throw bad('is not a regular file');
  return path;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
