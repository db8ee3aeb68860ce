// A self-contained SVG chart of the benchmark: speedup over plain per category (groups) and
// strategy (bars), with axis, grid, value labels, a 1.0x reference line and a legend. No deps.
import { ALL_CATEGORIES } from './prompts.js';
import { deviceLabel, mergedRows, type BenchJson } from './report.js';

export interface ChartBar {
  /** Legend entry (strategy, or "strategy (tool)" for peers). */
  series: string;
  category: string;
  speedup: number;
  tokensPerSecond: number;
  identicalPct: number;
  meanAccepted: number | null;
  /** Drawn hatched (a peer implementation). */
  peer: boolean;
}

export interface ChartOptions {
  title: string;
  subtitle?: string;
  /** Label of the dashed 1.0x line (default 'plain = 1.0x'). */
  referenceLabel?: string;
}

// Colour-blind-friendly palette (Okabe-Ito, with the hard-to-read yellow moved late).
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#6A3D9A', '#8C6D31', '#F0E442', '#000000', '#7B4173'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
/** Tick label: as many decimals as the step needs. */
const tick = (v: number, step: number) => v.toFixed(step >= 1 ? 0 : step >= 0.1 && Math.abs(step * 10 - Math.round(step * 10)) < 1e-9 ? 1 : 2);

/** Greedy word wrap to a pixel width (estimated). */
function wrap(text: string, width: number, size: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const word of text.split(' ')) {
    const cand = cur ? `${cur} ${word}` : word;
    if (cur && textWidth(cand, size) > width) {
      lines.push(cur);
      cur = word;
    } else cur = cand;
  }
  if (cur) lines.push(cur);
  return lines;
}

/** A "nice" tick step giving about `target` ticks over [0, max]. */
export function niceStep(max: number, target = 5): number {
  const raw = max / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

/** Rough text width in px for a sans-serif font (layout only: legends and wrapping). */
const textWidth = (s: string, size: number) => s.length * size * 0.58;

export function renderChart(bars: ChartBar[], opts: ChartOptions): string {
  const categories = [...new Set(bars.map((b) => b.category))].sort((a, b) =>
    a === ALL_CATEGORIES ? -1 : b === ALL_CATEGORIES ? 1 : 0,
  );
  const series = [...new Set(bars.map((b) => b.series))];
  const isPeer = new Map(bars.map((b) => [b.series, b.peer]));
  // Own strategies take palette colours in order; a peer's series reuses the colour of the
  // strategy it mirrors ('hf-pld (transformers)' -> 'pld'), hatched, else the next free colour.
  const colour = new Map<string, string>();
  let next = 0;
  for (const s of series.filter((x) => !isPeer.get(x))) colour.set(s, PALETTE[next++ % PALETTE.length]);
  for (const s of series.filter((x) => isPeer.get(x))) {
    const base = s.replace(/ \(.*\)$/, '').replace(/^[a-z]+-/, '');
    colour.set(s, colour.get(base) ?? PALETTE[next++ % PALETTE.length]);
  }

  const barW = series.length <= 3 ? 30 : series.length <= 6 ? 22 : 16;
  const barGap = 3;
  const groupPad = 28;
  const groupW = series.length * (barW + barGap) - barGap;
  const left = 64;
  const right = 70; // room for the reference line's label
  const plotW = Math.max(categories.length * (groupW + groupPad), 420);
  const width = left + plotW + right;

  // Legend rows (wrap to the plot width).
  const legendItems = series.map((s) => ({ s, w: 18 + textWidth(s, 12) + 22 }));
  const legendRows: { s: string; x: number }[][] = [[]];
  let lx = 0;
  for (const it of legendItems) {
    if (lx > 0 && lx + it.w > plotW) {
      legendRows.push([]);
      lx = 0;
    }
    legendRows[legendRows.length - 1].push({ s: it.s, x: lx });
    lx += it.w;
  }

  const subtitleLines = opts.subtitle ? wrap(opts.subtitle, plotW + right - 10, 12) : [];
  const top = 52 + subtitleLines.length * 16 + (subtitleLines.length ? 6 : 0);
  const plotH = 280;
  const axisLabelH = 40;
  const legendH = legendRows.length * 20 + 8;
  const height = top + plotH + axisLabelH + legendH + 12;

  const maxV = Math.max(1.2, ...bars.map((b) => (Number.isFinite(b.speedup) ? b.speedup : 0))) * 1.12;
  const step = niceStep(maxV);
  const yMax = Math.ceil(maxV / step) * step;
  const y = (v: number) => top + plotH - (v / yMax) * plotH;

  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" role="img" aria-label="${esc(opts.title)}">`,
  );
  o.push(`<title>${esc(opts.title)}</title>`);
  o.push('<defs>');
  series.forEach((s, i) => {
    if (!isPeer.get(s)) return;
    o.push(
      `<pattern id="hatch${i}" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">` +
        `<rect width="6" height="6" fill="${colour.get(s)}" fill-opacity="0.35"/>` +
        `<line x1="0" y1="0" x2="0" y2="6" stroke="${colour.get(s)}" stroke-width="3"/></pattern>`,
    );
  });
  o.push('</defs>');
  o.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  o.push(`<text x="${left}" y="28" font-size="17" font-weight="600" fill="#1a1a1a">${esc(opts.title)}</text>`);
  subtitleLines.forEach((line, i) => o.push(`<text x="${left}" y="${50 + i * 16}" font-size="12" fill="#555">${esc(line)}</text>`));

  // Grid and y axis.
  o.push('<g class="grid" font-size="11" fill="#555">');
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    const yy = y(v).toFixed(1);
    o.push(`<line x1="${left}" x2="${left + plotW}" y1="${yy}" y2="${yy}" stroke="${v === 0 ? '#333' : '#e3e3e3'}" stroke-width="1"/>`);
    o.push(`<text x="${left - 8}" y="${yy}" dy="0.35em" text-anchor="end">${tick(v, step)}x</text>`);
  }
  o.push('</g>');
  o.push(
    `<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="12" fill="#333">speedup over plain (tokens/s ratio)</text>`,
  );

  // Reference line at 1.0x.
  const y1 = y(1).toFixed(1);
  o.push(`<line x1="${left}" x2="${left + plotW}" y1="${y1}" y2="${y1}" stroke="#c0392b" stroke-width="1.2" stroke-dasharray="5 4"/>`);
  const refLabel = (opts.referenceLabel ?? 'plain = 1.0x').split(' = ');
  refLabel.forEach((part, i) =>
    o.push(
      `<text x="${left + plotW + 6}" y="${(y(1) + (i - (refLabel.length - 1) / 2) * 13).toFixed(1)}" dy="0.35em" font-size="10.5" fill="#c0392b">${esc(i ? '= ' + part : part)}</text>`,
    ),
  );

  // Bars.
  o.push('<g class="bars">');
  categories.forEach((c, gi) => {
    const slot = plotW / categories.length;
    const gx = left + gi * slot + (slot - groupW) / 2;
    series.forEach((s, si) => {
      const b = bars.find((x) => x.category === c && x.series === s);
      if (!b || !Number.isFinite(b.speedup)) return;
      const x = gx + si * (barW + barGap);
      const yy = y(b.speedup);
      const h = Math.max(0.5, top + plotH - yy);
      const fill = b.peer ? `url(#hatch${series.indexOf(s)})` : colour.get(s)!;
      const tip =
        `${s}, ${c}: ${b.speedup.toFixed(2)}x, ${b.tokensPerSecond.toFixed(1)} tok/s` +
        (b.meanAccepted !== null ? `, ${b.meanAccepted.toFixed(2)} tokens/step` : '') +
        `, ${b.identicalPct.toFixed(0)}% identical`;
      o.push(
        `<rect class="bar" x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${barW}" height="${h.toFixed(1)}" rx="2" fill="${fill}"` +
          (b.peer ? ` stroke="${colour.get(s)}" stroke-width="1"` : '') +
          `><title>${esc(tip)}</title></rect>`,
      );
      o.push(
        `<text x="${(x + barW / 2).toFixed(1)}" y="${(yy - 4).toFixed(1)}" text-anchor="middle" font-size="${barW >= 22 ? 10 : 8.5}" fill="#333" stroke="#fff" stroke-width="3" paint-order="stroke">${b.speedup.toFixed(2)}</text>`,
      );
    });
    o.push(
      `<text x="${(gx + groupW / 2).toFixed(1)}" y="${top + plotH + 20}" text-anchor="middle" font-size="12" font-weight="${c === ALL_CATEGORIES ? 600 : 400}" fill="#1a1a1a">${esc(c)}</text>`,
    );
  });
  o.push('</g>');

  // Legend.
  o.push('<g class="legend" font-size="12" fill="#1a1a1a">');
  const ly0 = top + plotH + axisLabelH;
  legendRows.forEach((row, ri) => {
    for (const it of row) {
      const i = series.indexOf(it.s);
      const fill = isPeer.get(it.s) ? `url(#hatch${i})` : colour.get(it.s)!;
      const x = left + it.x;
      const yy = ly0 + ri * 20;
      o.push(`<rect x="${x}" y="${yy}" width="12" height="12" rx="2" fill="${fill}"${isPeer.get(it.s) ? ` stroke="${colour.get(it.s)}"` : ''}/>`);
      o.push(`<text x="${x + 18}" y="${yy + 10}">${esc(it.s)}</text>`);
    }
  });
  o.push('</g>');
  o.push('</svg>');
  return o.join('\n') + '\n';
}

/** The benchmark chart: every non-reference strategy (and each peer's), per category. */
export function benchChart(main: BenchJson, peers: BenchJson[] = []): string {
  const rows = mergedRows(main, peers);
  const refs = new Set([main.protocol.reference, ...peers.map((p) => p.protocol.reference)]);
  let chosen = rows.filter((r) => !(refs.has(r.strategy) && r.tool === main.tool) && !(r.tool !== main.tool && r.strategy === peerRef(peers, r.tool)));
  if (chosen.length === 0) chosen = rows.filter((r) => r.tool === main.tool); // plain alone: draw it
  const bars: ChartBar[] = chosen.map((r) => ({
    series: r.tool === main.tool ? r.strategy : `${r.strategy} (${r.tool})`,
    category: r.category,
    speedup: r.speedup,
    tokensPerSecond: r.tokensPerSecond,
    identicalPct: r.identicalPct,
    meanAccepted: r.meanAccepted,
    peer: r.tool !== main.tool,
  }));
  const pr = main.protocol;
  const model = main.model.dummy ? `${main.model.name} (dummy weights)` : main.model.name;
  const peerNote = peers.length ? `; hatched: ${peers.map((p) => `${p.tool} vs ${p.protocol.reference}`).join(', ')}` : '';
  return renderChart(bars, {
    title: `Speedup over ${pr.reference} decoding: ${model}`,
    subtitle:
      `${deviceLabel(main.device)}, greedy, batch 1, ${pr.maxNewTokens} new tokens, ${pr.prompts} prompts, ` +
      `median of ${pr.repeats}${peerNote}`,
    referenceLabel: `${pr.reference} = 1.0x`,
  });
}

function peerRef(peers: BenchJson[], tool: string): string | undefined {
  return peers.find((p) => p.tool === tool)?.protocol.reference;
}
