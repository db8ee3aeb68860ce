// `casspec doctor`: which binary and backend this machine gets, and why.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { native, nativeChoice, packageRoot } from './native.js';

export interface DoctorReport {
  version: string;
  node: string;
  platform: string;
  binary: string;
  binarySource: string;
  /** Binaries tried first and passed over, with the reason. */
  skipped: string[];
  cudaUsable: boolean;
  cudaReason: string;
  backend: 'cpu' | 'cuda';
  device: string;
}

export async function doctor(): Promise<DoctorReport> {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  const addon = native();
  const { path, why, skipped } = nativeChoice();
  const cuda = addon.cudaStatus();
  const backend = cuda.usable ? 'cuda' : 'cpu';
  // A one-layer dummy model on the chosen backend reports the device as the engine sees it.
  const m = addon.createModel(
    { vocabSize: 64, hiddenSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 32, intermediateSize: 128, maxPositions: 16, ropeTheta: 10000, rmsNormEps: 1e-5, tieWordEmbeddings: true },
    { backend },
  );
  const device = m.info().device;
  m.dispose();
  return {
    version: pkg.version,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    binary: path,
    binarySource: why,
    skipped,
    cudaUsable: cuda.usable,
    cudaReason: cuda.reason,
    backend,
    device,
  };
}

export function formatDoctor(r: DoctorReport): string {
  return [
    `casspec ${r.version} on node ${r.node} (${r.platform})`,
    `binary:  ${r.binary} (${r.binarySource})`,
    `backend: ${r.backend}${r.backend === 'cuda' ? '' : ' (CPU reference)'}`,
    `device:  ${r.device}`,
    `cuda:    ${r.cudaUsable ? 'usable' : 'not used'}: ${r.cudaReason}`,
    ...r.skipped.map((s) => `skipped: ${s}`),
  ].join('\n');
}
