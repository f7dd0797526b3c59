// An independent scalar Qwen2 forward pass in float64, for tests: plain loops over dequantized
// weights, with the activation rounding llama.cpp applies before each matmul emulated by the scalar
// TypeScript quantizers (weights/quant), and nothing from the AssemblyScript kernels or compute/model.
// It recomputes every position from scratch (no KV cache), which also checks the engine's cache.
// qwen2moe: the routed experts and the shared expert as the formulas say, in float64 (moeFeedForward).
import type { GGUFFile } from "../../weights/gguf/reader";
import { layerTensorList, mapQwen2Tensors, parseQwen2Config, type Qwen2Config } from "../../weights/qwen2";
import { dequantizeRow, vecDotF32 } from "../../weights/quant";

interface RefMatrix {
  type: number;
  rows: number;
  cols: number;
  rowBytes: number;
  bytes: Uint8Array;
}

export class ReferenceQwen2 {
  /** qwen2moe: after logits(), per layer and position, the E experts with their router logits,
   *  sorted by logit descending (ties by id); the first K were used. Empty for dense models. */
  routing: [number, number][][][] = [];

  private constructor(
    readonly config: Qwen2Config,
    private readonly vectors: Map<string, Float64Array>,
    private readonly matrices: Map<string, RefMatrix>,
  ) {}

  static async load(file: GGUFFile): Promise<ReferenceQwen2> {
    const config = parseQwen2Config(file.metadata, file.tensors);
    const t = mapQwen2Tensors(config, file.tensors);
    const vectors = new Map<string, Float64Array>();
    const matrices = new Map<string, RefMatrix>();
    const all = [t.tokenEmbd, t.outputNorm, t.output, ...t.layers.flatMap((l) => layerTensorList(l))];
    for (const info of all) {
      const bytes = (await file.readTensor(info.name)).slice();
      if (info.dims.length === 1) {
        vectors.set(info.name, Float64Array.from(dequantizeRow(info.type, bytes, info.dims[0])));
      } else {
        // A 3-D expert tensor {cols, F, E} is kept as E*F rows: expert e's are rows [e*F, (e+1)*F).
        const rows = info.dims.slice(1).reduce((a, b) => a * b, 1);
        matrices.set(info.name, { type: info.type, cols: info.dims[0], rows, rowBytes: bytes.length / rows, bytes });
      }
    }
    return new ReferenceQwen2(config, vectors, matrices);
  }

  /** The logits of every position of `tokens`, position-major. */
  logits(tokens: number[]): Float64Array[] {
    const c = this.config;
    const n = tokens.length;
    const embd = this.matrices.get("token_embd.weight")!;
    const x = tokens.map((id) => Float64Array.from(
      dequantizeRow(embd.type, embd.bytes.subarray(id * embd.rowBytes, (id + 1) * embd.rowBytes), c.hidden)));

    for (let l = 0; l < c.nLayers; l++) {
      const p = `blk.${l}.`;
      const h = x.map((row) => this.rmsnorm(row, p + "attn_norm.weight"));
      const q = h.map((row) => this.linear(p + "attn_q", row));
      const k = h.map((row) => this.linear(p + "attn_k", row));
      const v = h.map((row) => this.linear(p + "attn_v", row));
      for (let t = 0; t < n; t++) {
        this.rope(q[t], c.nHeads, t);
        this.rope(k[t], c.nKVHeads, t);
      }
      const group = c.nHeads / c.nKVHeads;
      const att = q.map((qRow, t) => {
        const out = new Float64Array(c.nHeads * c.headDim);
        for (let hq = 0; hq < c.nHeads; hq++) {
          const g = Math.floor(hq / group);
          const scores = new Float64Array(t + 1);
          let max = -Infinity;
          for (let j = 0; j <= t; j++) {
            let s = 0;
            for (let d = 0; d < c.headDim; d++) s += qRow[hq * c.headDim + d] * k[j][g * c.headDim + d];
            scores[j] = s / Math.sqrt(c.headDim);
            max = Math.max(max, scores[j]);
          }
          let sum = 0;
          for (let j = 0; j <= t; j++) { scores[j] = Math.exp(scores[j] - max); sum += scores[j]; }
          for (let j = 0; j <= t; j++) {
            for (let d = 0; d < c.headDim; d++) out[hq * c.headDim + d] += (scores[j] / sum) * v[j][g * c.headDim + d];
          }
        }
        return out;
      });
      for (let t = 0; t < n; t++) {
        const o = this.linear(p + "attn_output", att[t]);
        for (let i = 0; i < c.hidden; i++) x[t][i] += o[i];
        const hf = this.rmsnorm(x[t], p + "ffn_norm.weight");
        if (c.moe) {
          const ffn = this.moeFeedForward(p, hf, t === 0 ? (this.routing[l] = []) : this.routing[l]);
          for (let i = 0; i < c.hidden; i++) x[t][i] += ffn[i];
          continue;
        }
        const gate = this.linear(p + "ffn_gate", hf);
        const up = this.linear(p + "ffn_up", hf);
        const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
        const down = this.linear(p + "ffn_down", act);
        for (let i = 0; i < c.hidden; i++) x[t][i] += down[i];
      }
    }
    const head = c.tiedEmbeddings ? "token_embd" : "output";
    return x.map((row) => this.linear(head, this.rmsnorm(row, "output_norm.weight")));
  }

  /**
   * qwen2moe FFN of one token (the formulas of the fixtures README, section 4): softmax over the
   * router logits, the K most probable experts weighted by their probabilities (not renormalized),
   * plus the shared expert gated by sigmoid(w · h). Appends this position's ranked router logits.
   */
  private moeFeedForward(p: string, h: Float64Array, routing: [number, number][][]): Float64Array {
    const { nExpertsUsed: K, expertFfn: F } = this.config.moe!;
    const logits = this.linear(p + "ffn_gate_inp", h);
    const ranked = Array.from(logits, (v, e): [number, number] => [e, v]).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    routing.push(ranked);
    const max = ranked[0][1];
    const sum = ranked.reduce((s, [, v]) => s + Math.exp(v - max), 0);
    const swiglu = (gate: Float64Array, up: Float64Array) => gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
    const out = new Float64Array(this.config.hidden);
    for (const [e, v] of ranked.slice(0, K)) {
      const y = this.linear(p + "ffn_down_exps",
        swiglu(this.linear(p + "ffn_gate_exps", h, e * F, F), this.linear(p + "ffn_up_exps", h, e * F, F)),
        e * this.config.hidden, this.config.hidden);
      const weight = Math.exp(v - max) / sum;
      for (let i = 0; i < out.length; i++) out[i] += weight * y[i];
    }
    const shared = this.linear(p + "ffn_down_shexp", swiglu(this.linear(p + "ffn_gate_shexp", h), this.linear(p + "ffn_up_shexp", h)));
    const g = 1 / (1 + Math.exp(-this.linear(p + "ffn_gate_inp_shexp", h)[0]));
    for (let i = 0; i < out.length; i++) out[i] += g * shared[i];
    return out;
  }

  private rmsnorm(x: Float64Array, weight: string): Float64Array {
    const w = this.vectors.get(weight)!;
    let ss = 0;
    for (const v of x) ss += v * v;
    const scale = 1 / Math.sqrt(ss / x.length + this.config.eps);
    return x.map((v, i) => v * scale * w[i]);
  }

  /** W·x (+ bias): the activation row is rounded to W's dot format as llama.cpp does, the rest in f64. */
  private linear(name: string, x: Float64Array, firstRow = 0, nRows?: number): Float64Array {
    const m = this.matrices.get(name + ".weight") ?? this.matrices.get(name)!;
    const bias = this.vectors.get(name + ".bias");
    const xf = Float32Array.from(x);
    const out = new Float64Array(nRows ?? m.rows);
    for (let i = 0; i < out.length; i++) {
      const r = firstRow + i;
      out[i] = vecDotF32(m.type, m.bytes.subarray(r * m.rowBytes, (r + 1) * m.rowBytes), xf) + (bias ? bias[r] : 0);
    }
    return out;
  }

  /** NEOX RoPE: rotates (x_i, x_{i+d/2}) of each head by pos · base^(-2i/d). */
  private rope(x: Float64Array, nHeads: number, pos: number): void {
    const { headDim, ropeBase } = this.config;
    const half = headDim / 2;
    for (let h = 0; h < nHeads; h++) {
      for (let i = 0; i < half; i++) {
        const angle = pos * Math.pow(ropeBase, (-2 * i) / headDim);
        const a = x[h * headDim + i];
        const b = x[h * headDim + i + half];
        x[h * headDim + i] = a * Math.cos(angle) - b * Math.sin(angle);
        x[h * headDim + i + half] = a * Math.sin(angle) + b * Math.cos(angle);
      }
    }
  }
}
