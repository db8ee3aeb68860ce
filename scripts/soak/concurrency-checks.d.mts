// Types for concurrency-checks.mjs (shared by test/robustness.test.ts and gpu-concurrency.mjs).
export interface CheckEnv {
  api: { Model: unknown; CasspecError: unknown };
  counts: () => { models: number; contexts: number };
  backend: 'cpu' | 'cuda';
  tinyDir: string;
  smallDir: string;
  distDir: string;
  log?: (msg: string) => void;
}
export interface Check {
  name: string;
  run(): Promise<Record<string, unknown> | undefined>;
}
export const PROMPTS: string[];
export function sleep(ms: number): Promise<void>;
export function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<number>;
export function makeChecks(env: CheckEnv): Check[];
