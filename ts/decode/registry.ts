// Strategies by name: what `--strategy` and GenerateOptions.strategy accept.
import { CasspecError } from '../errors.js';
import type { NativeModel } from '../native.js';
import { PlainStrategy, type Strategy } from './strategy.js';
import { draftingStrategies } from './strategies/index.js';

export interface StrategyEnv {
  numLayers: number;
  vocabSize: number;
  /** For strategies that need scratch contexts (e.g. a layer-skip search over recent text). */
  model: NativeModel;
}

type Factory = (env: StrategyEnv) => Strategy;

const factories = new Map<string, Factory>([['plain', () => new PlainStrategy()], ...draftingStrategies]);

export const DEFAULT_STRATEGY = 'cas-spec';

export function strategyNames(): string[] {
  return [...factories.keys()];
}

export function createStrategy(name: string, env: StrategyEnv): Strategy {
  const f = factories.get(name);
  if (!f) throw new CasspecError('E_INVALID_ARG', `unknown strategy '${name}' (available: ${strategyNames().join(', ')})`);
  return f(env);
}
