// The benchmark's JSON document (with a validator) and its text table, optionally merged with a
// peer's JSON of the same shape (scripts/peers/hf_bench.py writes one for Hugging Face transformers).
import { readFile } from 'node:fs/promises';
import { CasspecError } from '../errors.js';
import { ALL_CATEGORIES } from './prompts.js';
import type { BenchRun, SummaryRow } from './run.js';

export const BENCH_SCHEMA = 'casspec-bench/1';

export interface BenchDevice {
  /** 'cpu', 'cuda' (casspec) or e.g. 'cuda' / 'cpu' for a peer. */
  backend: string;
  /** Device name (GPU model, or CPU description). */
  name: string;
  reason?: string;
  host?: Record<string, unknown>;
}

export interface BenchModelInfo {
  name: string;
  path?: string;
  /** Dummy-weight preset, when the weights were random. */
  dummy?: string;
  config?: Record<string, unknown>;
}

export interface BenchProtocol {
  maxNewTokens: number;
  warmup: number;
  repeats: number;
  greedy: true;
  batchSize: 1;
  ignoreEos: boolean;
  prompts: number;
  promptsFile?: string;
  /** The strategy that speedup and identity are relative to. */
  reference: string;
  timing: string;
  speedup: string;
}

export interface PerPromptJson {
  id: string;
  category: string;
  strategy: string;
  tokens: number;
  ms: number;
  tokensPerSecond: number;
  meanAccepted: number | null;
  identical: boolean;
  [extra: string]: unknown;
}

export interface BenchJson {
  schema: string;
  /** 'casspec', or the peer's name ('transformers'). */
  tool: string;
  date: string;
  device: BenchDevice;
  model: BenchModelInfo;
  protocol: BenchProtocol;
  strategies: string[];
  perPrompt: PerPromptJson[];
  summary: SummaryRow[];
  /** Reference (plain) output ids per prompt id: lets a merge compare implementations token for token. */
  referenceIds?: Record<string, number[]>;
  notes?: string[];
}

export interface BuildJsonInput {
  run: BenchRun;
  device: BenchDevice;
  model: BenchModelInfo;
  maxNewTokens: number;
  warmup: number;
  repeats: number;
  promptsFile?: string;
  date?: Date;
}

/** 'cuda (NVIDIA H100 ...)', or just the name when it already says the backend ('cpu (16 threads)'). */
export function deviceLabel(d: BenchDevice): string {
  return d.name.toLowerCase().startsWith(d.backend.toLowerCase()) ? d.name : `${d.backend} (${d.name})`;
}

const r4 = (x: number) => (Number.isFinite(x) ? Math.round(x * 1e4) / 1e4 : x);

export function buildBenchJson(inp: BuildJsonInput): BenchJson {
  const { run } = inp;
  const notes: string[] = [];
  if (run.truncatedPrompts.length)
    notes.push(`${run.truncatedPrompts.length} prompt(s) were cut from the left to fit the context: ${run.truncatedPrompts.join(', ')}`);
  if (run.nondeterministic.length)
    notes.push(`repeats disagreed on the tokens for: ${run.nondeterministic.join(', ')} (non-deterministic kernels?)`);
  const short = run.perPrompt.filter((r) => r.tokens !== inp.maxNewTokens);
  if (short.length) notes.push(`${short.length} generation(s) stopped before ${inp.maxNewTokens} tokens (finish reason context)`);
  return {
    schema: BENCH_SCHEMA,
    tool: 'casspec',
    date: (inp.date ?? new Date()).toISOString(),
    device: inp.device,
    model: inp.model,
    protocol: {
      maxNewTokens: inp.maxNewTokens,
      warmup: inp.warmup,
      repeats: inp.repeats,
      greedy: true,
      batchSize: 1,
      ignoreEos: true,
      prompts: new Set(run.perPrompt.map((r) => r.id)).size,
      promptsFile: inp.promptsFile,
      reference: run.strategies[0],
      timing:
        'per generation: prefill + decoding of maxNewTokens tokens (EOS ignored), device-synchronised; ' +
        'median over repeats; warm-up excluded; strategies interleaved per prompt',
      speedup: "mean per-prompt tokens/s divided by the reference's mean per-prompt tokens/s, same run and category",
    },
    strategies: run.strategies,
    perPrompt: run.perPrompt.map((r) => ({
      ...r,
      ms: r4(r.ms),
      tokensPerSecond: r4(r.tokensPerSecond),
      meanAccepted: r4(r.meanAccepted),
      msRepeats: r.msRepeats.map(r4),
      draftMs: r4(r.draftMs),
      verifyMs: r4(r.verifyMs),
      firstTokenMs: r4(r.firstTokenMs),
    })),
    summary: run.summary.map((s) => ({
      ...s,
      tokensPerSecond: r4(s.tokensPerSecond),
      speedup: r4(s.speedup),
      meanAccepted: s.meanAccepted === null ? null : r4(s.meanAccepted),
      identicalPct: r4(s.identicalPct),
    })),
    referenceIds: run.referenceIds,
    notes,
  };
}

/** Every problem with a would-be BenchJson (empty when valid). */
export function benchJsonProblems(obj: unknown): string[] {
  const p: string[] = [];
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const num = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  const int = (x: unknown, min: number) => Number.isInteger(x) && (x as number) >= min;
  if (!isObj(obj)) return ['the document is not a JSON object'];
  const o = obj;
  if (typeof o.schema !== 'string' || !o.schema.startsWith('casspec-bench/')) p.push(`schema must be "${BENCH_SCHEMA}"`);
  if (typeof o.tool !== 'string' || o.tool === '') p.push('tool must be a non-empty string');
  if (typeof o.date !== 'string' || Number.isNaN(Date.parse(o.date))) p.push('date must be an ISO date string');
  if (!isObj(o.device) || typeof o.device.backend !== 'string' || typeof o.device.name !== 'string')
    p.push('device must be an object with string backend and name');
  if (!isObj(o.model) || typeof o.model.name !== 'string') p.push('model must be an object with a string name');
  const pr = o.protocol;
  let reference = 'plain';
  if (!isObj(pr)) p.push('protocol must be an object');
  else {
    if (!int(pr.maxNewTokens, 1)) p.push('protocol.maxNewTokens must be an integer >= 1');
    if (!int(pr.warmup, 0)) p.push('protocol.warmup must be an integer >= 0');
    if (!int(pr.repeats, 1)) p.push('protocol.repeats must be an integer >= 1');
    if (pr.greedy !== true) p.push('protocol.greedy must be true');
    if (pr.batchSize !== undefined && pr.batchSize !== 1) p.push('protocol.batchSize must be 1');
    if (typeof pr.reference === 'string') reference = pr.reference;
    else p.push('protocol.reference must name the reference strategy');
  }
  const strategies = Array.isArray(o.strategies) && o.strategies.every((s) => typeof s === 'string') ? (o.strategies as string[]) : null;
  if (!strategies || strategies.length === 0) p.push('strategies must be a non-empty array of strings');
  else if (!strategies.includes(reference)) p.push(`strategies must include the reference "${reference}"`);
  const known = new Set(strategies ?? []);

  if (!Array.isArray(o.perPrompt)) p.push('perPrompt must be an array');
  else
    o.perPrompt.forEach((r: unknown, i) => {
      const at = `perPrompt[${i}]`;
      if (!isObj(r)) return void p.push(`${at} must be an object`);
      for (const k of ['id', 'category', 'strategy']) if (typeof r[k] !== 'string') p.push(`${at}.${k} must be a string`);
      if (typeof r.strategy === 'string' && !known.has(r.strategy)) p.push(`${at}.strategy "${r.strategy}" is not in strategies`);
      if (!int(r.tokens, 0)) p.push(`${at}.tokens must be a non-negative integer`);
      if (!num(r.ms) || (r.ms as number) < 0) p.push(`${at}.ms must be a number >= 0`);
      if (!num(r.tokensPerSecond) || (r.tokensPerSecond as number) < 0) p.push(`${at}.tokensPerSecond must be a number >= 0`);
      if (r.meanAccepted !== null && !num(r.meanAccepted)) p.push(`${at}.meanAccepted must be a number or null`);
      if (typeof r.identical !== 'boolean') p.push(`${at}.identical must be a boolean`);
      if (r.strategy === reference && r.identical === false) p.push(`${at}: the reference cannot differ from itself`);
    });

  if (!Array.isArray(o.summary)) p.push('summary must be an array');
  else {
    const seen = new Set<string>();
    o.summary.forEach((r: unknown, i) => {
      const at = `summary[${i}]`;
      if (!isObj(r)) return void p.push(`${at} must be an object`);
      if (typeof r.strategy !== 'string' || !known.has(r.strategy)) p.push(`${at}.strategy must be one of strategies`);
      if (typeof r.category !== 'string') p.push(`${at}.category must be a string`);
      const key = `${r.strategy}\u0000${r.category}`;
      if (seen.has(key)) p.push(`${at}: duplicate row for ${r.strategy} / ${r.category}`);
      seen.add(key);
      if (!num(r.tokensPerSecond) || (r.tokensPerSecond as number) < 0) p.push(`${at}.tokensPerSecond must be a number >= 0`);
      if (!num(r.speedup) || (r.speedup as number) < 0) p.push(`${at}.speedup must be a number >= 0`);
      if (r.meanAccepted !== null && !num(r.meanAccepted)) p.push(`${at}.meanAccepted must be a number or null`);
      if (!num(r.identicalPct) || (r.identicalPct as number) < 0 || (r.identicalPct as number) > 100)
        p.push(`${at}.identicalPct must be a number in 0..100`);
      if (r.strategy === reference && num(r.speedup) && Math.abs((r.speedup as number) - 1) > 1e-3)
        p.push(`${at}: the reference's speedup must be 1`);
    });
    for (const s of known) if (!seen.has(`${s}\u0000${ALL_CATEGORIES}`)) p.push(`summary has no "${ALL_CATEGORIES}" row for ${s}`);
  }
  return p;
}

/** Returns obj typed as BenchJson, or throws E_INVALID_ARG listing every problem. */
export function validateBenchJson(obj: unknown, source = 'benchmark JSON'): BenchJson {
  const problems = benchJsonProblems(obj);
  if (problems.length)
    throw new CasspecError('E_INVALID_ARG', `${source} is not a valid benchmark document:\n  - ${problems.join('\n  - ')}`);
  return obj as BenchJson;
}

/** Reads and validates a peer's JSON (e.g. from scripts/peers/hf_bench.py). */
export async function loadBenchJson(file: string): Promise<BenchJson> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CasspecError('E_INVALID_ARG', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new CasspecError('E_INVALID_ARG', `${file} is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return validateBenchJson(obj, file);
}

// ---------------------------------------------------------------------------------------------
// Tables

export interface TableRow extends SummaryRow {
  /** Which document the row comes from (the main one: 'casspec'). */
  tool: string;
  /** tokens/s relative to the peer's reference (e.g. hf-plain), same category; when peers are merged. */
  vsPeer?: number;
}

/** Rows of the main document followed by each peer's, with cross-tool ratios when peers exist. */
export function mergedRows(main: BenchJson, peers: BenchJson[] = []): TableRow[] {
  const rows: TableRow[] = main.summary.map((r) => ({ ...r, tool: main.tool }));
  for (const pe of peers) rows.push(...pe.summary.map((r) => ({ ...r, tool: pe.tool })));
  const peer = peers[0];
  if (peer) {
    const base = new Map(peer.summary.filter((r) => r.strategy === peer.protocol.reference).map((r) => [r.category, r.tokensPerSecond]));
    for (const r of rows) {
      const b = base.get(r.category);
      if (b && b > 0) r.vsPeer = r.tokensPerSecond / b;
    }
  }
  return rows;
}

/** Share of prompts whose reference outputs agree between two documents (null when not comparable). */
export function crossIdentity(a: BenchJson, b: BenchJson): { identical: number; compared: number } | null {
  if (!a.referenceIds || !b.referenceIds) return null;
  let identical = 0;
  let compared = 0;
  for (const [id, ids] of Object.entries(a.referenceIds)) {
    const other = b.referenceIds[id];
    if (!other) continue;
    compared++;
    if (other.length === ids.length && other.every((t, i) => t === ids[i])) identical++;
  }
  return compared ? { identical, compared } : null;
}

function fmt(x: number | null | undefined, digits: number, suffix = ''): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits) + suffix;
}

/** Lays out rows of cells as an aligned text table (numbers right-aligned). */
export function textTable(header: string[], rows: string[][], rightAlign: boolean[]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (rightAlign[c] ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The human-readable report: protocol lines, then one table grouped by category. */
export function formatReport(main: BenchJson, peers: BenchJson[] = []): string {
  const pr = main.protocol;
  const out: string[] = [];
  const model = main.model.dummy ? `${main.model.name} (dummy weights)` : main.model.name;
  out.push(`casspec bench: ${model} on ${deviceLabel(main.device)}`);
  out.push(
    `greedy, batch 1, ${pr.maxNewTokens} new tokens per prompt (EOS ignored, so every prompt generates exactly ${pr.maxNewTokens}), ` +
      `${pr.prompts} prompts, warm-up ${pr.warmup} per strategy (excluded), median of ${pr.repeats} repeat${pr.repeats === 1 ? '' : 's'}`,
  );
  out.push(`speedup = mean per-prompt tokens/s / ${pr.reference}'s (same run); identical = same token list as ${pr.reference}`);
  const rows = mergedRows(main, peers);
  const withPeer = peers.length > 0 && rows.some((r) => r.vsPeer !== undefined);
  const peerRef = peers[0]?.protocol.reference ?? '';
  const cats = [...new Set(rows.map((r) => r.category))].sort((a, b) => (a === ALL_CATEGORIES ? -1 : b === ALL_CATEGORIES ? 1 : 0));
  // With a single category, its rows repeat 'all': show 'all' only.
  const shown = cats.length === 2 ? [ALL_CATEGORIES] : cats;
  const header = ['category', 'strategy', 'prompts', 'tok/s', 'speedup', 'accepted', 'identical'];
  const right = [false, false, true, true, true, true, true];
  if (withPeer) {
    header.push(`vs ${peerRef}`);
    right.push(true);
  }
  const cells: string[][] = [];
  for (const c of shown) {
    let first = true;
    for (const r of rows.filter((x) => x.category === c)) {
      const label = r.tool === main.tool ? r.strategy : `${r.strategy} *`;
      const row = [first ? c : '', label, String(r.prompts ?? ''), fmt(r.tokensPerSecond, 1), fmt(r.speedup, 2, 'x'), fmt(r.meanAccepted, 2), fmt(r.identicalPct, 1, '%')];
      if (withPeer) row.push(fmt(r.vsPeer, 2, 'x'));
      cells.push(row);
      first = false;
    }
  }
  out.push('');
  out.push(textTable(header, cells, right));
  for (const pe of peers) {
    out.push('');
    out.push(
      `* ${pe.tool} on ${deviceLabel(pe.device)}, ${pe.protocol.maxNewTokens} new tokens, median of ${pe.protocol.repeats}: ` +
        `speedup and identical relative to ${pe.protocol.reference}`,
    );
    if (pe.protocol.maxNewTokens !== pr.maxNewTokens || pe.protocol.prompts !== pr.prompts)
      out.push(`  note: the peer ran a different protocol (${pe.protocol.prompts} prompts, ${pe.protocol.maxNewTokens} new tokens)`);
    const x = crossIdentity(main, pe);
    if (x) out.push(`  ${pe.protocol.reference} and ${pr.reference} produced identical tokens for ${x.identical} of ${x.compared} prompts`);
  }
  if (withPeer) out.push(`vs ${peerRef} = tokens/s / ${peerRef}'s tokens/s in the same category`);
  for (const n of main.notes ?? []) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}
