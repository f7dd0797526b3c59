// A plain float64 Qwen2 forward pass over dequantized weights, for measuring synthetic models (no
// activation rounding, no KV paging: the straight path of fixtures README section 4).
import { dequantizeRow } from "../../weights/quant/index";

export interface F64Model {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  nVocab: number;
  ropeTheta: number;
  rmsEps: number;
  /** Dequantized tensor by name, row-major (rows of dims[0]). */
  weight(name: string): Float64Array;
}

export function dequantizedTensor(type: number, bytes: Uint8Array, dims: readonly number[]): Float64Array {
  const n = dims.reduce((a, b) => a * b, 1);
  return Float64Array.from(dequantizeRow(type, bytes, n));
}

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * scale * w[i]);
}

/** y = W x (+ b): W has `rows` rows of x.length. */
function matvec(w: Float64Array, x: Float64Array, rows: number, bias?: Float64Array): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = bias ? bias[r] : 0;
    for (let i = 0; i < x.length; i++) s += w[r * x.length + i] * x[i];
    y[r] = s;
  }
  return y;
}

function ropeNeox(v: Float64Array, nHeads: number, headDim: number, pos: number, theta: number): void {
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < half; j++) {
      const angle = pos * theta ** (-2 * j / headDim);
      const a = v[h * headDim + j];
      const b = v[h * headDim + j + half];
      v[h * headDim + j] = a * Math.cos(angle) - b * Math.sin(angle);
      v[h * headDim + j + half] = a * Math.sin(angle) + b * Math.cos(angle);
    }
  }
}

/** Logits (nVocab) at every position of `tokens`. */
export function forward(m: F64Model, tokens: readonly number[]): Float64Array[] {
  const headDim = m.hidden / m.heads;
  const kvDim = headDim * m.kvHeads;
  const group = m.heads / m.kvHeads;
  const embd = m.weight("token_embd.weight");
  const keys: Float64Array[][] = Array.from({ length: m.layers }, () => []);
  const values: Float64Array[][] = Array.from({ length: m.layers }, () => []);
  const out: Float64Array[] = [];
  tokens.forEach((token, pos) => {
    const x = embd.slice(token * m.hidden, (token + 1) * m.hidden);
    for (let l = 0; l < m.layers; l++) {
      const w = (name: string) => m.weight(`blk.${l}.${name}`);
      const h = rmsnorm(x, w("attn_norm.weight"), m.rmsEps);
      const q = matvec(w("attn_q.weight"), h, m.hidden, w("attn_q.bias"));
      const k = matvec(w("attn_k.weight"), h, kvDim, w("attn_k.bias"));
      const v = matvec(w("attn_v.weight"), h, kvDim, w("attn_v.bias"));
      ropeNeox(q, m.heads, headDim, pos, m.ropeTheta);
      ropeNeox(k, m.kvHeads, headDim, pos, m.ropeTheta);
      keys[l].push(k);
      values[l].push(v);
      const att = new Float64Array(m.hidden);
      for (let hq = 0; hq < m.heads; hq++) {
        const kvh = Math.floor(hq / group);
        const scores = keys[l].map((kk) => {
          let s = 0;
          for (let i = 0; i < headDim; i++) s += q[hq * headDim + i] * kk[kvh * headDim + i];
          return s / Math.sqrt(headDim);
        });
        const max = Math.max(...scores);
        const p = scores.map((s) => Math.exp(s - max));
        const sum = p.reduce((a, b) => a + b, 0);
        values[l].forEach((vv, t) => {
          for (let i = 0; i < headDim; i++) att[hq * headDim + i] += (p[t] / sum) * vv[kvh * headDim + i];
        });
      }
      const o = matvec(w("attn_output.weight"), att, m.hidden);
      for (let i = 0; i < m.hidden; i++) x[i] += o[i];
      const h2 = rmsnorm(x, w("ffn_norm.weight"), m.rmsEps);
      const gate = matvec(w("ffn_gate.weight"), h2, m.ffn);
      const up = matvec(w("ffn_up.weight"), h2, m.ffn);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
      const down = matvec(w("ffn_down.weight"), act, m.hidden);
      for (let i = 0; i < m.hidden; i++) x[i] += down[i];
    }
    const final = rmsnorm(x, m.weight("output_norm.weight"), m.rmsEps);
    let head: Float64Array;
    try { head = m.weight("output.weight"); } catch { head = embd; }
    out.push(matvec(head, final, m.nVocab));
  });
  return out;
}

export function meanStd(v: ArrayLike<number>): { mean: number; std: number } {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  const mean = s / v.length;
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += (v[i] - mean) ** 2;
  return { mean, std: Math.sqrt(ss / v.length) };
}
