#!/usr/bin/env node
// Time to first token on the GPU for different prefill chunk sizes (run by gpu-suite.sh `prefill`).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
const app = process.env.CASSPEC_APP;
const { Model } = await import(join(app, 'dist/index.js'));
const prompts = readFileSync(process.env.CASSPEC_PROMPTS, 'utf8').trim().split('\n').slice(0, 12).map((l) => JSON.parse(l).prompt);
const m = await Model.load(join(process.env.CASSPEC_MODELS, 'pycode-small'), { backend: 'cuda' });
for (const chunk of [64, 256, 2048, 64, 256, 2048]) {
  process.env.CASSPEC_PREFILL_CHUNK = String(chunk);
  const ttft = [];
  for (const p of prompts) ttft.push((await m.complete(p, { maxTokens: 1, strategy: 'plain' })).stats.timeToFirstTokenMs);
  ttft.sort((a, b) => a - b);
  console.log(`prefill chunk ${chunk}: median time to first token ${ttft[6].toFixed(2)} ms over ${prompts.length} prompts`);
}
m.dispose();
