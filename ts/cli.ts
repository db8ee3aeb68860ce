#!/usr/bin/env node
// casspec command line: `casspec generate ...` (more commands register themselves in cli/).
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Model } from './model.js';
import { CasspecError } from './errors.js';
import { isStrategyName, strategyNames, DEFAULT_STRATEGY } from './decode/registry.js';
import { doctor, formatDoctor } from './doctor.js';
import { registerBench } from './bench/command.js';

const strategyName = (v: string): string => {
  if (!isStrategyName(v)) throw new InvalidArgumentError(`unknown strategy '${v}' (${strategyNames().join(', ')}, or cas-spec:<keys> such as cas-spec:pld+rec)`);
  return v;
};
const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
  return n;
};
const num = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative number`);
  return n;
};

const program = new Command('casspec').description('Lossless self-speculative decoding for Llama models').showHelpAfterError();

program
  .command('generate')
  .description('stream a completion of a prompt')
  .requiredOption('-m, --model <dir>', 'Hugging Face model folder (config.json, *.safetensors, tokenizer.json)')
  .option('-p, --prompt <text>', 'prompt text')
  .option('-f, --prompt-file <file>', 'read the prompt from a file')
  .option('-n, --max-tokens <n>', 'most new tokens', int('--max-tokens'), 256)
  .option('-t, --temperature <t>', 'sampling temperature (0 = greedy)', num('--temperature'), 0)
  .option('--top-p <p>', 'nucleus sampling mass', num('--top-p'), 1)
  .option('-s, --seed <n>', 'sampling seed', int('--seed'), 0)
  .option('--strategy <name>', `decoding strategy: ${strategyNames().join(', ')}, or cas-spec:<variant keys joined by +>`, strategyName, DEFAULT_STRATEGY)
  .addOption(new Option('--backend <kind>', 'compute backend').choices(['auto', 'cpu', 'cuda']).default('auto'))
  .option('--context <n>', 'context length (prompt + generation)', int('--context'))
  .option('--json', 'print one JSON object instead of streaming text')
  .action(async (o) => {
    if ((o.prompt === undefined) === (o.promptFile === undefined))
      throw new CasspecError('E_INVALID_ARG', 'give exactly one of --prompt or --prompt-file');
    const prompt: string = o.prompt ?? readFileSync(o.promptFile, 'utf8');
    const ac = new AbortController();
    process.once('SIGINT', () => ac.abort(new Error('interrupted')));
    const model = await Model.load(o.model, { backend: o.backend, contextLength: o.context, signal: ac.signal });
    try {
      const gen = model.generate(prompt, {
        maxTokens: o.maxTokens,
        temperature: o.temperature,
        topP: o.topP,
        seed: o.seed,
        strategy: o.strategy,
        signal: ac.signal,
      });
      if (!o.json) for await (const chunk of gen) process.stdout.write(chunk.text);
      const r = await gen.result;
      if (o.json) {
        process.stdout.write(JSON.stringify({ text: r.text, tokens: r.tokens, finishReason: r.finishReason, stats: r.stats, backend: model.info }) + '\n');
      } else {
        const s = r.stats;
        process.stderr.write(
          `\n\n[${model.info.backend}] ${s.generatedTokens} tokens, ${s.tokensPerSecond.toFixed(1)} tok/s, ` +
            `time to first token ${s.timeToFirstTokenMs.toFixed(1)} ms, strategy ${s.strategy}, ` +
            `${s.meanAccepted.toFixed(2)} tokens/step, finish: ${r.finishReason}\n`,
        );
      }
    } finally {
      model.dispose();
    }
  });

program
  .command('doctor')
  .description('print the backend, device, driver and why CUDA is or is not used')
  .option('--json', 'print JSON')
  .action(async (o) => {
    const r = await doctor();
    process.stdout.write((o.json ? JSON.stringify(r, null, 2) : formatDoctor(r)) + '\n');
  });

registerBench(program);

program.parseAsync().catch((e: unknown) => {
  const err = e as { code?: string; message?: string };
  process.stderr.write(`casspec: ${err.code ? err.code + ': ' : ''}${err.message ?? String(e)}\n`);
  process.exitCode = 1;
});
