// The tokenizer wrapper: golden prompt ids and greedy text from transformers, streaming
// detokenization that never splits a character, and clear E_TOKENIZER errors.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer, type TextTokenizer } from '../ts/loader/tokenizer.js';
import { createStreamDecoder } from '../ts/loader/stream-decoder.js';
import { expectCasspecError } from './fixtures/expect-error.js';
import { useTempDir } from './fixtures/temp-dir.js';
import { modelDir } from './reference/models.js';

interface Golden {
  cases: { prompt: string; prompt_ids: number[]; greedy_ids: number[]; greedy_text: string }[];
}

const streamed = (tok: TextTokenizer, ids: number[]) => {
  const d = tok.createDecoder();
  const pieces = ids.map((id) => d.push(id));
  return { pieces, text: pieces.join('') + d.flush() };
};

for (const name of ['pycode-tiny', 'pycode-small']) {
  describe(`tokenizer of ${name}`, () => {
    let tok: TextTokenizer;
    let golden: Golden;
    beforeAll(async () => {
      tok = await loadTokenizer(modelDir(name));
      golden = JSON.parse(await readFile(join(modelDir(name), 'golden.json'), 'utf8'));
    });

    it('encodes the golden prompts and decodes the greedy ids exactly as transformers', () => {
      for (const c of golden.cases) {
        expect(tok.encode(c.prompt)).toEqual(c.prompt_ids);
        expect(tok.decode(c.greedy_ids)).toBe(c.greedy_text);
        expect(tok.decode([...c.prompt_ids, ...c.greedy_ids])).toBe(c.prompt + c.greedy_text);
      }
    });

    it('streams the same text, token by token', () => {
      for (const c of golden.cases) expect(streamed(tok, c.greedy_ids).text).toBe(c.greedy_text);
    });

    it('knows eos, bos and the vocabulary size', () => {
      expect(tok.eosTokenIds).toEqual([0]);
      expect(tok.bosTokenId).toBe(0);
      expect(tok.vocabSize).toBe(8192);
      expect(tok.encode('x = 1')[0]).not.toBe(0); // add_bos_token is false
    });
  });
}

describe('streaming detokenizer', () => {
  let tok: TextTokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(modelDir('pycode-tiny'));
  });

  it('holds back a character split across byte-level tokens', () => {
    const text = 'π = "日本語 🐍 naïve"\nprint(π)';
    const ids = tok.encode(text);
    expect(ids.length).toBeGreaterThan(8);
    const { pieces, text: out } = streamed(tok, ids);
    expect(out).toBe(text);
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
    // the 4-byte emoji must span several tokens here, or this test proves nothing
    expect(ids.some((id) => tok.decode([id]).includes('\uFFFD'))).toBe(true);
  });

  it('round-trips the 120 bench prompts, streamed', async () => {
    const file = join(modelDir('pycode-tiny'), '..', '..', 'bench', 'pycode-dev.jsonl');
    const prompts = (await readFile(file, 'utf8')).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).prompt as string);
    expect(prompts.length).toBe(120);
    for (const p of prompts) {
      const ids = tok.encode(p);
      expect(tok.decode(ids)).toBe(p);
      expect(streamed(tok, ids).text).toBe(p);
    }
  });

  it('handles a SentencePiece-style decoder that strips the first leading space', () => {
    const vocab = ['▁Hello', '▁world', ',', '▁how'];
    const decode = (ids: number[]) => ids.map((i) => vocab[i]).join('').replace(/▁/g, ' ').replace(/^ /, '');
    const d = createStreamDecoder(decode);
    expect([0, 1, 2, 3].map((i) => d.push(i)).join('') + d.flush()).toBe('Hello world, how');
  });

  it('flushes a genuinely incomplete character at the end', () => {
    const d = createStreamDecoder((ids) => (ids.length ? 'ab\uFFFD' : ''));
    expect(d.push(1)).toBe('ab');
    expect(d.flush()).toBe('\uFFFD');
  });
});

describe('loadTokenizer errors', () => {
  const tmp = useTempDir('casspec-tokenizer-');
  const folder = async (name: string, files: Record<string, string>) => {
    const dir = join(tmp(), name);
    await mkdir(dir, { recursive: true });
    for (const [f, body] of Object.entries(files)) await writeFile(join(dir, f), body);
    return dir;
  };

  it('a missing tokenizer.json names the path', async () => {
    const dir = await folder('none', {});
    await expectCasspecError(loadTokenizer(dir), 'E_TOKENIZER', join(dir, 'tokenizer.json'), 'not found');
  });

  it('malformed tokenizer.json', async () => {
    const dir = await folder('bad', { 'tokenizer.json': '{"model": {' });
    await expectCasspecError(loadTokenizer(dir), 'E_TOKENIZER', join(dir, 'tokenizer.json'), 'malformed JSON');
  });

  it('tokenizer.json without a model', async () => {
    const dir = await folder('nomodel', { 'tokenizer.json': '{"version": "1.0"}' });
    await expectCasspecError(loadTokenizer(dir), 'E_TOKENIZER', join(dir, 'tokenizer.json'), 'model');
  });

  it('a model the library cannot build (cause kept)', async () => {
    const dir = await folder('weird', { 'tokenizer.json': JSON.stringify({ model: { type: 'NoSuchModel' } }) });
    const err = await expectCasspecError(loadTokenizer(dir), 'E_TOKENIZER', join(dir, 'tokenizer.json'));
    expect(err.cause).toBeDefined();
  });

  it('an eos_token that is not in the vocabulary', async () => {
    const json = await readFile(join(modelDir('pycode-tiny'), 'tokenizer.json'), 'utf8');
    const dir = await folder('eos', { 'tokenizer.json': json, 'tokenizer_config.json': '{"eos_token": "</nope>"}' });
    await expectCasspecError(loadTokenizer(dir), 'E_TOKENIZER', 'tokenizer_config.json', '</nope>');
  });

  it('add_bos_token prepends the bos id', async () => {
    const json = await readFile(join(modelDir('pycode-tiny'), 'tokenizer.json'), 'utf8');
    const dir = await folder('bos', {
      'tokenizer.json': json,
      'tokenizer_config.json': JSON.stringify({ bos_token: '<|endoftext|>', add_bos_token: true }),
    });
    const tok = await loadTokenizer(dir);
    expect(tok.encode('x')[0]).toBe(0);
    expect(tok.eosTokenIds).toEqual([]);
  });
});
