// The Qwen2 forward pass over one shared memory: embeddings → n_layers × (rmsnorm, q/k/v with bias,
// RoPE, KV write, attention, o, residual, rmsnorm, gate/up, SwiGLU, down, residual) → norm → LM head.
// One code path for prefill (many tokens) and decode (one token). Every op takes a row or head
// range, so that a pool of workers can split the same loop (threads are the next step).
import { QwasmError } from "../errors";
import { ACTIVATION_FORMATS, activationRowBytes, weightKernels, type ActivationFormat, type WeightKernels } from "../kernels/dispatch";
import type { Kernels } from "../kernels/module";
import type { Qwen2Config, Qwen2Tensors, TensorDesc } from "../../weights/qwen2";
import { Arena } from "./arena";
import { ropeCosSin, ropeYarnCorrDims, type RopeScaling as RopeTable } from "./rope";

export type KVType = "f32" | "f16" | "q8_0";

/** A weight tensor copied into the arena. */
export interface WeightTensor extends TensorDesc {
  offset: number; // byte address in the shared memory
  nbytes: number;
}

/** A matrix with its kernels: rows = output features, cols = input features (GGUF ne0). */
interface Matrix {
  offset: number;
  rows: number;
  cols: number;
  rowBytes: number;
  kernels: WeightKernels;
}

interface LayerWeights {
  attnNorm: number;                      // (hidden)
  q: Matrix; qBias: number;              // (nHeads*headDim, hidden), (nHeads*headDim)
  k: Matrix; kBias: number;              // (nKV*headDim, hidden), (nKV*headDim)
  v: Matrix; vBias: number;              // (nKV*headDimV, hidden), (nKV*headDimV)
  o: Matrix;                             // (hidden, nHeads*headDimV)
  ffnNorm: number;                       // (hidden)
  gate: Matrix; up: Matrix;              // (ffn, hidden)
  down: Matrix;                          // (hidden, ffn)
  kCache: number; vCache: number;        // (contextLength, nKV*headDim) in kvType
}

/** Activation buffers, sized once for the largest step (maxTokens tokens). */
interface RunState {
  x: number;       // (T, hidden) residual stream
  xb: number;      // (T, hidden) normed input of a matmul
  q: number;       // (T, nHeads*headDim)
  k: number;       // (T, nKV*headDim)
  v: number;       // (T, nKV*headDimV)
  att: number;     // (T, nHeads*headDimV) attention output
  proj: number;    // (T, hidden) o / down projection before the residual add
  gate: number;    // (T, ffn)
  up: number;      // (T, ffn)
  act: Map<ActivationFormat, number>; // (T, rowBytes(max input)) matmul inputs converted per format
  cosSin: number;  // (T, ropeDim) per token: ropeDim/2 cosines, then ropeDim/2 sines
  scores: number;  // (contextLength) attention scratch
  logits: number;  // (T, vocab)
}

export interface ForwardOptions {
  /** Longest sequence (prompt + generated) the KV cache holds. */
  contextLength: number;
  /** Most tokens one step may carry; longer prompts are run in chunks of this size. */
  maxTokens: number;
  kvType: KVType;
  /** Use the scalar reference matmuls (for tests). */
  reference?: boolean;
}

const KV_BYTES: Record<KVType, (n: number) => number> = {
  f32: (n) => 4 * n,
  f16: (n) => 2 * n,
  q8_0: (n) => (n / 32) * 34,
};

export class Qwen2Forward {
  readonly config: Qwen2Config;
  readonly contextLength: number;
  readonly maxTokens: number;
  readonly kvType: KVType;
  private readonly k: Kernels;
  private readonly arena: Arena;
  private readonly layers: LayerWeights[];
  private readonly tokenEmbd: Matrix;
  private readonly outputNorm: number;
  private readonly output: Matrix;
  private readonly s: RunState;
  private readonly kvRowBytes: number;
  private readonly cosSinHost: Float32Array;
  private readonly ropeScaling: RopeTable;
  /** Which buffer each activation format currently holds, so q/k/v convert their input once. */
  private converted = new Map<ActivationFormat, number>();

  constructor(kernels: Kernels, arena: Arena, config: Qwen2Config, tensors: Qwen2Tensors<WeightTensor>, options: ForwardOptions) {
    const { hidden, nHeads, nKVHeads, headDim, headDimV, ffn, vocabSize, ropeDim } = config;
    if (options.kvType === "q8_0" && (headDim % 32 !== 0 || headDimV % 32 !== 0)) {
      throw new QwasmError("INVALID_ARGUMENT", `a q8_0 KV cache needs head sizes divisible by 32 (this model: ${headDim})`);
    }
    if (ropeDim !== headDim) {
      throw new QwasmError("MODEL_UNSUPPORTED", `partial RoPE (rope dimension ${ropeDim} < head size ${headDim}) is not supported`);
    }
    if (headDim !== headDimV) {
      throw new QwasmError("MODEL_UNSUPPORTED", `key head size ${headDim} differs from value head size ${headDimV}`);
    }
    this.config = config;
    this.k = kernels;
    this.arena = arena;
    this.contextLength = options.contextLength;
    this.maxTokens = options.maxTokens;
    this.kvType = options.kvType;

    const matrix = (t: WeightTensor): Matrix => {
      const kernelsFor = weightKernels(kernels, t.type, options.reference);
      return {
        offset: t.offset, cols: t.dims[0], rows: t.dims[1],
        rowBytes: (t.dims[0] / kernelsFor.blockSize) * kernelsFor.typeSize,
        kernels: kernelsFor,
      };
    };
    const T = options.maxTokens;
    const ctx = options.contextLength;
    this.kvRowBytes = KV_BYTES[options.kvType](nKVHeads * headDim);
    this.layers = tensors.layers.map((l) => ({
      attnNorm: l.attnNorm.offset,
      q: matrix(l.q), qBias: l.qBias.offset,
      k: matrix(l.k), kBias: l.kBias.offset,
      v: matrix(l.v), vBias: l.vBias.offset,
      o: matrix(l.o),
      ffnNorm: l.ffnNorm.offset,
      gate: matrix(l.gate), up: matrix(l.up), down: matrix(l.down),
      kCache: arena.alloc(ctx * this.kvRowBytes),
      vCache: arena.alloc(ctx * this.kvRowBytes),
    }));
    this.tokenEmbd = matrix(tensors.tokenEmbd);
    this.outputNorm = tensors.outputNorm.offset;
    this.output = matrix(tensors.output);

    // One conversion buffer per activation format the model's matrices use, sized for the widest input.
    const act = new Map<ActivationFormat, number>();
    const all = [...this.layers.flatMap((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]), this.output];
    for (const m of all) {
      if (m.kernels.format === "f32" || act.has(m.kernels.format)) continue;
      act.set(m.kernels.format, arena.alloc(T * activationRowBytes(m.kernels.format, Math.max(hidden, ffn, nHeads * headDimV))));
    }
    const f32 = (n: number) => arena.alloc(4 * n);
    this.s = {
      x: f32(T * hidden), xb: f32(T * hidden),
      q: f32(T * nHeads * headDim), k: f32(T * nKVHeads * headDim), v: f32(T * nKVHeads * headDimV),
      att: f32(T * nHeads * headDimV), proj: f32(T * hidden),
      gate: f32(T * ffn), up: f32(T * ffn),
      act,
      cosSin: f32(T * ropeDim),
      scores: f32(ctx + 4 * headDim),
      logits: f32(T * vocabSize),
    };
    this.cosSinHost = new Float32Array(T * ropeDim);
    this.ropeScaling = ropeTableScaling(config);
  }

  /**
   * Runs `tokens` (at most maxTokens) at positions pos0, pos0+1, ... of the one sequence in the KV
   * cache, and returns the logits of the last token, or of every token with `allLogits`
   * (n_tokens × vocab, position-major). The returned array is a copy.
   */
  step(tokens: ArrayLike<number>, pos0: number, allLogits = false): Float32Array {
    const c = this.config;
    const k = this.k;
    const s = this.s;
    const T = tokens.length;
    const { hidden, nHeads, nKVHeads, headDim, ffn, vocabSize } = c;
    const qDim = nHeads * headDim;
    const kvDim = nKVHeads * headDim;
    if (T < 1 || T > this.maxTokens) throw new QwasmError("INVALID_ARGUMENT", `a step carries 1..${this.maxTokens} tokens, got ${T}`);
    if (pos0 + T > this.contextLength) {
      throw new QwasmError("CONTEXT_OVERFLOW",
        `positions ${pos0}..${pos0 + T - 1} do not fit in the context of ${this.contextLength} tokens`);
    }

    // Embeddings: x[t] = token_embd[id] (the row dequantized to f32).
    for (let t = 0; t < T; t++) {
      const id = tokens[t];
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new QwasmError("INVALID_ARGUMENT", `token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
      }
      this.tokenEmbd.kernels.dequantize(this.tokenEmbd.offset + id * this.tokenEmbd.rowBytes, s.x + 4 * t * hidden, hidden);
    }
    this.writeRope(T, pos0);

    for (const l of this.layers) {
      // Attention: rmsnorm → q, k, v (+ bias) → RoPE → KV write → attention → o → residual.
      k.rmsnorm(s.x, l.attnNorm, s.xb, hidden, T, c.eps);
      this.matmul(l.q, s.xb, s.q, T);
      this.matmul(l.k, s.xb, s.k, T, true);
      this.matmul(l.v, s.xb, s.v, T, true);
      k.add_bias(s.q, l.qBias, T, qDim);
      k.add_bias(s.k, l.kBias, T, kvDim);
      k.add_bias(s.v, l.vBias, T, kvDim);
      k.rope_neox(s.q, T, nHeads, headDim, qDim, s.cosSin);
      k.rope_neox(s.k, T, nKVHeads, headDim, kvDim, s.cosSin);
      this.storeKV(s.k, l.kCache, pos0, T * kvDim);
      this.storeKV(s.v, l.vCache, pos0, T * kvDim);
      this.attention(l, T, pos0);
      this.matmul(l.o, s.att, s.proj, T);
      k.add(s.x, s.proj, s.x, T * hidden);

      // Feed-forward: rmsnorm → gate, up → SwiGLU → down → residual.
      k.rmsnorm(s.x, l.ffnNorm, s.xb, hidden, T, c.eps);
      this.matmul(l.gate, s.xb, s.gate, T);
      this.matmul(l.up, s.xb, s.up, T, true);
      k.swiglu(s.gate, s.up, s.gate, T * ffn);
      this.matmul(l.down, s.gate, s.proj, T);
      k.add(s.x, s.proj, s.x, T * hidden);
    }

    // Final norm and LM head, for the last token or for all.
    const first = allLogits ? 0 : T - 1;
    const rows = T - first;
    k.rmsnorm(s.x + 4 * first * hidden, this.outputNorm, s.xb, hidden, rows, c.eps);
    this.matmul(this.output, s.xb, s.logits, rows);
    return this.arena.f32(s.logits, rows * vocabSize).slice();
  }

  /**
   * out (T, W.rows) = input (T, W.cols) · Wᵀ. The input is converted to W's activation format, or,
   * with `sameInput`, the conversion made by the previous matmul of the same input is reused.
   */
  private matmul(w: Matrix, input: number, out: number, T: number, sameInput = false): void {
    const format = w.kernels.format;
    let x = input;
    let xStride = 4 * w.cols;
    if (format !== "f32") {
      const buffer = this.s.act.get(format)!;
      xStride = activationRowBytes(format, w.cols);
      // Rows are converted one by one so that each starts at its own stride.
      if (!sameInput || this.converted.get(format) !== input) {
        const convert = this.k[ACTIVATION_FORMATS[format].convert!];
        for (let t = 0; t < T; t++) convert(input + 4 * t * w.cols, buffer + t * xStride, w.cols);
      }
      x = buffer;
    }
    if (!sameInput) this.converted.clear();
    if (format !== "f32") this.converted.set(format, input);
    w.kernels.matmul(w.offset, x, out, w.cols, 0, w.rows, T, xStride, w.rows);
  }

  /** Copies T rows of K or V into the cache at positions pos0.. in the cache's type. */
  private storeKV(src: number, cache: number, pos0: number, n: number): void {
    const dst = cache + pos0 * this.kvRowBytes;
    if (this.kvType === "f32") this.k.copy_f32(src, dst, n);
    else if (this.kvType === "f16") this.k.convert_f32_f16(src, dst, n);
    else this.k.quantize_q8_0(src, dst, n);
  }

  private attention(l: LayerWeights, T: number, pos0: number): void {
    const c = this.config;
    const scale = 1 / Math.sqrt(c.headDim);
    const kernel = this.k[`attention_${this.kvType}`];
    kernel(this.s.q, l.kCache, l.vCache, this.s.att, this.s.scores, T, pos0, c.nHeads, c.nKVHeads, c.headDim,
      c.nHeads * c.headDim, this.kvRowBytes, scale, 0, c.nHeads);
  }

  private writeRope(T: number, pos0: number): void {
    const c = this.config;
    const positions = new Int32Array(T);
    for (let t = 0; t < T; t++) positions[t] = pos0 + t;
    const host = this.cosSinHost.subarray(0, T * c.ropeDim);
    ropeCosSin(positions, c.ropeDim, c.ropeBase, host, this.ropeScaling);
    this.arena.f32(this.s.cosSin, T * c.ropeDim).set(host);
  }
}

/** The config's rope scaling as ggml_rope_ext's arguments (what llama.cpp passes for Qwen2). */
function ropeTableScaling(c: Qwen2Config): RopeTable {
  const r = c.ropeScaling;
  if (r.type === "none") return {};
  if (r.type === "linear") return { freqScale: 1 / r.factor };
  return {
    freqScale: 1 / r.factor,
    extFactor: 1,
    attnFactor: r.attnFactor ?? 1,
    corrDims: ropeYarnCorrDims(c.ropeDim, r.originalContextLength, c.ropeBase),
  };
}
