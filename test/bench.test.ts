// `casspec bench`: prompt parsing, the protocol (with a fake model: order, medians, speedup,
// identity), the JSON validator, the table, the chart, and end-to-end runs on the CPU backend
// with pycode-tiny through the same command the CLI registers (in-process).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { strategyNames } from '../ts/decode/registry.js';
import { readLlamaConfig } from '../ts/loader/config.js';
import type { GenerationResult } from '../ts/generate.js';
import type { GenerateOptions } from '../ts/model.js';
import { parsePromptsJsonl, loadPrompts, dummyPrompts, promptsAsDummyTokens } from '../ts/bench/prompts.js';
import { runBench, summarize, median, orderStrategies, type BenchModel } from '../ts/bench/run.js';
import { buildBenchJson, validateBenchJson, benchJsonProblems, formatReport, loadBenchJson, type BenchJson } from '../ts/bench/report.js';
import { benchChart, niceStep } from '../ts/bench/chart.js';
import { createProgress } from '../ts/bench/progress.js';
import { registerBench, benchCommand } from '../ts/bench/command.js';
import { modelDir, repoRoot } from './reference/models.js';
import { useTempDir } from './fixtures/temp-dir.js';

const tmp = useTempDir('casspec-bench-');

// Like the other native tests: when no standard build exists, use the cmake-js CPU build folder.
if (!process.env.CASSPEC_NATIVE && !existsSync(join(repoRoot, 'build', 'Release', 'casspec.node'))) {
  const cpuBuild = join(repoRoot, 'build', 'cpu', 'Release', 'casspec.node');
  if (existsSync(cpuBuild)) process.env.CASSPEC_NATIVE = cpuBuild;
}

function sink() {
  let text = '';
  return { write: (s: string) => void (text += s), get text() { return text; }, isTTY: false };
}

describe('prompts JSONL', () => {
  it('parses casspec lines and Spec-Bench lines (turns[0]), skipping blank lines', () => {
    const text = [
      '{"id": "a", "category": "function", "prompt": "def f():"}',
      '',
      '{"question_id": 81, "category": "writing", "turns": ["Compose a blog post", "Rewrite it"]}',
      '{"id": "c", "prompt": [1, 2, 3]}',
    ].join('\n');
    expect(parsePromptsJsonl(text, 'p.jsonl')).toEqual([
      { id: 'a', category: 'function', prompt: 'def f():' },
      { id: '81', category: 'writing', prompt: 'Compose a blog post' },
      { id: 'c', category: 'default', prompt: [1, 2, 3] },
    ]);
  });

  it('names the file and line of a bad JSON line', () => {
    const text = '{"id": "a", "category": "x", "prompt": "p"}\n{"id": "b", "prompt": \n';
    expect(() => parsePromptsJsonl(text, 'bad.jsonl')).toThrow(/bad\.jsonl:2: not valid JSON/);
  });

  it('rejects missing fields, duplicates, the reserved category and empty files, naming the line', () => {
    expect(() => parsePromptsJsonl('{"id": "a"}', 'f')).toThrow(/f:1: missing "prompt"/);
    expect(() => parsePromptsJsonl('{"prompt": "x"}', 'f')).toThrow(/f:1: missing "id"/);
    expect(() => parsePromptsJsonl('{"id":"a","prompt":"x"}\n{"id":"a","prompt":"y"}', 'f')).toThrow(/f:2: duplicate id "a" \(first on line 1\)/);
    expect(() => parsePromptsJsonl('{"id":"a","category":"all","prompt":"x"}', 'f')).toThrow(/f:1: category "all" is reserved/);
    expect(() => parsePromptsJsonl('{"id":"a","turns":[]}', 'f')).toThrow(/f:1: "turns" must be/);
    expect(() => parsePromptsJsonl('[1,2]', 'f')).toThrow(/f:1: each line must be a JSON object/);
    expect(() => parsePromptsJsonl('\n\n', 'f')).toThrow(/no prompts/);
    try {
      parsePromptsJsonl('{}\n{oops}', 'g');
    } catch (e) {
      expect((e as { code: string }).code).toBe('E_INVALID_ARG');
    }
  });

  it('loads a file and reports unreadable ones', async () => {
    const f = join(tmp(), 'p.jsonl');
    await writeFile(f, '{"id":"x","category":"c","prompt":"hello"}\n');
    expect(await loadPrompts(f)).toHaveLength(1);
    await expect(loadPrompts(join(tmp(), 'missing.jsonl'))).rejects.toThrow(/cannot read prompts file/);
  });

  it('dummy prompts are seeded token ids inside the vocabulary', () => {
    const a = dummyPrompts(5, { vocabSize: 100, seed: 3 });
    const b = dummyPrompts(5, { vocabSize: 100, seed: 3 });
    expect(a).toEqual(b);
    expect(dummyPrompts(5, { vocabSize: 100, seed: 4 })).not.toEqual(a);
    for (const p of a) {
      expect(Array.isArray(p.prompt)).toBe(true);
      expect((p.prompt as number[]).every((t) => t >= 0 && t < 100)).toBe(true);
      expect(p.prompt.length).toBeGreaterThanOrEqual(64);
    }
    const asIds = promptsAsDummyTokens([{ id: 'q', category: 'c', prompt: 'x'.repeat(400) }], { vocabSize: 50 });
    expect(asIds[0]).toMatchObject({ id: 'q', category: 'c' });
    expect(asIds[0].prompt).toHaveLength(100);
  });
});

/** A fake model: plain takes 10 ms per prompt, 'fast' 5 ms; 'wrong' changes one token. */
function fakeModel(calls: string[]): BenchModel {
  let n = 0;
  return {
    contextLength: 512,
    encode: (text: string) => Array.from(text, (c) => c.charCodeAt(0)),
    generate(prompt: number[], o: GenerateOptions) {
      const s = o.strategy as string;
      calls.push(`${s}:${prompt.length}`);
      const jitter = n++ % 3; // repeats differ: 0, 1, 2 ms extra -> median adds 1
      const ms = (s === 'plain' ? 10 : 5) + jitter;
      const tokens = Array.from({ length: o.maxTokens! }, (_, i) => (s === 'wrong' && i === 3 ? 999 : i + prompt.length));
      const r: GenerationResult = {
        text: '',
        tokens,
        finishReason: 'length',
        stats: {
          strategy: s, promptTokens: prompt.length, generatedTokens: tokens.length, timeToFirstTokenMs: 1, totalMs: ms,
          tokensPerSecond: 0, decodeTokensPerSecond: 0, steps: s === 'plain' ? tokens.length - 1 : 3,
          meanAccepted: s === 'plain' ? 1 : (tokens.length - 1) / 3, forwards: 0, draftMs: 0, verifyMs: 0,
        },
      };
      return { result: Promise.resolve(r) };
    },
  };
}

const fakePrompts = [
  { id: 'p1', category: 'function', prompt: 'aaaa' },
  { id: 'p2', category: 'class', prompt: 'bbbbbb' },
  { id: 'p3', category: 'function', prompt: 'cc' },
];

describe('protocol (fake model)', () => {
  it('runs plain first, prompt-major, repeats interleaved, warm-up excluded', async () => {
    const calls: string[] = [];
    const run = await runBench(fakeModel(calls), { prompts: fakePrompts, strategies: ['fast', 'plain'], maxNewTokens: 10, warmup: 1, repeats: 2 });
    expect(run.strategies).toEqual(['plain', 'fast']);
    expect(calls).toEqual([
      'plain:4', 'fast:4', // warm-up on the first prompt
      'plain:4', 'fast:4', 'plain:4', 'fast:4',
      'plain:6', 'fast:6', 'plain:6', 'fast:6',
      'plain:2', 'fast:2', 'plain:2', 'fast:2',
    ]);
    expect(run.perPrompt).toHaveLength(6);
    for (const r of run.perPrompt) {
      expect(r.msRepeats).toHaveLength(2);
      expect(r.ms).toBe(median(r.msRepeats));
      expect(r.tokensPerSecond).toBeCloseTo((10 * 1000) / r.ms);
      expect(r.identical).toBe(true);
    }
  });

  it('computes speedup from mean per-prompt tokens/s, identity against plain, per category and all', async () => {
    const run = await runBench(fakeModel([]), { prompts: fakePrompts, strategies: ['plain', 'fast', 'wrong'], maxNewTokens: 8, warmup: 0, repeats: 1 });
    const row = (s: string, c: string) => run.summary.find((r) => r.strategy === s && r.category === c)!;
    expect(run.categories).toEqual(['function', 'class']);
    expect(row('plain', 'all').speedup).toBe(1);
    expect(row('plain', 'all').identicalPct).toBe(100);
    expect(row('wrong', 'all').identicalPct).toBe(0);
    expect(row('fast', 'function').prompts).toBe(2);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    for (const c of ['all', 'function', 'class']) {
      const pick = (s: string) => run.perPrompt.filter((r) => r.strategy === s && (c === 'all' || r.category === c)).map((r) => r.tokensPerSecond);
      expect(row('fast', c).tokensPerSecond).toBeCloseTo(mean(pick('fast')));
      expect(row('fast', c).speedup).toBeCloseTo(mean(pick('fast')) / mean(pick('plain')));
    }
    // Mean accepted over all steps: (7 + 7 + 7) tokens / 9 steps.
    expect(row('fast', 'all').meanAccepted).toBeCloseTo(7 / 3);
    expect(row('plain', 'all').meanAccepted).toBe(1);
  });

  it('cuts long prompts from the left to fit the context and says so', async () => {
    const calls: string[] = [];
    const long = [{ id: 'long', category: 'c', prompt: 'x'.repeat(1000) }];
    const run = await runBench(fakeModel(calls), { prompts: long, strategies: ['plain'], maxNewTokens: 32, warmup: 0, repeats: 1 });
    expect(run.truncatedPrompts).toEqual(['long']);
    expect(calls).toEqual([`plain:${512 - 32 - 80}`]);
    await expect(runBench(fakeModel([]), { prompts: long, strategies: ['plain'], maxNewTokens: 500, warmup: 0, repeats: 1 })).rejects.toThrow(/no room/);
  });

  it('orders strategies with plain first, once', () => {
    expect(orderStrategies(['pld', 'plain', 'pld', 'vc'])).toEqual(['plain', 'pld', 'vc']);
    expect(orderStrategies([])).toEqual(['plain']);
    expect(summarize([], ['plain'], [])).toEqual([]);
  });
});

async function fakeDoc(): Promise<BenchJson> {
  const run = await runBench(fakeModel([]), { prompts: fakePrompts, strategies: ['plain', 'fast', 'wrong'], maxNewTokens: 8, warmup: 0, repeats: 3 });
  return buildBenchJson({
    run, device: { backend: 'cpu', name: 'test cpu' }, model: { name: 'fake' }, maxNewTokens: 8, warmup: 0, repeats: 3,
  });
}

describe('JSON, table and chart', () => {
  it('the validator accepts a built document and survives a JSON round trip', async () => {
    const doc = await fakeDoc();
    expect(benchJsonProblems(doc)).toEqual([]);
    expect(validateBenchJson(JSON.parse(JSON.stringify(doc)))).toBeTruthy();
    expect(doc.protocol).toMatchObject({ maxNewTokens: 8, warmup: 0, repeats: 3, greedy: true });
    expect(doc.perPrompt[0]).toMatchObject({ id: 'p1', category: 'function', strategy: 'plain', tokens: 8, identical: true });
  });

  it('the validator names what is wrong', async () => {
    const doc = JSON.parse(JSON.stringify(await fakeDoc()));
    doc.protocol.greedy = false;
    doc.perPrompt[1].tokensPerSecond = 'fast';
    doc.summary = doc.summary.filter((r: { strategy: string; category: string }) => !(r.strategy === 'fast' && r.category === 'all'));
    doc.strategies.push('ghost');
    const problems = benchJsonProblems(doc);
    expect(problems).toContain('protocol.greedy must be true');
    expect(problems).toContain('perPrompt[1].tokensPerSecond must be a number >= 0');
    expect(problems).toContain('summary has no "all" row for fast');
    expect(() => validateBenchJson(doc)).toThrow(/not a valid benchmark document/);
    expect(benchJsonProblems(null)).toEqual(['the document is not a JSON object']);
  });

  it('the table has a row per category and strategy, and merges a peer document', async () => {
    const doc = await fakeDoc();
    const text = formatReport(doc);
    expect(text).toMatch(/EOS ignored/);
    expect(text).toMatch(/median of 3 repeats/);
    expect(text).toMatch(/^all\s+plain\s+3\s+[\d.]+\s+1\.00x\s+1\.00\s+100\.0%$/m);
    expect(text).toMatch(/^\s+wrong\s+3\s+[\d.]+\s+[\d.]+x\s+[\d.]+\s+0\.0%$/m);
    expect(text).toMatch(/^function\s+plain/m);
    expect(text).toMatch(/^class\s+plain/m);

    const peer: BenchJson = JSON.parse(JSON.stringify(doc));
    peer.tool = 'transformers';
    peer.strategies = ['hf-plain', 'hf-pld'];
    peer.protocol.reference = 'hf-plain';
    peer.perPrompt = [];
    peer.summary = doc.summary
      .filter((r) => r.strategy !== 'wrong')
      .map((r) => ({ ...r, strategy: r.strategy === 'plain' ? 'hf-plain' : 'hf-pld', tokensPerSecond: r.tokensPerSecond / 2 }));
    expect(benchJsonProblems(peer)).toEqual([]);
    const merged = formatReport(doc, [peer]);
    expect(merged).toMatch(/vs hf-plain/);
    expect(merged).toMatch(/^\s+hf-pld \*/m);
    expect(merged).toMatch(/^all\s+plain\s+3\s+[\d.]+\s+1\.00x\s+1\.00\s+100\.0%\s+2\.00x$/m);
    expect(merged).toMatch(/identical tokens for 3 of 3 prompts/);
    expect(benchChart(doc, [peer])).toMatch(/hf-pld \(transformers\)/);
  });

  it('a real hf_bench.py document (H100, pycode-small) validates and merges', async () => {
    const peer = await loadBenchJson(join(repoRoot, 'scripts', 'peers', 'example-hf-pycode-small-h100.json'));
    expect(peer.tool).toBe('transformers');
    expect(peer.protocol.reference).toBe('hf-plain');
    const merged = formatReport(await fakeDoc(), [peer]);
    expect(merged).toMatch(/^\s+hf-pld \*/m);
    expect(merged).toMatch(/the peer ran a different protocol/);
    expect(benchChart(await fakeDoc(), [peer])).toMatch(/hf-pld \(transformers\)/);
  });

  it('the chart is a self-contained SVG with grouped bars, axis, labels and legend', async () => {
    const doc = await fakeDoc();
    const svg = benchChart(doc);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    // Non-plain strategies x (all + 2 categories).
    expect(svg.match(/<rect class="bar"/g)).toHaveLength(2 * 3);
    expect(svg).toMatch(/speedup over plain/);
    expect(svg).toMatch(/class="legend"/);
    expect(svg).not.toMatch(/href=|<script|NaN|undefined/);
    // Balanced tags (XML-ish): every opened element is closed or self-closing.
    const opens = (svg.match(/<[a-zA-Z][^>]*[^/]>/g) ?? []).length;
    const closes = (svg.match(/<\/[a-zA-Z]+>/g) ?? []).length;
    expect(opens).toBe(closes);
    expect(niceStep(2.3)).toBe(0.5);
    expect(niceStep(10)).toBe(2);
  });

  it('progress without a terminal prints a line every n prompts', () => {
    const out = sink();
    const p = createProgress(out, { prompts: 4, every: 2 });
    for (let done = 1; done <= 8; done++)
      p.update({ phase: 'run', done, total: 8, promptIndex: 0, promptId: 'x', strategy: 's', elapsedMs: done * 100 });
    expect(out.text.trim().split('\n')).toEqual([
      expect.stringMatching(/^bench: 2\/4 prompts/),
      expect.stringMatching(/^bench: 4\/4 prompts/),
    ]);
  });
});

function promptsFile(): string {
  const shared = join(repoRoot, '..', 'shared', 'bench', 'pycode-dev.jsonl');
  if (existsSync(shared)) return shared;
  const f = join(tmp(), 'fallback.jsonl');
  const lines = [
    { id: 'f1', category: 'function', prompt: 'def fibonacci(n):\n    if n < 2:\n        return n\n' },
    { id: 'c1', category: 'class', prompt: 'class Stack:\n    def __init__(self):\n        self.items = []\n' },
    { id: 'k1', category: 'continue', prompt: 'import os\nimport sys\n\nfor path in sys.argv[1:]:\n' },
  ];
  writeFileSync(f, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return f;
}

describe('end to end on pycode-tiny (cpu)', () => {
  it('runs through the registered CLI command: table, JSON, chart; every strategy is lossless', async () => {
    const out = sink();
    const err = sink();
    const program = new Command('casspec').exitOverride();
    registerBench(program, { stdout: out, stderr: err });
    const json = join(tmp(), 'out', 'bench.json');
    const svg = join(tmp(), 'out', 'bench.svg');
    const strategies = strategyNames();
    await program.parseAsync(
      ['bench', '--model', modelDir('pycode-tiny'), '--prompts', promptsFile(), '--limit', '3', '--backend', 'cpu',
        '--strategies', strategies.join(','), '--max-new-tokens', '16', '--warmup', '1', '--repeats', '2', '--json', json, '--chart', svg],
      { from: 'user' },
    );
    const doc = validateBenchJson(JSON.parse(readFileSync(json, 'utf8')));
    expect(doc.strategies[0]).toBe('plain');
    expect(new Set(doc.strategies)).toEqual(new Set(strategies));
    expect(doc.protocol).toMatchObject({ maxNewTokens: 16, warmup: 1, repeats: 2, greedy: true, prompts: 3 });
    expect(doc.device.backend).toBe('cpu');
    expect(doc.perPrompt).toHaveLength(3 * strategies.length);
    for (const r of doc.perPrompt) {
      expect(r.tokens).toBe(16);
      expect(r.tokensPerSecond).toBeGreaterThan(0);
      expect(r.identical).toBe(true); // greedy speculative decoding is lossless
    }
    for (const r of doc.summary) expect(r.identicalPct).toBe(100);
    const text = out.text;
    expect(text).toMatch(/16 new tokens per prompt \(EOS ignored/);
    for (const s of strategies) expect(text).toContain(s);
    const chart = readFileSync(svg, 'utf8');
    expect(chart.startsWith('<svg')).toBe(true);
    expect((chart.match(/<rect class="bar"/g) ?? []).length).toBeGreaterThan(0);
    expect(err.text).toMatch(/wrote JSON/);
    console.log(text);
  });

  it('benchCommand with --dummy runs seeded token-id prompts on random weights', async () => {
    const shape = await readLlamaConfig(modelDir('pycode-tiny'));
    const out = sink();
    const doc = await benchCommand(
      { dummy: shape, strategies: ['plain'], maxNewTokens: 8, limit: 4, warmup: 0, backend: 'cpu', seed: 1 },
      { stdout: out, stderr: sink() },
    );
    expect(doc!.model.dummy).toBeTruthy();
    expect(doc!.perPrompt).toHaveLength(4);
    expect(doc!.perPrompt.every((r) => r.tokens === 8)).toBe(true);
    expect(out.text).toMatch(/dummy weights/);
  });

  it('--kernels times forwards of n pending tokens over a prefilled cache', async () => {
    const out = sink();
    const json = join(tmp(), 'kernels.json');
    await benchCommand(
      { model: modelDir('pycode-tiny'), kernels: true, kernelNs: [1, 2, 4], kernelCaches: [64, 4096], warmup: 1, repeats: 3, backend: 'cpu', json },
      { stdout: out, stderr: sink() },
    );
    expect(out.text).toMatch(/cache 64: ms/);
    expect(out.text).toMatch(/plain decode tok\/s/);
    expect(out.text).toMatch(/skipped cache lengths.*4096/);
    const k = JSON.parse(readFileSync(json, 'utf8'));
    expect(k.forward).toHaveLength(3);
    expect(k.forward.every((r: { ms: number }) => r.ms > 0)).toBe(true);
    expect(k.decode[0].tokensPerSecond).toBeGreaterThan(0);
    console.log(out.text);
  });

  it('rejects unknown strategies and a missing prompts file with clear errors', async () => {
    await expect(benchCommand({ model: modelDir('pycode-tiny'), prompts: 'x.jsonl', strategies: ['nope'] }, { stdout: sink(), stderr: sink() })).rejects.toThrow(
      /unknown strategy nope \(available: plain/,
    );
    await expect(benchCommand({ model: modelDir('pycode-tiny') }, { stdout: sink(), stderr: sink() })).rejects.toThrow(/--prompts/);
    await expect(benchCommand({}, { stdout: sink(), stderr: sink() })).rejects.toThrow(/exactly one of --model/);
  });
});
