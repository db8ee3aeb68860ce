#!/usr/bin/env node
// Re-renders a saved `casspec bench --json` document, merged with peers' JSON (e.g. hf_bench.py),
// as one table and one chart. With --same-prompts, the casspec document is cut to the prompts the
// first peer ran, so every row covers the same prompts.
//   node scripts/bench-report.mjs MAIN.json [--peers a.json,b.json] [--same-prompts] [--chart out.svg]
import { writeFileSync } from 'node:fs';
const { loadBenchJson, formatReport } = await import('../dist/bench/report.js');
const { benchChart } = await import('../dist/bench/chart.js');
const { buildBenchJson } = await import('../dist/bench/report.js');
const args = process.argv.slice(2);
const opt = (k) => (args.includes(k) ? args[args.indexOf(k) + 1] : undefined);
let main = await loadBenchJson(args[0]);
const peers = await Promise.all((opt('--peers') ?? '').split(',').filter(Boolean).map(loadBenchJson));
if (args.includes('--same-prompts') && peers[0]) {
  const ids = new Set(peers[0].perPrompt.map((p) => p.id));
  const perPrompt = main.perPrompt.filter((p) => ids.has(p.id));
  main = rebuild(main, perPrompt);
}
process.stdout.write(formatReport(main, peers) + '\n');
const chart = opt('--chart');
if (chart) writeFileSync(chart, benchChart(main, peers));

// Recompute the summary of a document from a subset of its per-prompt records.
function rebuild(doc, perPrompt) {
  const cats = ['all', ...new Set(perPrompt.map((p) => p.category))];
  const strategies = [...new Set(perPrompt.map((p) => p.strategy))];
  const summary = [];
  for (const s of strategies)
    for (const c of cats) {
      const rs = perPrompt.filter((p) => p.strategy === s && (c === 'all' || p.category === c));
      const ref = perPrompt.filter((p) => p.strategy === doc.protocol.reference && (c === 'all' || p.category === c));
      const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const tps = mean(rs.map((p) => p.tokensPerSecond));
      const steps = rs.reduce((a, p) => a + p.steps, 0);
      summary.push({
        strategy: s, category: c, prompts: rs.length, tokensPerSecond: tps,
        speedup: tps / mean(ref.map((p) => p.tokensPerSecond)),
        meanAccepted: steps ? rs.reduce((a, p) => a + p.meanAccepted * p.steps, 0) / steps : 0,
        identicalPct: (100 * rs.filter((p) => p.identical).length) / rs.length,
      });
    }
  return { ...doc, perPrompt, summary, protocol: { ...doc.protocol, prompts: new Set(perPrompt.map((p) => p.id)).size } };
}
