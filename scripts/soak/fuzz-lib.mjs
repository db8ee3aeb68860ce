// Loader fuzzing shared by test/fuzz-loaders.test.ts (a fast deterministic subset, on ts/ sources)
// and scripts/soak/fuzz.mjs (>= 100,000 cases, on the compiled dist/). Plain JS so both can load it.
//
// A corpus of small, valid model folders is mutated (bit flips, truncations, header-length edits,
// structured edits of the safetensors header, config.json, model.safetensors.index.json,
// tokenizer.json, tokenizer_config.json, generation_config.json, path and symlink tricks, special
// files) and each mutated folder goes through the real loaders and, for a share of the cases,
// through Model.load (the native setTensor / createContext path) and a 2-token generation.
//
// Every case must end in success or a CasspecError. Anything else is reported as unexpected.
// Crashes and hangs are the caller's to detect (the soak runs cases in child processes).
import { mkdir, rm, symlink, writeFile, readFile, copyFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

// ---------------------------------------------------------------------------------------------
// Seeded randomness (mulberry32): case i of seed s is the same case on every machine.

export function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p,
    pick: (arr) => arr[Math.floor(next() * arr.length)],
  };
  return r;
}

export function caseSeed(seed, i) {
  // splitmix-ish: unrelated streams for neighbouring cases
  let z = (seed * 0x9e3779b1 + i * 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x7feb352d) >>> 0;
  z = Math.imul(z ^ (z >>> 15), 0x846ca68b) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Corpus: a tiny Llama (vocab 320 to match a cut-down copy of pycode-tiny's byte-level BPE).

const VOCAB = 320;
const CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  attention_bias: false,
  mlp_bias: false,
  hidden_act: 'silu',
  bos_token_id: 0,
  eos_token_id: 0,
  dtype: 'float32',
  head_dim: 8,
  hidden_size: 16,
  intermediate_size: 32,
  max_position_embeddings: 64,
  num_attention_heads: 2,
  num_hidden_layers: 1,
  num_key_value_heads: 1,
  rms_norm_eps: 1e-5,
  rope_parameters: { rope_theta: 10000, rope_type: 'default' },
  tie_word_embeddings: false,
  vocab_size: VOCAB,
};

function tensorList() {
  const H = 16, Q = 16, KV = 8, F = 32, V = VOCAB;
  const p = 'model.layers.0.';
  return [
    ['model.embed_tokens.weight', [V, H]],
    ['model.norm.weight', [H]],
    ['lm_head.weight', [V, H]],
    [p + 'input_layernorm.weight', [H]],
    [p + 'self_attn.q_proj.weight', [Q, H]],
    [p + 'self_attn.k_proj.weight', [KV, H]],
    [p + 'self_attn.v_proj.weight', [KV, H]],
    [p + 'self_attn.o_proj.weight', [H, Q]],
    [p + 'post_attention_layernorm.weight', [H]],
    [p + 'mlp.gate_proj.weight', [F, H]],
    [p + 'mlp.up_proj.weight', [F, H]],
    [p + 'mlp.down_proj.weight', [H, F]],
  ];
}

function tensorBytes(name, shape, dtype, rand) {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = new Float32Array(n);
  const isNorm = name.endsWith('norm.weight');
  for (let i = 0; i < n; i++) f[i] = isNorm ? 1 + (rand.next() - 0.5) * 0.2 : (rand.next() - 0.5) * 0.3;
  if (dtype === 'F32') return new Uint8Array(f.buffer);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = u[i] >>> 16; // BF16 by truncation (finite inputs)
  return new Uint8Array(out.buffer);
}

export function encodeSafetensors(header, data, lengthOverride) {
  let json = typeof header === 'string' ? header : JSON.stringify(header);
  while (Buffer.byteLength(json) % 8 !== 0) json += ' ';
  const h = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  return Buffer.concat([len, h, data ?? Buffer.alloc(0)]);
}

function buildSafetensors(entries, dtype, rand) {
  const header = { __metadata__: { format: 'pt' } };
  const chunks = [];
  let off = 0;
  for (const [name, shape] of entries) {
    const b = tensorBytes(name, shape, dtype, rand);
    header[name] = { dtype, shape, data_offsets: [off, off + b.length] };
    chunks.push(b);
    off += b.length;
  }
  return encodeSafetensors(header, Buffer.concat(chunks));
}

/** Cuts pycode-tiny's tokenizer.json down to ids < 320 (a valid byte-level BPE, about 10 KB). */
export function smallTokenizer(fullJsonText) {
  const t = JSON.parse(fullJsonText);
  const vocab = {};
  for (const [k, v] of Object.entries(t.model.vocab)) if (v < VOCAB) vocab[k] = v;
  const merges = [];
  for (const m of t.model.merges) {
    const [a, b] = Array.isArray(m) ? m : m.split(' ');
    if (a in vocab && b in vocab && a + b in vocab) merges.push(m);
  }
  t.model.vocab = vocab;
  t.model.merges = merges;
  t.added_tokens = t.added_tokens.filter((x) => x.id < VOCAB);
  return JSON.stringify(t);
}

/**
 * Writes the corpus under root: single/ (one F32 model.safetensors) and sharded/ (BF16, two shards
 * and an index), each with config, generation config and tokenizer files, and outside/ (a valid
 * shard outside any model folder, the target of escaping symlinks). Returns the file contents.
 */
export async function buildCorpus(root, tokenizerJsonText, tokenizerConfigText) {
  const rand = makeRng(1234);
  const tok = smallTokenizer(tokenizerJsonText);
  const entries = tensorList();
  const files = {
    config: JSON.stringify(CONFIG, null, 2),
    shardedConfig: JSON.stringify({ ...CONFIG, dtype: 'bfloat16' }, null, 2),
    generation: JSON.stringify({ bos_token_id: 0, eos_token_id: 0 }),
    tokenizer: tok,
    tokenizerConfig: tokenizerConfigText,
    single: buildSafetensors(entries, 'F32', rand),
    shard1: buildSafetensors(entries.slice(0, 3), 'BF16', rand),
    shard2: buildSafetensors(entries.slice(3), 'BF16', rand),
  };
  const weightMap = {};
  for (const [n] of entries.slice(0, 3)) weightMap[n] = 'model-00001-of-00002.safetensors';
  for (const [n] of entries.slice(3)) weightMap[n] = 'model-00002-of-00002.safetensors';
  files.index = JSON.stringify({ metadata: { total_size: files.shard1.length + files.shard2.length }, weight_map: weightMap }, null, 2);
  await mkdir(join(root, 'outside'), { recursive: true });
  await writeFile(join(root, 'outside', 'shard.safetensors'), files.shard2);
  return { root, files };
}

// ---------------------------------------------------------------------------------------------
// Mutations.

const INTERESTING_NUMBERS = [0, -1, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 65, 320, 4096, 65535, 65536, 2 ** 22, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, 0.5, 1.5, -0, 1e-300];
const INTERESTING_VALUES = [...INTERESTING_NUMBERS, '16', '', 'x', true, false, null, [], {}, [16], [1, 2], { a: 1 }, 'F32'];
// A fresh copy each time: mutations edit values in place, and the shared ones must stay pristine.
const pickValue = (r) => structuredClone(r.pick(INTERESTING_VALUES));
const INTERESTING_U64 = [0n, 1n, 2n, 7n, 8n, 9n, 255n, 4096n, 100n * 1024n * 1024n, 100n * 1024n * 1024n + 1n, 2n ** 31n, 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];

function mutateBytes(buf, r, hotEnd) {
  const b = Buffer.from(buf);
  const kind = r.pick(['flip', 'flip', 'flip', 'byte', 'truncate', 'extend', 'zero-run', 'dup-run']);
  const pos = () => (r.chance(0.8) && hotEnd > 0 ? r.int(Math.min(hotEnd, b.length) || 1) : r.int(b.length || 1));
  switch (kind) {
    case 'flip': {
      const n = 1 + r.int(8);
      for (let i = 0; i < n && b.length; i++) b[pos()] ^= 1 << r.int(8);
      return { bytes: b, what: `flip x${n}` };
    }
    case 'byte': {
      const n = 1 + r.int(4);
      for (let i = 0; i < n && b.length; i++) b[pos()] = r.pick([0, 0xff, 0x7f, 0x80, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x30, 0x39, 0x2d, r.int(256)]);
      return { bytes: b, what: `bytes x${n}` };
    }
    case 'truncate': {
      const at = pos();
      return { bytes: b.subarray(0, at), what: `truncate@${at}` };
    }
    case 'extend': {
      const extra = Buffer.alloc(1 + r.int(64));
      for (let i = 0; i < extra.length; i++) extra[i] = r.int(256);
      return { bytes: Buffer.concat([b, extra]), what: `extend+${extra.length}` };
    }
    case 'zero-run': {
      const at = pos(), len = 1 + r.int(32);
      b.fill(0, at, Math.min(b.length, at + len));
      return { bytes: b, what: `zero@${at}+${len}` };
    }
    default: {
      const from = pos(), to = pos(), len = 1 + r.int(32);
      b.copy(b, to, from, Math.min(b.length, from + len));
      return { bytes: b, what: `dup ${from}->${to}+${len}` };
    }
  }
}

function setOwn(o, k, v) {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function mutateHeader(header, r, dataLen) {
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = names.length ? r.pick(names) : 'x';
  const t = header[name] && typeof header[name] === 'object' ? header[name] : {};
  const offs = Array.isArray(t.data_offsets) ? t.data_offsets : [0, 0];
  const [b, e] = offs;
  const other = header[r.pick(names)] ?? {};
  const kind = r.int(17);
  switch (kind) {
    case 0:
      t.dtype = r.pick(['F32', 'F16', 'BF16', 'F64', 'I8', 'U8', 'I64', 'BOOL', 'F8_E4M3', 'f32', '', null, 1, {}, ['F32']]);
      return `dtype(${name})=${JSON.stringify(t.dtype)}`;
    case 1: {
      const s = Array.isArray(t.shape) ? t.shape : [];
      t.shape = r.pick([[], [0], [-1], [1.5], ['1'], [2 ** 53], [2 ** 31, 2 ** 31], [1e308], [...s, 1], s.slice(1), [...s].reverse(), [(s[0] ?? 0) + 1, ...s.slice(1)], [s.reduce((a, c) => a * c, 1)], null, 'x', {}, [null]]);
      return `shape(${name})=${JSON.stringify(t.shape)}`;
    }
    case 2:
      t.data_offsets = r.pick([[e, b], [b, b], [b - 4, e - 4], [b, e + 4], [b + 4, e + 4], [0, e - b], [0, 2 ** 53], [-1, e], [b + 0.5, e], [b], [b, e, 0], null, [String(b), String(e)], [b, dataLen + 1], [dataLen, dataLen + (e - b)], other.data_offsets, [2 ** 53 - 1, 2 ** 53 + 1], [1e308, 1e308]]);
      return `offsets(${name})=${JSON.stringify(t.data_offsets)}`;
    case 3: {
      const k = r.pick(['dtype', 'shape', 'data_offsets']);
      delete t[k];
      return `delete ${name}.${k}`;
    }
    case 4:
      delete header[name];
      return `delete tensor ${name}`;
    case 5: {
      const to = r.pick(['model.layers.99.mlp.up_proj.weight', '', '__proto__', 'constructor', 'toString', 'model.embed_tokens.weight ', 'a'.repeat(10000), 'model.layers.0.self_attn.q_proj.weight\u0000', 'lm_head.weight', 'model.norm.weight']);
      const v = header[name];
      delete header[name];
      setOwn(header, to, v);
      return `rename ${name} -> ${JSON.stringify(to.slice(0, 40))}`;
    }
    case 6: {
      setOwn(header, name + '.copy', JSON.parse(JSON.stringify(t)));
      return `duplicate ${name}`;
    }
    case 7:
      header.__metadata__ = r.pick([null, 1, [], { a: 1 }, { a: {} }, 'x', { format: 'pt', extra: 'y'.repeat(1000) }, { format: null }]);
      return `metadata=${JSON.stringify(header.__metadata__)?.slice(0, 40)}`;
    case 8:
      setOwn(header, r.pick(['x', 'junk', '0']), pickValue(r));
      return 'extra key';
    case 9:
      return { replace: r.pick([[], 1, null, 'str', true, [header]]), what: 'header not an object' };
    case 10:
      header[name] = pickValue(r);
      return `entry(${name})=${JSON.stringify(header[name])}`;
    case 11: {
      // overlap with another tensor of the same size
      const o = other.data_offsets;
      if (Array.isArray(o)) t.data_offsets = [o[0], o[0] + (e - b)];
      return `overlap ${name}`;
    }
    case 12:
      t.shape = (Array.isArray(t.shape) ? t.shape : [1]).map((d) => (r.chance(0.5) ? d * 2 : d));
      return `scale shape ${name}`;
    case 13:
      t.dtype = t.dtype === 'F32' ? 'F16' : 'F32';
      return `swap dtype ${name}`;
    case 14:
      for (const n of names) if (header[n] && typeof header[n] === 'object') header[n].dtype = 'F16';
      return 'all F16';
    case 15:
      t.extra = pickValue(r);
      return `extra field in ${name}`;
    default: {
      let deep = 1 + r.int(3000);
      let v = 1;
      while (deep--) v = [v];
      setOwn(header, 'deep', v);
      return 'deep nesting';
    }
  }
}

function mutateJsonValue(obj, r, knownKeys) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return { replace: r.pick([{}, [], 1, null, 'x']), what: 'replace root' };
  const keys = Object.keys(obj);
  const key = r.chance(0.8) && (knownKeys.length || keys.length) ? r.pick(r.chance(0.5) && keys.length ? keys : knownKeys.length ? knownKeys : keys) : r.pick(['x', '__proto__', 'constructor']);
  const kind = r.int(6);
  if (kind === 0) {
    delete obj[key];
    return `delete ${key}`;
  }
  if (kind === 1 && obj[key] && typeof obj[key] === 'object') {
    const inner = mutateJsonValue(obj[key], r, []);
    if (inner.replace !== undefined) {
      setOwn(obj, key, inner.replace);
      return `${key}: ${inner.what}`;
    }
    return `${key}.${inner}`;
  }
  if (kind === 2) {
    const n = r.pick([1, 2, 10, 1000, 100000]);
    setOwn(obj, key, Array.from({ length: n }, (_, i) => r.chance(0.9) ? i : pickValue(r)));
    return `${key}=array(${n})`;
  }
  const v = pickValue(r);
  setOwn(obj, key, v);
  return `${key}=${JSON.stringify(v)}`;
}

function mutateJsonText(text, r) {
  const kind = r.int(9);
  switch (kind) {
    case 0:
      return { text: text.slice(0, r.int(text.length + 1)), what: 'truncate text' };
    case 1:
      return { text: '', what: 'empty' };
    case 2:
      return { text: '\ufeff' + text, what: 'BOM' };
    case 3: {
      const at = r.int(text.length + 1);
      return { text: text.slice(0, at) + r.pick(['{', '}', '[', ']', '"', ',', ':', '\\', '\u0000', 'NaN', 'Infinity', '1e999', '-', '\ud800', '//']) + text.slice(at), what: 'insert char' };
    }
    case 4:
      return { text: '['.repeat(50000) + ']'.repeat(50000), what: 'deep array' };
    case 5:
      return { text: '{"a":'.repeat(20000) + '1' + '}'.repeat(20000), what: 'deep object' };
    case 6:
      return { bytes: Buffer.from(text, 'utf16le'), what: 'utf16' };
    case 7: {
      const b = Buffer.from(text);
      for (let i = 0; i < 1 + r.int(4); i++) b[r.int(b.length || 1)] = r.pick([0xff, 0xfe, 0xc0, 0x80, 0xed]);
      return { bytes: b, what: 'invalid utf8' };
    }
    default:
      return { text: text + text, what: 'doubled' };
  }
}

const CONFIG_KEYS = Object.keys(CONFIG).concat(['rope_theta', 'rope_scaling', 'torch_dtype', 'quantization_config', 'pretraining_tp']);
const TOKENIZER_KEYS = ['model', 'added_tokens', 'normalizer', 'pre_tokenizer', 'post_processor', 'decoder', 'version', 'truncation', 'padding'];

function mutateTokenizer(tok, r) {
  const m = tok.model && typeof tok.model === 'object' && !Array.isArray(tok.model) ? tok.model : {};
  if (!m.vocab || typeof m.vocab !== 'object' || Array.isArray(m.vocab)) m.vocab = {};
  const vocabKeys = Object.keys(m.vocab);
  switch (r.int(12)) {
    case 0:
      m.type = r.pick(['BPE', 'WordPiece', 'Unigram', 'WordLevel', 'X', null, 1]);
      return `model.type=${m.type}`;
    case 1: {
      const k = r.pick(vocabKeys.length ? vocabKeys : ['a']);
      m.vocab[k] = r.pick([-1, 1e9, 2 ** 31, 1.5, '5', null, 0, 319, 320, NaN]);
      return `vocab[${k}]=${m.vocab[k]}`;
    }
    case 2:
      m.vocab = r.pick([[], 'x', null, {}, { a: 0 }]);
      return 'vocab replaced';
    case 3:
      if (Array.isArray(m.merges)) m.merges.splice(r.int(m.merges.length + 1), 0, r.pick([['a'], ['a', 'b', 'c'], 'a b', 'ab', [1, 2], null, ['zz', 'yy'], ['', ''], {}]));
      return 'merge inserted';
    case 4:
      m.merges = r.pick([null, 'x', {}, [[]]]);
      return 'merges replaced';
    case 5:
      tok.added_tokens = r.pick([null, {}, [{ id: -1, content: 'x' }], [{ id: 1e9, content: '<big>', special: true }], [{ id: 5, content: '' }], [{ content: 'x' }], [1, 2], [{ id: 0, content: null }]]);
      return 'added_tokens';
    case 6: {
      const k = r.pick(['pre_tokenizer', 'decoder', 'normalizer', 'post_processor']);
      tok[k] = r.pick([null, {}, { type: 'X' }, { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '(' }, behavior: 'Isolated' }] }, { type: 'Sequence', normalizers: [null] }, { type: 'Replace', pattern: { String: '' }, content: 'x' }, { type: 'Metaspace', replacement: '' }, { type: 'ByteLevel' }, 1, 'x']);
      return `${k}=${JSON.stringify(tok[k])}`;
    }
    case 7:
      m.unk_token = r.pick(['<unk>', null, 1, 'a']);
      m.byte_fallback = r.pick([true, false, 'x']);
      return 'unk/byte_fallback';
    case 8:
      for (let i = 0; i < 1 + r.int(5); i++) if (vocabKeys.length) delete m.vocab[r.pick(vocabKeys)];
      return 'vocab entries deleted';
    case 9:
      m.dropout = r.pick([0.5, 1, -1, 'x']);
      return 'dropout';
    case 10: {
      let d = 1 + r.int(2000);
      let v = { type: 'ByteLevel' };
      while (d--) v = { type: 'Sequence', pretokenizers: [v] };
      tok.pre_tokenizer = v;
      return 'deep pre_tokenizer';
    }
    default:
      return mutateJsonValue(tok, r, TOKENIZER_KEYS);
  }
}

// ---------------------------------------------------------------------------------------------
// One case.

export const TARGETS = ['safetensors', 'config', 'index', 'shard', 'tokenizer', 'tokenizer_config', 'generation_config', 'special'];
const TARGET_WEIGHTS = [30, 16, 14, 10, 14, 5, 5, 6];

function pickTarget(r) {
  let x = r.int(TARGET_WEIGHTS.reduce((a, b) => a + b, 0));
  for (let i = 0; i < TARGETS.length; i++) {
    if (x < TARGET_WEIGHTS[i]) return TARGETS[i];
    x -= TARGET_WEIGHTS[i];
  }
  return TARGETS[0];
}

function mutateSafetensorsFile(buf, r) {
  const hdrLen = Number(buf.readBigUInt64LE(0));
  const kind = r.int(10);
  if (kind < 3) return mutateBytes(buf, r, 8 + hdrLen);
  if (kind === 3) {
    const b = Buffer.from(buf);
    const v = r.chance(0.7) ? r.pick(INTERESTING_U64) : BigInt(hdrLen + r.pick([-9, -8, -1, 1, 8, 9, 16]));
    b.writeBigUInt64LE(v < 0n ? 0n : v, 0);
    return { bytes: b, what: `header length=${v}` };
  }
  const header = JSON.parse(buf.subarray(8, 8 + hdrLen).toString('utf8'));
  const data = buf.subarray(8 + hdrLen);
  if (kind === 9) {
    const m = mutateJsonText(JSON.stringify(header), r);
    const h = m.bytes ?? Buffer.from(m.text);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    return { bytes: Buffer.concat([len, h, data]), what: `header text: ${m.what}` };
  }
  const whats = [];
  let h = header;
  for (let i = 0, n = 1 + r.int(3); i < n; i++) {
    const w = mutateHeader(h, r, data.length);
    if (typeof w === 'object') {
      h = w.replace;
      whats.push(w.what);
      break;
    }
    whats.push(w);
  }
  let out = encodeSafetensors(h, data);
  if (r.chance(0.1)) out = out.subarray(0, out.length - 1 - r.int(64));
  return { bytes: out, what: whats.join('; ') };
}

function mutateJsonFile(text, r, mutateStructured) {
  if (r.chance(0.25)) {
    const m = mutateJsonText(text, r);
    return { bytes: m.bytes ?? Buffer.from(m.text), what: m.what };
  }
  let obj = JSON.parse(text);
  const whats = [];
  for (let i = 0, n = 1 + r.int(3); i < n; i++) {
    const w = mutateStructured(obj, r);
    if (typeof w === 'object') {
      obj = w.replace;
      whats.push(w.what);
      break;
    }
    whats.push(w);
  }
  return { bytes: Buffer.from(JSON.stringify(obj)), what: whats.join('; ') };
}

function mutateIndex(obj, r) {
  const wm = obj.weight_map && typeof obj.weight_map === 'object' ? obj.weight_map : {};
  const names = Object.keys(wm);
  const name = names.length ? r.pick(names) : 'x';
  switch (r.int(8)) {
    case 0:
    case 1:
    case 2:
      wm[name] = r.pick(['../single/model.safetensors', '../outside/shard.safetensors', '/etc/passwd', '..', '.', '', 'a/b', 'sub/../model-00001-of-00002.safetensors', 'a\\b', 'x\u0000y', 'nonexistent.safetensors', 'link-out.safetensors', 'link-dev.safetensors', 'link-dir', 'link-loop.safetensors', 'link-dangling.safetensors', 'fifo.safetensors', 'config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'link-in.safetensors', 1, null, {}, ['a']]);
      return `weight_map[${name}]=${JSON.stringify(wm[name])}`;
    case 3:
      obj.weight_map = r.pick([null, [], {}, 'x', 1]);
      return 'weight_map replaced';
    case 4:
      delete wm[name];
      return `unlisted ${name}`;
    case 5:
      setOwn(wm, r.pick(['model.layers.5.x', '__proto__', 'constructor', '']), 'model-00001-of-00002.safetensors');
      return 'extra tensor';
    case 6:
      obj.metadata = pickValue(r);
      return 'metadata';
    default:
      return mutateJsonValue(obj, r, ['weight_map', 'metadata']);
  }
}

const SPECIAL = [
  ['config.json', 'fifo'], ['config.json', 'dir'], ['config.json', '/dev/zero'], ['config.json', '/dev/urandom'], ['config.json', 'dangling'], ['config.json', 'loop'],
  ['tokenizer.json', 'fifo'], ['tokenizer.json', 'dir'], ['tokenizer.json', '/dev/zero'], ['tokenizer_config.json', 'fifo'], ['generation_config.json', 'fifo'], ['generation_config.json', 'dir'],
  ['model.safetensors', 'fifo'], ['model.safetensors', 'dir'], ['model.safetensors', '/dev/zero'], ['model.safetensors', 'dangling'], ['model.safetensors', 'outside'],
  ['model.safetensors.index.json', 'fifo'], ['model.safetensors.index.json', '/dev/zero'],
];

async function makeSpecial(path, kind, corpusRoot, dir) {
  await rm(path, { recursive: true, force: true });
  // A symlink to the FIFO made once by prepareWorkDir (open() follows it to the FIFO); spawning
  // mkfifo for every case is slow and, thousands of times over, fails now and then.
  if (kind === 'fifo') await symlink(join(dir, 'fifo.safetensors'), path);
  else if (kind === 'dir') await mkdir(path);
  else if (kind === 'dangling') await symlink(join(corpusRoot, 'does-not-exist'), path);
  else if (kind === 'loop') await symlink(path, path);
  else if (kind === 'outside') await symlink(join(corpusRoot, 'outside', 'shard.safetensors'), path);
  else await symlink(kind, path);
}

/** Prepares a case directory (called once per worker): static symlinks and a FIFO for index tricks. */
export async function prepareWorkDir(dir, corpus) {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const links = {
    'link-out.safetensors': join(corpus.root, 'outside', 'shard.safetensors'),
    'link-dev.safetensors': '/dev/zero',
    'link-dir': '.',
    'link-loop.safetensors': 'link-loop.safetensors',
    'link-dangling.safetensors': 'nope.safetensors',
    'link-in.safetensors': 'model-00002-of-00002.safetensors',
  };
  for (const [name, target] of Object.entries(links)) await symlink(target, join(dir, name));
  if (process.platform !== 'win32') execFileSync('mkfifo', [join(dir, 'fifo.safetensors')]);
}

const MODEL_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];

async function writeModelDir(dir, corpus, sharded, overrides) {
  const f = corpus.files;
  const content = {
    'config.json': sharded ? f.shardedConfig : f.config,
    'generation_config.json': f.generation,
    'tokenizer.json': f.tokenizer,
    'tokenizer_config.json': f.tokenizerConfig,
  };
  if (sharded) {
    content['model.safetensors.index.json'] = f.index;
    content['model-00001-of-00002.safetensors'] = f.shard1;
    content['model-00002-of-00002.safetensors'] = f.shard2;
  } else content['model.safetensors'] = f.single;
  Object.assign(content, overrides);
  for (const name of MODEL_FILES) {
    const p = join(dir, name);
    // Remove first: the last case may have left a FIFO, a folder or a symlink under this name
    // (writing to a FIFO would block until someone reads it).
    await rm(p, { recursive: true, force: true });
    if (name in content) await writeFile(p, content[name]);
  }
}

/**
 * Runs case `i`: returns { target, what, outcome } where outcome is 'ok' or a CasspecError code,
 * or { unexpected } describing anything else that was thrown.
 */
export async function runCase(api, corpus, dir, seed, i, opts = {}) {
  const r = makeRng(caseSeed(seed, i));
  const target = opts.target ?? pickTarget(r);
  const loadShare = opts.loadShare ?? 0.35;
  const f = corpus.files;
  let what = '';
  let sharded = false;
  const overrides = {};
  let special;
  switch (target) {
    case 'safetensors': {
      const m = mutateSafetensorsFile(f.single, r);
      overrides['model.safetensors'] = m.bytes;
      what = m.what;
      break;
    }
    case 'shard': {
      sharded = true;
      const which = r.chance(0.5) ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors';
      const m = mutateSafetensorsFile(which.includes('00001') ? f.shard1 : f.shard2, r);
      overrides[which] = m.bytes;
      what = `${which}: ${m.what}`;
      break;
    }
    case 'config': {
      const m = mutateJsonFile(f.config, r, (o, rr) => mutateJsonValue(o, rr, CONFIG_KEYS));
      overrides['config.json'] = m.bytes;
      what = m.what;
      break;
    }
    case 'generation_config': {
      const m = mutateJsonFile(f.generation, r, (o, rr) => mutateJsonValue(o, rr, ['eos_token_id', 'bos_token_id']));
      overrides['generation_config.json'] = m.bytes;
      what = m.what;
      break;
    }
    case 'index': {
      sharded = true;
      const m = mutateJsonFile(f.index, r, mutateIndex);
      overrides['model.safetensors.index.json'] = m.bytes;
      what = m.what;
      break;
    }
    case 'tokenizer': {
      const m = mutateJsonFile(f.tokenizer, r, mutateTokenizer);
      overrides['tokenizer.json'] = m.bytes;
      what = m.what;
      break;
    }
    case 'tokenizer_config': {
      const m = mutateJsonFile(f.tokenizerConfig, r, (o, rr) => mutateJsonValue(o, rr, ['eos_token', 'bos_token', 'add_bos_token', 'clean_up_tokenization_spaces', 'unk_token']));
      overrides['tokenizer_config.json'] = m.bytes;
      what = m.what;
      break;
    }
    case 'special': {
      special = r.pick(SPECIAL);
      sharded = special[0] === 'model.safetensors.index.json';
      what = `${special[0]} is ${special[1]}`;
      break;
    }
  }
  if (opts.onCase) opts.onCase({ i, target, what });
  await writeModelDir(dir, corpus, sharded, overrides);
  if (special) {
    if (special[1] === 'fifo' && process.platform === 'win32') return { target, what, outcome: 'skipped' };
    await makeSpecial(join(dir, special[0]), special[1], corpus.root, dir);
  }

  const step = async (name, fn) => {
    try {
      await fn();
      return 'ok';
    } catch (e) {
      if (e instanceof api.CasspecError) return e.code;
      throw Object.assign(new Error(`${name}: ${e?.constructor?.name ?? typeof e}: ${e?.message ?? String(e)}`), { unexpected: true, cause: e });
    }
  };

  // Raw loaders for the mutated file; special files only through Model.load (the public entry,
  // which refuses non-regular files before any loader opens them).
  let outcome = 'ok';
  try {
    if (!special) {
      if (target === 'safetensors' || target === 'shard') {
        const path = join(dir, Object.keys(overrides)[0]);
        outcome = await step('openSafetensors', async () => {
          const sf = await api.openSafetensors(path);
          try {
            for (const name of sf.tensors.keys()) await sf.read(name);
          } finally {
            await sf.close();
          }
        });
      } else if (target === 'config' || target === 'generation_config') {
        outcome = await step('readLlamaConfig', () => api.readLlamaConfig(dir));
      } else if (target === 'index') {
        outcome = await step('iterateTensors', async () => {
          for await (const t of api.iterateTensors(dir)) void t;
        });
      } else if (target === 'tokenizer' || target === 'tokenizer_config') {
        outcome = await step('loadTokenizer', async () => {
          const tok = await api.loadTokenizer(dir);
          const ids = tok.encode('def f(x):\n    return x + 1  # \u00e9\u4e2d\ud83d\ude00');
          if (ids.length > 0) tok.decode(ids); // (decode([]) is refused by tokenizers.js itself)
          const d = tok.createDecoder();
          for (const id of ids) d.push(id);
          d.flush();
        });
      }
    }
    if (special || r.next() < loadShare) {
      const loaded = await step('Model.load', async () => {
        const m = await api.Model.load(dir, { backend: 'cpu', threads: 1 });
        try {
          await m.complete('def f', { maxTokens: 2, strategy: 'plain', ignoreEos: true });
        } finally {
          m.dispose();
        }
      });
      outcome = special ? loaded : `${outcome}/${loaded}`;
    }
  } catch (e) {
    if (e.unexpected) return { target, what, unexpected: e.message };
    throw e;
  }
  return { target, what, outcome };
}

/** Tallies outcomes: { total, ok, errors: {code: n}, unexpected: [first 50], unexpectedCount, byTarget: {...} }. */
export function newTally() {
  return { total: 0, ok: 0, errors: {}, unexpected: [], unexpectedCount: 0, byTarget: {}, slowest: { ms: 0 } };
}

export function record(tally, res, ms, i) {
  tally.total++;
  const t = (tally.byTarget[res.target] ??= { total: 0, ok: 0, errors: 0, unexpected: 0 });
  t.total++;
  if (ms > tally.slowest.ms) tally.slowest = { ms, i, target: res.target, what: res.what };
  if (res.unexpected) {
    t.unexpected++;
    tally.unexpectedCount++;
    if (tally.unexpected.length < 50) tally.unexpected.push({ i, target: res.target, what: res.what, error: res.unexpected });
    return;
  }
  const codes = String(res.outcome).split('/');
  if (codes.every((c) => c === 'ok' || c === 'skipped')) {
    tally.ok++;
    t.ok++;
  } else t.errors++;
  for (const c of codes) if (c !== 'ok') tally.errors[c] = (tally.errors[c] ?? 0) + 1;
}

export { readFile, copyFile };
