// A plain float64 Llama forward pass for tiny models: the whole sequence at once, causal, no KV
// cache, no batching tricks. Slow and obviously correct; the yardstick for the native backends.
// Follows Hugging Face's LlamaForCausalLM: RMSNorm, rotate_half RoPE, GQA attention, SwiGLU MLP.

export interface RefConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  ropeTheta: number;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
}

/** HF tensor name -> values (row-major, HF shapes). */
export type RefWeights = Map<string, Float64Array>;

function get(w: RefWeights, name: string): Float64Array {
  const t = w.get(name);
  if (!t) throw new Error(`reference: missing tensor ${name}`);
  return t;
}

/** y[r] = sum_i W[r, i] x[i] for W of shape [rows, x.length]. */
export function linear(W: Float64Array, x: Float64Array, rows: number): Float64Array {
  const n = x.length;
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += W[r * n + i] * x[i];
    y[r] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => w[i] * v * r);
}

/** rotate_half RoPE: dimension i pairs with i + d/2, angle pos * theta^(-2i/d). */
function rope(v: Float64Array, heads: number, d: number, pos: number, theta: number): void {
  const half = d / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * Math.pow(theta, -(2 * i) / d);
      const c = Math.cos(angle), s = Math.sin(angle);
      const a = v[h * d + i], b = v[h * d + i + half];
      v[h * d + i] = a * c - b * s;
      v[h * d + i + half] = b * c + a * s;
    }
  }
}

/** How a layer's projection (q, k, v, o, gate, up, down; not the LM head) is computed. */
export type Projection = (name: string, W: Float64Array, x: Float64Array, rows: number) => Float64Array;

/**
 * Logits at every position of `tokens`. skip: 2 entries per layer ([attn0, mlp0, attn1, ...]),
 * non-zero skips that sub-layer (the residual stream passes through unchanged). project: the
 * layer projections (default: exact linear), e.g. a quantized one.
 */
export function refForward(c: RefConfig, w: RefWeights, tokens: number[], skip?: ArrayLike<number>, project?: Projection): Float64Array[] {
  const proj = (name: string, x: Float64Array, rows: number) => (project ? project(name, get(w, name), x, rows) : linear(get(w, name), x, rows));
  const H = c.hiddenSize, D = c.headDim, n = tokens.length;
  const embed = get(w, 'model.embed_tokens.weight');
  const x: Float64Array[] = tokens.map((t) => embed.slice(t * H, (t + 1) * H));

  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    if (!skip?.[2 * l]) {
      const qs: Float64Array[] = [], ks: Float64Array[] = [], vs: Float64Array[] = [];
      for (let t = 0; t < n; t++) {
        const xn = rmsNorm(x[t], get(w, p + 'input_layernorm.weight'), c.rmsNormEps);
        const q = proj(p + 'self_attn.q_proj.weight', xn, c.numHeads * D);
        const k = proj(p + 'self_attn.k_proj.weight', xn, c.numKvHeads * D);
        rope(q, c.numHeads, D, t, c.ropeTheta);
        rope(k, c.numKvHeads, D, t, c.ropeTheta);
        qs.push(q);
        ks.push(k);
        vs.push(proj(p + 'self_attn.v_proj.weight', xn, c.numKvHeads * D));
      }
      const group = c.numHeads / c.numKvHeads;
      for (let t = 0; t < n; t++) {
        const att = new Float64Array(c.numHeads * D);
        for (let h = 0; h < c.numHeads; h++) {
          const kvh = Math.floor(h / group);
          const scores: number[] = [];
          for (let j = 0; j <= t; j++) {
            let s = 0;
            for (let d = 0; d < D; d++) s += qs[t][h * D + d] * ks[j][kvh * D + d];
            scores.push(s / Math.sqrt(D));
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const sum = e.reduce((a, b) => a + b, 0);
          for (let j = 0; j <= t; j++)
            for (let d = 0; d < D; d++) att[h * D + d] += (e[j] / sum) * vs[j][kvh * D + d];
        }
        const o = proj(p + 'self_attn.o_proj.weight', att, H);
        for (let i = 0; i < H; i++) x[t][i] += o[i];
      }
    }
    if (!skip?.[2 * l + 1]) {
      for (let t = 0; t < n; t++) {
        const xn = rmsNorm(x[t], get(w, p + 'post_attention_layernorm.weight'), c.rmsNormEps);
        const g = proj(p + 'mlp.gate_proj.weight', xn, c.intermediateSize);
        const u = proj(p + 'mlp.up_proj.weight', xn, c.intermediateSize);
        const h = g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]);
        const d = proj(p + 'mlp.down_proj.weight', h, H);
        for (let i = 0; i < H; i++) x[t][i] += d[i];
      }
    }
  }
  const lm = get(w, c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  return x.map((xt) => linear(lm, rmsNorm(xt, get(w, 'model.norm.weight'), c.rmsNormEps), c.vocabSize));
}
