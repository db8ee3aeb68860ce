// A safetensors reader that trusts nothing in the file: the header is bounded and validated in
// full (dtypes, shapes, offsets, sizes, overlaps, truncation) before any tensor is read, and each
// tensor is read on its own at its absolute offset, so multi-GB files never sit in memory at once.
//
// Format: u64 little-endian header length N, N bytes of JSON header, then the data section.
// Header: { "__metadata__"?: {string: string}, name: { dtype, shape, data_offsets: [begin, end] } }
// with offsets relative to the first byte after the header.
import { open, type FileHandle } from 'node:fs/promises';
import { CasspecError } from '../errors.js';
import { isPlainObject, READ_FLAGS } from './json-file.js';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16';

export interface TensorEntry {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte offsets within the data section (relative to dataStart). */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorEntry>;
  readonly metadata: Readonly<Record<string, string>>;
  /** Absolute file offset of the data section. */
  readonly dataStart: number;
  /** Reads one tensor's bytes (a fresh buffer). */
  read(name: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

export const MAX_HEADER_BYTES = 100 * 1024 * 1024;
export const DTYPE_SIZE: Readonly<Record<SafetensorsDType, number>> = { F32: 4, F16: 2, BF16: 2 };
// One read() call moves at most this much (the OS caps single reads near 2 GiB).
const READ_CHUNK = 1 << 30;

const bad = (path: string, msg: string) => new CasspecError('E_SAFETENSORS', `${path}: ${msg}`);

/** Opens and validates a safetensors file; close() it when done. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, READ_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'not found' : `cannot be opened (${(e as Error).message})`;
    throw new CasspecError('E_SAFETENSORS', `${path}: ${why}`, { cause: e });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw bad(path, 'is not a regular file');
    const { header, dataStart } = await readHeader(fh, path, st.size);
    const { tensors, metadata } = validateHeader(header, path, st.size - dataStart);
    return new File(fh, path, tensors, metadata, dataStart);
  } catch (e) {
    await fh.close().catch(() => {});
    if (e instanceof CasspecError) throw e;
    throw new CasspecError('E_SAFETENSORS', `${path}: cannot be read (${(e as Error).message})`, { cause: e });
  }
}

async function readHeader(fh: FileHandle, path: string, fileSize: number): Promise<{ header: unknown; dataStart: number }> {
  if (fileSize < 8) throw bad(path, `truncated: ${fileSize} bytes is too short for the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  await readExactly(fh, lenBuf, 0, path);
  const len = lenBuf.readBigUInt64LE(0);
  if (len > BigInt(MAX_HEADER_BYTES)) throw bad(path, `header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(len);
  if (n > fileSize - 8) throw bad(path, `header length ${n} is larger than the ${fileSize - 8} bytes after it (truncated file?)`);
  if (n < 2) throw bad(path, `header length ${n} is too short for a JSON object`);
  const buf = Buffer.alloc(n);
  await readExactly(fh, buf, 8, path);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch (e) {
    throw new CasspecError('E_SAFETENSORS', `${path}: header is not valid UTF-8`, { cause: e });
  }
  try {
    return { header: JSON.parse(text), dataStart: 8 + n };
  } catch (e) {
    throw new CasspecError('E_SAFETENSORS', `${path}: header is malformed JSON (${(e as Error).message})`, { cause: e });
  }
}

function validateHeader(
  header: unknown,
  path: string,
  dataLen: number,
): { tensors: Map<string, TensorEntry>; metadata: Record<string, string> } {
  if (!isPlainObject(header)) throw bad(path, 'header is not a JSON object');
  const tensors = new Map<string, TensorEntry>();
  const metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(v)) throw bad(path, '__metadata__ is not an object');
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== 'string') throw bad(path, `__metadata__.${k} is not a string`);
        metadata[k] = s;
      }
      continue;
    }
    tensors.set(name, validateEntry(name, v, path, dataLen));
  }
  checkOverlaps(tensors, path);
  return { tensors, metadata };
}

function validateEntry(name: string, v: unknown, path: string, dataLen: number): TensorEntry {
  const where = `tensor '${name}'`;
  if (!isPlainObject(v)) throw bad(path, `${where} is not an object`);
  const { dtype, shape, data_offsets: offs } = v;
  if (typeof dtype !== 'string') throw bad(path, `${where}: dtype is missing or not a string`);
  if (!Object.hasOwn(DTYPE_SIZE, dtype))
    throw new CasspecError('E_DTYPE', `${path}: ${where} has unsupported dtype '${dtype}' (supported: F32, F16, BF16)`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw bad(path, `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0))
    throw bad(path, `${where}: data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(offs)}`);
  const [begin, end] = offs as [number, number];
  if (begin > end) throw bad(path, `${where}: data_offsets begin ${begin} > end ${end}`);
  if (end > dataLen) throw bad(path, `${where}: data_offsets end ${end} is past the ${dataLen}-byte data section (truncated file?)`);
  const size = DTYPE_SIZE[dtype as SafetensorsDType];
  const want = (shape as number[]).reduce((p: bigint, d: number) => p * BigInt(d), 1n) * BigInt(size);
  if (BigInt(end - begin) !== want)
    throw bad(path, `${where}: data_offsets span ${end - begin} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${want}`);
  return { dtype: dtype as SafetensorsDType, shape: [...(shape as number[])], begin, end };
}

function checkOverlaps(tensors: Map<string, TensorEntry>, path: string): void {
  const spans = [...tensors].filter(([, t]) => t.end > t.begin).sort((a, b) => a[1].begin - b[1].begin);
  for (let i = 1; i < spans.length; i++) {
    const [prevName, prev] = spans[i - 1];
    const [name, cur] = spans[i];
    if (cur.begin < prev.end)
      throw bad(path, `tensors '${prevName}' [${prev.begin}, ${prev.end}) and '${name}' [${cur.begin}, ${cur.end}) overlap`);
  }
}

async function readExactly(fh: FileHandle, buf: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const len = Math.min(buf.length - done, READ_CHUNK);
    const { bytesRead } = await fh.read(buf, done, len, position + done);
    if (bytesRead === 0) throw bad(path, `unexpected end of file at byte ${position + done} (file truncated or changed while reading)`);
    done += bytesRead;
  }
}

class File implements SafetensorsFile {
  private closed = false;
  constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    readonly tensors: ReadonlyMap<string, TensorEntry>,
    readonly metadata: Readonly<Record<string, string>>,
    readonly dataStart: number,
  ) {}

  async read(name: string): Promise<Uint8Array> {
    if (this.closed) throw new CasspecError('E_INVALID_ARG', `${this.path}: read after close`);
    const t = this.tensors.get(name);
    if (!t) throw new CasspecError('E_MISSING_TENSOR', `${this.path}: no tensor named '${name}'`);
    const out = new Uint8Array(t.end - t.begin);
    try {
      await readExactly(this.fh, out, this.dataStart + t.begin, this.path);
    } catch (e) {
      if (e instanceof CasspecError) throw e;
      throw new CasspecError('E_SAFETENSORS', `${this.path}: reading '${name}' failed (${(e as Error).message})`, { cause: e });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}
