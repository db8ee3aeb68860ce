// Chi-square goodness of fit with exact expected probabilities.

/** ln Gamma(x), Lanczos approximation. */
function lnGamma(x: number): number {
  const g = [76.18009172947146, -86.50532032941677, 24.01409824083091, -1.231739572450155, 0.1208650973866179e-2, -0.5395239384953e-5];
  let y = x;
  const tmp = x + 5.5 - (x + 0.5) * Math.log(x + 5.5);
  let ser = 1.000000000190015;
  for (const c of g) ser += c / ++y;
  return -tmp + Math.log((2.5066282746310005 * ser) / x);
}

/** Regularized upper incomplete gamma Q(a, x). */
export function gammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  if (x < a + 1) {
    // Series for P, then Q = 1 - P.
    let sum = 1 / a;
    let del = sum;
    let ap = a;
    for (let n = 0; n < 1000; n++) {
      ap++;
      del *= x / ap;
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * 1e-15) break;
    }
    return 1 - sum * Math.exp(-x + a * Math.log(x) - lnGamma(a));
  }
  // Continued fraction for Q (Lentz).
  let b = x + 1 - a;
  let c = 1 / 1e-300;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (Math.abs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return Math.exp(-x + a * Math.log(x) - lnGamma(a)) * h;
}

export interface ChiSquare {
  stat: number;
  df: number;
  pValue: number;
  cells: number;
}

/**
 * Pearson's chi-square of observed counts against exact probabilities. Cells whose expected count
 * is below minExpected are pooled (smallest first) into one cell, so the approximation holds.
 */
export function chiSquare(observed: Map<string, number>, expected: Map<string, number>, total: number, minExpected = 5): ChiSquare {
  for (const k of observed.keys()) if (!expected.has(k)) return { stat: Infinity, df: 1, pValue: 0, cells: 0 }; // impossible outcome seen
  const cells = [...expected].map(([k, p]) => ({ e: p * total, o: observed.get(k) ?? 0 })).sort((a, b) => a.e - b.e);
  const big = cells.filter((c) => c.e >= minExpected);
  const small = cells.filter((c) => c.e < minExpected);
  const pooled = small.reduce((acc, c) => ({ e: acc.e + c.e, o: acc.o + c.o }), { e: 0, o: 0 });
  const used = [...big];
  if (pooled.e >= minExpected) used.push(pooled);
  else if (used.length > 0 && pooled.e > 0) {
    used[0] = { e: used[0].e + pooled.e, o: used[0].o + pooled.o };
  }
  let stat = 0;
  for (const c of used) stat += ((c.o - c.e) * (c.o - c.e)) / c.e;
  const df = used.length - 1;
  return { stat, df, pValue: df > 0 ? gammaQ(df / 2, stat / 2) : 1, cells: used.length };
}
