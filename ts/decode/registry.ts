// Strategies by name: what `--strategy` and GenerateOptions.strategy accept.
import { CasspecError } from '../errors.js';
import type { NativeModel } from '../native.js';
import { PlainStrategy, type Strategy } from './strategy.js';
import { draftingStrategies } from './strategies/index.js';
import { CasSpecStrategy } from '../cascade/dytc.js';
import { layerSkipVariant, PROMPT_LOOKUP, quantVariant, TOKEN_RECYCLING, type DraftVariant } from './variants.js';

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

/** Whether `name` is a registered strategy or a cas-spec cascade ('cas-spec:pld+rec+ls40'). */
export function isStrategyName(name: string): boolean {
  return factories.has(name) || (name.startsWith('cas-spec:') && parseCascade(name.slice(9), 2) !== null);
}

export function createStrategy(name: string, env: StrategyEnv): Strategy {
  const f = factories.get(name);
  if (f) return f(env);
  const variants = name.startsWith('cas-spec:') ? parseCascade(name.slice(9), env.numLayers) : null;
  if (!variants)
    throw new CasspecError(
      'E_INVALID_ARG',
      `unknown strategy '${name}' (available: ${strategyNames().join(', ')}, or cas-spec:<variants joined by '+'>, variants pld, rec, ls<percent>, q<mode>, q<mode>ls<percent>)`,
    );
  return new CasSpecStrategy(env, { variants });
}

/**
 * A cascade spelled as variant keys joined by '+' (ablations: 'pld+rec', 'ls40+pld+rec', 'q1ls40+pld'):
 * pld = prompt lookup, rec = token recycling, lsNN = skip NN% of sub-layers, qM = quant mode M,
 * qMlsNN = both. Null when a key is not one of these.
 */
export function parseCascade(spec: string, numLayers: number): DraftVariant[] | null {
  const out: DraftVariant[] = [];
  for (const key of spec.split('+')) {
    if (key === 'pld') out.push(PROMPT_LOOKUP);
    else if (key === 'rec') out.push(TOKEN_RECYCLING);
    else {
      const m = /^(?:q(\d+))?(?:ls(\d{1,2}))?$/.exec(key);
      if (!m || (!m[1] && !m[2])) return null;
      const ls = m[2] ? layerSkipVariant(numLayers, Number(m[2]) / 100, `ls${m[2]}`) : undefined;
      out.push(m[1] ? quantVariant(Number(m[1]), ls?.skip, key) : ls!);
    }
  }
  return out.length > 0 ? out : null;
}
