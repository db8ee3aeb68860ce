// The `casspec` command as a user runs it (compiled dist/cli.js in a child process).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { modelDir } from './reference/models.js';

const run = promisify(execFile);
const cli = join(import.meta.dirname, '..', 'dist', 'cli.js');

describe('casspec CLI', () => {
  it('generate on pycode-small prints code-looking text and statistics', async () => {
    const { stdout, stderr } = await run(process.execPath, [
      cli, 'generate', '--model', modelDir('pycode-small'), '--prompt', 'def fibonacci(n):\n', '--max-tokens', '48', '--backend', 'cpu',
    ]);
    // Python-looking: several lines, indentation, a keyword and bracket punctuation.
    expect(stdout.split('\n').length).toBeGreaterThan(3);
    expect(stdout).toMatch(/ {4}\S/);
    expect(stdout).toMatch(/\b(return|if|for|def|in|self|None|import)\b/);
    expect(stdout).toMatch(/[()[\]]/);
    expect(stderr).toMatch(/\d+ tokens, [\d.]+ tok\/s, time to first token [\d.]+ ms/);
  });

  it('--json prints one object with tokens and stats', async () => {
    const { stdout } = await run(process.execPath, [
      cli, 'generate', '-m', modelDir('pycode-tiny'), '-p', 'import os\n', '-n', '8', '--json', '--backend', 'cpu',
    ]);
    const r = JSON.parse(stdout);
    expect(r.tokens.length).toBeLessThanOrEqual(8);
    expect(r.stats.generatedTokens).toBe(r.tokens.length);
    expect(typeof r.text).toBe('string');
  });

  it('bad input exits 1 with a coded message, no crash', async () => {
    const bad = await run(process.execPath, [cli, 'generate', '-m', '/nonexistent', '-p', 'x']).catch((e) => e);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/casspec: E_CONFIG: .*nonexistent/);
    const both = await run(process.execPath, [cli, 'generate', '-m', modelDir('pycode-tiny')]).catch((e) => e);
    expect(both.code).toBe(1);
    expect(both.stderr).toMatch(/E_INVALID_ARG/);
    const strat = await run(process.execPath, [cli, 'generate', '-m', modelDir('pycode-tiny'), '-p', 'x', '--strategy', 'cas-spec:pld+nope']).catch((e) => e);
    expect(strat.code).toBe(1);
    expect(strat.stderr).toMatch(/unknown strategy 'cas-spec:pld\+nope'/);
  });

  it('doctor says which backend and why', async () => {
    const { stdout } = await run(process.execPath, [cli, 'doctor', '--json']);
    const r = JSON.parse(stdout);
    expect(['cpu', 'cuda']).toContain(r.backend);
    expect(r.cudaReason.length).toBeGreaterThan(0);
    expect(r.device.length).toBeGreaterThan(0);
  });
});
