// Types for fuzz-lib.mjs (shared by test/fuzz-loaders.test.ts and fuzz.mjs).
export interface FuzzApi {
  openSafetensors: unknown;
  readLlamaConfig: unknown;
  loadTokenizer: unknown;
  listWeightFiles: unknown;
  iterateTensors: unknown;
  Model: unknown;
  CasspecError: unknown;
}
export interface Corpus {
  root: string;
  files: Record<string, string | Buffer>;
}
export interface CaseResult {
  target: string;
  what: string;
  outcome?: string;
  unexpected?: string;
}
export interface Tally {
  total: number;
  ok: number;
  errors: Record<string, number>;
  unexpected: { i: number; target: string; what: string; error: string }[];
  unexpectedCount: number;
  byTarget: Record<string, { total: number; ok: number; errors: number; unexpected: number }>;
  slowest: { ms: number; i?: number; target?: string; what?: string };
}
export const TARGETS: string[];
export function makeRng(seed: number): { next(): number; int(n: number): number; chance(p: number): boolean; pick<T>(a: T[]): T };
export function caseSeed(seed: number, i: number): number;
export function smallTokenizer(fullJsonText: string): string;
export function encodeSafetensors(header: unknown, data?: Uint8Array, lengthOverride?: bigint): Buffer;
export function buildCorpus(root: string, tokenizerJsonText: string, tokenizerConfigText: string): Promise<Corpus>;
export function prepareWorkDir(dir: string, corpus: Corpus): Promise<void>;
export function runCase(
  api: FuzzApi,
  corpus: Corpus,
  dir: string,
  seed: number,
  i: number,
  opts?: { target?: string; loadShare?: number; onCase?: (c: { i: number; target: string; what: string }) => void },
): Promise<CaseResult>;
export function newTally(): Tally;
export function record(tally: Tally, res: CaseResult, ms: number, i: number): void;
