// Where the test models live: $CASSPEC_MODELS/<name> when set, else ../shared/models/<name> next to
// the repository root.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function modelDir(name: string): string {
  const tried: string[] = [];
  const env = process.env.CASSPEC_MODELS;
  if (env) tried.push(join(resolve(env), name));
  tried.push(join(repoRoot, '..', 'shared', 'models', name));
  for (const dir of tried) if (existsSync(join(dir, 'config.json'))) return dir;
  throw new Error(`model '${name}' not found; looked in ${tried.join(', ')} (set CASSPEC_MODELS to the folder holding it)`);
}
