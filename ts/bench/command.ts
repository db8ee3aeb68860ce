// `casspec bench`: the Spec-Bench-style end-to-end benchmark, and with --kernels the forward-pass
// micro-benchmark. registerBench(program) adds the command; benchCommand() is the same thing
// callable in-process (tests, scripts).
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, platform, arch } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CasspecError } from '../errors.js';
import { Model, type BackendChoice } from '../model.js';
import { isStrategyName, strategyNames } from '../decode/registry.js';
import { llamaPreset, readLlamaConfig, type LlamaConfig } from '../loader/config.js';
import { dummyPrompts, loadPrompts, promptsAsDummyTokens, type BenchPrompt } from './prompts.js';
import { orderStrategies, runBench } from './run.js';
import { buildBenchJson, deviceLabel, formatReport, loadBenchJson, validateBenchJson, type BenchJson } from './report.js';
import { benchChart } from './chart.js';
import { createProgress, type ProgressStream } from './progress.js';
import { createDummyNativeModel, formatKernelReport, runKernelBench, DEFAULT_KERNEL_CACHES, DEFAULT_KERNEL_NS } from './kernels.js';

export interface BenchCliOptions {
  model?: string;
  /** A preset name (CLI), or a whole config (programmatic use). */
  dummy?: string | LlamaConfig;
  prompts?: string;
  /** Strategy names; default every registered strategy. plain is always added. */
  strategies?: string[];
  maxNewTokens?: number;
  warmup?: number;
  repeats?: number;
  limit?: number;
  json?: string;
  chart?: string;
  peers?: string;
  backend?: BackendChoice;
  context?: number;
  threads?: number;
  seed?: number;
  progressEvery?: number;
  kernels?: boolean;
  kernelNs?: number[];
  kernelCaches?: number[];
  /** Load option draftQuant: 'int8' keeps the int8 weights the `q1` draft variant of cas-spec runs on. */
  draftQuant?: 'int8' | 'none';
  /** --kernels: also time each forward in this quant mode (1 = int8 W8A8); loads its weight copy. */
  quant?: number;
  signal?: AbortSignal;
}

export interface BenchIO {
  stdout: { write(s: string): unknown };
  stderr: ProgressStream;
}

export const DEFAULT_MAX_NEW_TOKENS = 128;
export const DEFAULT_DUMMY_PROMPTS = 12;

const dummyName = (d: string | LlamaConfig) =>
  typeof d === 'string' ? d : `custom (${d.numLayers} layers, hidden ${d.hiddenSize}, vocab ${d.vocabSize})`;

const defaultIO = (): BenchIO => ({ stdout: process.stdout, stderr: process.stderr });

function hostInfo(): Record<string, unknown> {
  const c = cpus();
  return { platform: platform(), arch: arch(), cpu: c[0]?.model ?? 'unknown', cpus: c.length, node: process.version };
}

async function writeOut(file: string, text: string, io: BenchIO, what: string): Promise<void> {
  const path = resolve(file);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
  io.stderr.write(`wrote ${what} to ${path}\n`);
}

/** Runs the command with parsed options; returns the JSON document (bench mode) or undefined (kernels). */
export async function benchCommand(o: BenchCliOptions, io: BenchIO = defaultIO()): Promise<BenchJson | undefined> {
  if ((o.model === undefined) === (o.dummy === undefined))
    throw new CasspecError('E_INVALID_ARG', 'give exactly one of --model DIR or --dummy PRESET');
  if (o.kernels) {
    await kernelsCommand(o, io);
    return undefined;
  }
  if (o.prompts === undefined && o.dummy === undefined)
    throw new CasspecError('E_INVALID_ARG', '--prompts FILE.jsonl is required (except with --dummy or --kernels)');

  const available = strategyNames();
  const requested = o.strategies && o.strategies.length ? o.strategies : available;
  const unknown = requested.filter((s) => !isStrategyName(s));
  if (unknown.length)
    throw new CasspecError('E_INVALID_ARG', `unknown strateg${unknown.length === 1 ? 'y' : 'ies'} ${unknown.join(', ')} (available: ${available.join(', ')})`);
  const strategies = orderStrategies(requested);
  const maxNewTokens = o.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  const warmup = o.warmup ?? 2;
  const repeats = o.repeats ?? 1;
  if (maxNewTokens < 1) throw new CasspecError('E_INVALID_ARG', '--max-new-tokens must be >= 1');
  if (repeats < 1) throw new CasspecError('E_INVALID_ARG', '--repeats must be >= 1');
  const peers = o.peers ? [await loadBenchJson(o.peers)] : [];

  let prompts: BenchPrompt[] | undefined = o.prompts ? await loadPrompts(o.prompts) : undefined;
  if (prompts && o.limit !== undefined) prompts = prompts.slice(0, o.limit);
  if (prompts && prompts.length === 0) throw new CasspecError('E_INVALID_ARG', '--limit 0 leaves no prompts');

  const loadOpts = { backend: o.backend ?? 'auto', contextLength: o.context, threads: o.threads, draftQuant: o.draftQuant, signal: o.signal };
  const model = o.dummy
    ? await Model.loadDummy(o.dummy, { ...loadOpts, seed: o.seed ?? 0 })
    : await Model.load(o.model!, loadOpts);
  try {
    if (o.dummy) {
      const dummyOpts = { vocabSize: model.config.vocabSize, seed: o.seed ?? 0, maxTokens: Math.min(256, model.contextLength - maxNewTokens - 80) };
      dummyOpts.maxTokens = Math.max(8, dummyOpts.maxTokens);
      prompts = prompts
        ? promptsAsDummyTokens(prompts, dummyOpts)
        : dummyPrompts(o.limit ?? DEFAULT_DUMMY_PROMPTS, { ...dummyOpts, minTokens: Math.min(64, dummyOpts.maxTokens) });
    }
    const info = model.info;
    io.stderr.write(
      `casspec bench: ${o.dummy ? dummyName(o.dummy) : o.model} on ${deviceLabel({ backend: info.backend, name: info.device })}; ${prompts!.length} prompts x ${strategies.length} strategies ` +
        `(${strategies.join(', ')}), ${maxNewTokens} new tokens each, EOS ignored, warm-up ${warmup}, repeats ${repeats}\n`,
    );
    const progress = createProgress(io.stderr, { prompts: prompts!.length, every: o.progressEvery });
    let run;
    try {
      run = await runBench(model, { prompts: prompts!, strategies, maxNewTokens, warmup, repeats, signal: o.signal, onProgress: (p) => progress.update(p) });
    } finally {
      progress.finish();
    }
    const doc = buildBenchJson({
      run,
      device: { backend: info.backend, name: info.device, reason: model.backendReason, host: hostInfo() },
      model: {
        name: o.dummy ? dummyName(o.dummy) : basename(resolve(o.model!)),
        path: o.model ? resolve(o.model) : undefined,
        dummy: o.dummy === undefined ? undefined : typeof o.dummy === 'string' ? o.dummy : 'custom',
        config: { ...model.config } as unknown as Record<string, unknown>,
      },
      maxNewTokens,
      warmup,
      repeats,
      promptsFile: o.prompts ? resolve(o.prompts) : undefined,
    });
    validateBenchJson(doc, 'the benchmark result'); // a bug here should fail loudly, not write garbage
    io.stdout.write(formatReport(doc, peers));
    if (o.json) await writeOut(o.json, JSON.stringify(doc, null, 1) + '\n', io, 'JSON');
    if (o.chart) await writeOut(o.chart, benchChart(doc, peers), io, 'chart');
    return doc;
  } finally {
    model.dispose();
  }
}

async function kernelsCommand(o: BenchCliOptions, io: BenchIO): Promise<void> {
  const config = o.dummy ? (typeof o.dummy === 'string' ? llamaPreset(o.dummy) : o.dummy) : await readLlamaConfig(o.model!);
  const name = o.dummy ? dummyName(o.dummy) : basename(resolve(o.model!));
  const { nm, reason } = await createDummyNativeModel(config, { backend: o.backend ?? 'auto', seed: o.seed, threads: o.threads, quantWeights: o.quant });
  try {
    const info = nm.info();
    io.stderr.write(`casspec bench --kernels: ${name} shape, dummy weights, on ${deviceLabel({ backend: info.backend, name: info.device })}\n`);
    const res = await runKernelBench(nm, config, {
      ns: o.kernelNs ?? DEFAULT_KERNEL_NS,
      caches: o.kernelCaches ?? DEFAULT_KERNEL_CACHES,
      warmup: o.warmup ?? 3,
      repeats: o.repeats ?? 10,
      quant: o.quant,
      seed: o.seed,
      signal: o.signal,
      onProgress: io.stderr.isTTY ? (m) => io.stderr.write(`\r${m}\x1b[K`) : undefined,
    });
    if (io.stderr.isTTY) io.stderr.write('\r\x1b[K');
    io.stdout.write(formatKernelReport(res, `kernels: ${name} (${config.numLayers} layers, hidden ${config.hiddenSize}) on ${deviceLabel({ backend: info.backend, name: info.device })}`));
    if (o.json) {
      const doc = {
        schema: 'casspec-kernels/1',
        date: new Date().toISOString(),
        device: { backend: info.backend, name: info.device, reason, host: hostInfo() },
        model: { name, dummy: true, config },
        ...res,
      };
      await writeOut(o.json, JSON.stringify(doc, null, 1) + '\n', io, 'JSON');
    }
  } finally {
    nm.dispose();
  }
}

const intArg = (name: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return n;
};
const intList = (name: string) => (v: string) =>
  v.split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a comma-separated list of integers >= 1`);
    return n;
  });
const nameList = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Adds `bench` to the program. `io` redirects output (tests). */
export function registerBench(program: Command, io?: BenchIO): Command {
  return program
    .command('bench')
    .description('benchmark decoding strategies against plain decoding (Spec-Bench protocol), or --kernels')
    .option('-m, --model <dir>', 'Hugging Face model folder')
    .option('--dummy <preset>', "random weights of a preset's shape (e.g. llama-2-7b); prompts become seeded token ids")
    .option('-p, --prompts <file>', 'prompts JSONL: {id, category, prompt} or Spec-Bench {question_id, category, turns}')
    .option('-s, --strategies <list>', `comma-separated strategies (default: all registered); plain always runs`, nameList)
    .option('-n, --max-new-tokens <n>', `tokens generated per prompt (EOS ignored; default ${DEFAULT_MAX_NEW_TOKENS})`, intArg('--max-new-tokens', 1))
    .option('--warmup <n>', 'warm-up generations per strategy, excluded (default 2; --kernels: forwards, default 3)', intArg('--warmup'))
    .option('--repeats <n>', 'timed runs per (strategy, prompt), median kept (default 1; --kernels: 10)', intArg('--repeats', 1))
    .option('--limit <n>', 'only the first n prompts (with --dummy alone: how many prompts)', intArg('--limit', 1))
    .option('--json <file>', 'write the full results as JSON')
    .option('--chart <file>', 'write an SVG chart of speedup per category and strategy')
    .option('--peers <file>', 'merge a peer JSON of the same shape (scripts/peers/hf_bench.py) into the table and chart')
    .addOption(new Option('--backend <kind>', 'compute backend').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--context <n>', 'context length (prompts longer than context - max-new-tokens - 80 are cut from the left)', intArg('--context', 2))
    .option('--threads <n>', 'CPU threads', intArg('--threads', 1))
    .option('--seed <n>', 'seed of dummy weights and dummy prompts', intArg('--seed'))
    .option('--progress-every <n>', 'without a terminal, print progress every n prompts (default 10)', intArg('--progress-every', 1))
    .option('--kernels', 'kernel-level benchmark: forward time of n = 1..64 pending tokens at cache 512 / 2048, plain decode tok/s')
    .option('--kernel-ns <list>', `--kernels chain lengths (default ${DEFAULT_KERNEL_NS.join(',')})`, intList('--kernel-ns'))
    .option('--kernel-caches <list>', `--kernels cache lengths (default ${DEFAULT_KERNEL_CACHES.join(',')})`, intList('--kernel-caches'))
    .option('--draft-quant <mode>', "int8: load the int8 weight copy, so cas-spec can draft with its q1 variant (default none)")
    .option('--quant <mode>', '--kernels: also time every forward in this quant mode (1 = int8 W8A8 drafts) and its ratio to full precision', intArg('--quant', 1))
    .action(async (opts: BenchCliOptions) => {
      const ac = new AbortController();
      const onInt = () => ac.abort(new Error('interrupted'));
      process.once('SIGINT', onInt);
      try {
        await benchCommand({ ...opts, signal: ac.signal }, io ?? defaultIO());
      } finally {
        process.off('SIGINT', onInt);
      }
    });
}
