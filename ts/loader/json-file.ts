// Reads a small JSON file defensively: size-capped before parsing, every failure a CasspecError.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { CasspecError, type ErrorCode } from '../errors.js';

/**
 * Read-only, and non-blocking where the platform has it: opening a FIFO (or a symlink to one) in
 * blocking mode waits for a writer forever, pinning a libuv thread; with O_NONBLOCK the open
 * returns and the fstat() check below refuses anything that is not a regular file. Regular files
 * ignore the flag.
 */
export const READ_FLAGS = constants.O_NONBLOCK !== undefined ? constants.O_RDONLY | constants.O_NONBLOCK : 'r';

export interface JsonFileOptions {
  /** Error code for every failure (missing, too big, unreadable, malformed). */
  code: ErrorCode;
  /** Files larger than this are rejected before being read. */
  maxBytes: number;
  /** When true a missing file yields `undefined` instead of an error. */
  optional?: boolean;
}

/** Parses `path` as JSON; the error names the path. */
export async function readJsonFile(path: string, opts: JsonFileOptions): Promise<unknown> {
  let fh;
  try {
    fh = await open(path, READ_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if ((code === 'ENOENT' || code === 'ENOTDIR') && opts.optional) return undefined;
    const why = code === 'ENOENT' || code === 'ENOTDIR' ? 'not found' : `cannot be opened (${(e as Error).message})`;
    throw new CasspecError(opts.code, `${path}: ${why}`, { cause: e });
  }
  let text: string;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new CasspecError(opts.code, `${path}: is not a regular file`);
    if (st.size > opts.maxBytes)
      throw new CasspecError(opts.code, `${path}: ${st.size} bytes is larger than the ${opts.maxBytes}-byte limit for this file`);
    text = await fh.readFile({ encoding: 'utf8' });
  } catch (e) {
    if (e instanceof CasspecError) throw e;
    throw new CasspecError(opts.code, `${path}: cannot be read (${(e as Error).message})`, { cause: e });
  } finally {
    await fh.close();
  }
  return parseJson(text, path, opts.code);
}

/** JSON.parse with the file named in the error. */
export function parseJson(text: string, path: string, code: ErrorCode): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CasspecError(code, `${path}: malformed JSON (${(e as Error).message})`, { cause: e });
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
