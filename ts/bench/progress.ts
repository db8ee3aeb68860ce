// Benchmark progress on stderr: a redrawn bar when the stream is a terminal, otherwise one plain
// line every `every` prompts (logs and CI stay readable).
import type { BenchProgress } from './run.js';

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressReporter {
  update(p: BenchProgress): void;
  /** Clears the bar (TTY) before the report is printed. */
  finish(): void;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function createProgress(stream: ProgressStream, opts: { prompts: number; every?: number }): ProgressReporter {
  const every = Math.max(1, opts.every ?? 10);
  let lastDraw = 0;
  let drawn = false;
  if (stream.isTTY) {
    return {
      update(p) {
        const now = performance.now();
        if (now - lastDraw < 80 && p.done < p.total) return;
        lastDraw = now;
        const width = Math.max(40, (stream.columns ?? 100) - 1);
        const frac = p.total > 0 ? p.done / p.total : 1;
        const eta = p.phase === 'run' && p.done > 0 ? (p.elapsedMs / p.done) * (p.total - p.done) : NaN;
        const label = p.phase === 'warmup' ? 'warm-up' : 'bench  ';
        const tail = ` ${(frac * 100).toFixed(0).padStart(3)}% ${p.done}/${p.total}` + (p.phase === 'run' ? ` ETA ${formatDuration(eta)}` : '') + ` ${p.promptId} ${p.strategy}`;
        const barW = Math.max(10, Math.min(30, width - label.length - tail.length - 3));
        const full = Math.round(frac * barW);
        let line = `${label} [${'#'.repeat(full)}${'.'.repeat(barW - full)}]${tail}`;
        if (line.length > width) line = line.slice(0, width);
        stream.write(`\r${line}\x1b[K`);
        drawn = true;
      },
      finish() {
        if (drawn) stream.write('\r\x1b[K');
        drawn = false;
      },
    };
  }
  return {
    update(p) {
      if (p.phase !== 'run') {
        if (p.done === p.total) stream.write(`warm-up done (${p.total} generations, excluded)\n`);
        return;
      }
      const perPrompt = p.total / opts.prompts;
      if (p.done % perPrompt !== 0) return; // a prompt is complete under every strategy and repeat
      const finished = p.done / perPrompt;
      if (finished % every !== 0 && finished !== opts.prompts) return;
      const eta = (p.elapsedMs / p.done) * (p.total - p.done);
      stream.write(`bench: ${finished}/${opts.prompts} prompts, ${formatDuration(p.elapsedMs)} elapsed, ETA ${formatDuration(eta)}\n`);
    },
    finish() {},
  };
}
