// The drafting strategies by name, for the registry (`--strategy`, GenerateOptions.strategy).
import type { Strategy } from '../strategy.js';
import type { StrategyEnv } from '../registry.js';
import { CasSpecStrategy } from '../../cascade/dytc.js';
import {
  HorizontalCascadeStrategy,
  LayerSkipStrategy,
  LayerSkipTreeStrategy,
  PldStrategy,
  StaticTreeStrategy,
  VerticalCascadeStrategy,
} from './simple.js';

export const draftingStrategies: [string, (env: StrategyEnv) => Strategy][] = [
  ['cas-spec', (env) => new CasSpecStrategy(env)],
  ['pld', (env) => new PldStrategy(env)],
  ['layerskip', (env) => new LayerSkipStrategy(env)],
  ['layerskip-tree', (env) => new LayerSkipTreeStrategy(env)],
  ['static-tree', (env) => new StaticTreeStrategy(env)],
  ['vc', (env) => new VerticalCascadeStrategy(env)],
  ['hc', (env) => new HorizontalCascadeStrategy(env)],
];

export { CasSpecStrategy } from '../../cascade/dytc.js';
export * from './simple.js';
export { DraftingStrategy, MAX_TREE } from './base.js';
