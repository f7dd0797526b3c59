// An independent scalar Qwen2 forward pass in float64, for tests: plain loops over dequantized
// weights, with the activation rounding llama.cpp applies before each matmul emulated by the scalar
// TypeScript quantizers (weights/quant), and nothing from the AssemblyScript kernels or ts/model.
// It recomputes every position from scratch (no KV cache), which also checks the engine's cache.
import type { GGUFFile } from "../../weights/gguf/reader";
import { mapQwen2Tensors, parseQwen2Config, type Qwen2Config } from "../../weights/qwen2";
import { dequantizeRow, vecDotF32 } from "../../weights/quant";

interface RefMatrix {
  type: number;
  rows: number;
  cols: number;
  rowBytes: number;
  bytes: Uint8Array;
}

export class ReferenceQwen2 {
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
    const all = [t.tokenEmbd, t.outputNorm, t.output, ...t.layers.flatMap((l) => Object.values(l))];
    for (const info of all) {
      const bytes = (await file.readTensor(info.name)).slice();
      if (info.dims.length === 1) {
        vectors.set(info.name, Float64Array.from(dequantizeRow(info.type, bytes, info.dims[0])));
      } else {
        matrices.set(info.name, {
          type: info.type, cols: info.dims[0], rows: info.dims[1], rowBytes: bytes.length / info.dims[1], bytes,
        });
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

  private rmsnorm(x: Float64Array, weight: string): Float64Array {
    const w = this.vectors.get(weight)!;
    let ss = 0;
    for (const v of x) ss += v * v;
    const scale = 1 / Math.sqrt(ss / x.length + this.config.eps);
    return x.map((v, i) => v * scale * w[i]);
  }

  /** W·x (+ bias): the activation row is rounded to W's dot format as llama.cpp does, the rest in f64. */
  private linear(name: string, x: Float64Array): Float64Array {
    const m = this.matrices.get(name + ".weight") ?? this.matrices.get(name)!;
    const bias = this.vectors.get(name + ".bias");
    const xf = Float32Array.from(x);
    const out = new Float64Array(m.rows);
    for (let r = 0; r < m.rows; r++) {
      out[r] = vecDotF32(m.type, m.bytes.subarray(r * m.rowBytes, (r + 1) * m.rowBytes), xf) + (bias ? bias[r] : 0);
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
