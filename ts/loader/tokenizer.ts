// tokenizer.json (+ tokenizer_config.json) -> a small text <-> ids wrapper with a streaming
// detokenizer, on top of @huggingface/tokenizers.
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { CasspecError } from '../errors.js';
import { isPlainObject, readJsonFile } from './json-file.js';
import { createStreamDecoder, type StreamDecoder } from './stream-decoder.js';

export type { StreamDecoder } from './stream-decoder.js';

export interface TextTokenizer {
  /** Text -> ids; prepends bos only when tokenizer_config.json has add_bos_token: true. */
  encode(text: string): number[];
  /** Ids -> text (special tokens included). */
  decode(ids: number[]): string;
  /** A fresh incremental detokenizer for one generated stream. */
  createDecoder(): StreamDecoder;
  /** From config.json / generation_config.json eos_token_id and tokenizer_config.json eos_token. */
  readonly eosTokenIds: number[];
  readonly bosTokenId?: number;
  /** Largest token id + 1, added tokens included. */
  readonly vocabSize: number;
}

const MAX_TOKENIZER_BYTES = 256 * 1024 * 1024;
const MAX_SMALL_JSON = 16 * 1024 * 1024;

export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const file = join(dir, 'tokenizer.json');
  const json = await readJsonFile(file, { code: 'E_TOKENIZER', maxBytes: MAX_TOKENIZER_BYTES });
  if (!isPlainObject(json) || !isPlainObject(json.model))
    throw new CasspecError('E_TOKENIZER', `${file}: not a tokenizers JSON file (no "model" object)`);
  checkTokenIds(json, file);
  const cfgFile = join(dir, 'tokenizer_config.json');
  const cfg = (await readJsonFile(cfgFile, { code: 'E_TOKENIZER', maxBytes: MAX_SMALL_JSON, optional: true })) ?? {};
  if (!isPlainObject(cfg)) throw new CasspecError('E_TOKENIZER', `${cfgFile}: expected a JSON object`);

  let tok: Tokenizer;
  let vocab: Map<string, number>;
  try {
    tok = new Tokenizer(json, cfg);
    vocab = tok.get_vocab(true);
    tok.encode('casspec', { add_special_tokens: false }); // surface lazy failures now
  } catch (e) {
    throw new CasspecError('E_TOKENIZER', `${file}: the tokenizer could not be built (${(e as Error).message})`, { cause: e });
  }
  let vocabSize = 0;
  for (const id of vocab.values()) if (id + 1 > vocabSize) vocabSize = id + 1;

  const tokenId = (key: string): number | undefined => {
    const v = cfg[key];
    if (v === undefined || v === null) return undefined;
    const content = typeof v === 'string' ? v : isPlainObject(v) && typeof v.content === 'string' ? v.content : undefined;
    if (content === undefined) throw new CasspecError('E_TOKENIZER', `${cfgFile}: ${key} must be a string, got ${JSON.stringify(v)}`);
    const id = tok.token_to_id(content);
    if (id === undefined) throw new CasspecError('E_TOKENIZER', `${cfgFile}: ${key} ${JSON.stringify(content)} is not in the vocabulary`);
    return id;
  };
  const model = await modelTokenIds(dir);
  const eosTokenIds = [...model.eos];
  const eos = tokenId('eos_token');
  if (eos !== undefined && !eosTokenIds.includes(eos)) eosTokenIds.push(eos);
  const bosTokenId = tokenId('bos_token') ?? model.bos;
  const addBos = cfg.add_bos_token === true && bosTokenId !== undefined;

  const encode = (text: string): number[] => {
    if (typeof text !== 'string') throw new CasspecError('E_INVALID_ARG', 'encode expects a string');
    const ids: number[] = guarded(file, "encode", () => tok.encode(text, { add_special_tokens: false }).ids);
    // A malformed vocabulary can map pieces to nothing: never hand out a non-id.
    if (!ids.every((id) => Number.isSafeInteger(id) && id >= 0 && id <= MAX_TOKEN_ID))
      throw new CasspecError('E_TOKENIZER', `${file}: encoding produced ids outside the vocabulary`);
    return addBos ? [bosTokenId, ...ids] : ids;
  };
  // transformers >= 4.45 defaults clean_up_tokenization_spaces to false; tokenizers.js to true.
  const cleanUp = cfg.clean_up_tokenization_spaces === true;
  // (tokenizers.js refuses an empty list)
  const decode = (ids: number[]): string =>
    ids.length === 0 ? '' : guarded(file, 'decode', () => tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: cleanUp }));
  return {
    encode,
    decode,
    createDecoder: () => createStreamDecoder(decode),
    eosTokenIds,
    bosTokenId,
    vocabSize,
  };
}

/** tokenizers.js failures at encode/decode time (a hostile tokenizer.json can cause them) are E_TOKENIZER. */
function guarded<T>(file: string, what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof CasspecError) throw e;
    throw new CasspecError('E_TOKENIZER', `${file}: ${what} failed (${(e as Error)?.message ?? String(e)})`, { cause: e });
  }
}

/** Largest token id accepted (the native engine's vocabulary bound, config.cpp). */
export const MAX_TOKEN_ID = (1 << 22) - 1;

// tokenizers.js sizes tables by the largest id (get_vocab walks 0..max), so one id of 2^31 in a
// hostile file costs minutes of main-thread time and gigabytes: check ids before building it.
function checkTokenIds(json: Record<string, unknown>, file: string): void {
  const bad = (what: string, v: unknown) =>
    new CasspecError('E_TOKENIZER', `${file}: ${what} must be a token id in 0..${MAX_TOKEN_ID}, got ${JSON.stringify(v)?.slice(0, 80)}`);
  const model = json.model as Record<string, unknown>;
  const vocab = model.vocab;
  if (isPlainObject(vocab)) {
    for (const [k, id] of Object.entries(vocab))
      if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > MAX_TOKEN_ID) throw bad(`model.vocab[${JSON.stringify(k).slice(0, 40)}]`, id);
  } else if (Array.isArray(vocab)) {
    if (vocab.length > MAX_TOKEN_ID + 1) throw new CasspecError('E_TOKENIZER', `${file}: model.vocab has ${vocab.length} entries (at most ${MAX_TOKEN_ID + 1})`);
  }
  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw new CasspecError('E_TOKENIZER', `${file}: added_tokens must be a list`);
    for (const t of added) {
      const id = isPlainObject(t) ? t.id : undefined;
      if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > MAX_TOKEN_ID) throw bad('added_tokens[].id', id);
    }
  }
}

// eos/bos ids from config.json and generation_config.json, read leniently: a tokenizer folder need
// not hold a Llama config (loadDummy's tokenizerDir), but ids that are present must be integers.
async function modelTokenIds(dir: string): Promise<{ eos: number[]; bos?: number }> {
  const eos: number[] = [];
  let bos: number | undefined;
  for (const name of ['config.json', 'generation_config.json']) {
    const file = join(dir, name);
    const j = await readJsonFile(file, { code: 'E_CONFIG', maxBytes: MAX_SMALL_JSON, optional: true });
    if (!isPlainObject(j)) continue;
    const ids = (key: string): number[] => {
      const v = j[key];
      if (v === undefined || v === null) return [];
      const list = Array.isArray(v) ? v : [v];
      if (!list.every((id) => Number.isSafeInteger(id) && id >= 0))
        throw new CasspecError('E_CONFIG', `${file}: ${key} must be token ids, got ${JSON.stringify(v)}`);
      return list as number[];
    };
    for (const id of ids('eos_token_id')) if (!eos.includes(id)) eos.push(id);
    bos ??= ids('bos_token_id')[0];
  }
  return { eos, bos };
}
