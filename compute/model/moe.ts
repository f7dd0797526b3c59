// The feed-forward block of a qwen2moe layer, as llama.cpp computes it (build_moe_ffn + the shared
// expert of llm_build_qwen2moe). Per token, with h = rmsnorm(x) * ffn_norm:
//   r = W_router · h (E logits, F32) → p = softmax(r) → S = the K largest p, in descending order
//   (the weights are those p: no renormalization, no scale)
//   y_e = W_down[e] · (silu(W_gate[e] · h) * (W_up[e] · h)) for e in S
//   g = sigmoid(W_shared_gate · h), sh = the shared expert (a dense SwiGLU FFN of width F_s)
//   x += ((p_S0 y_S0 + p_S1 y_S1 + ...) + g sh)       (f32, in that order)
//
// The step's tokens are grouped by expert (tokens ascending within each expert), so that each
// selected expert's rows are read once per step, by the many-token matmul tiles, for all the tokens
// routed to it; experts nobody chose are never read. Every op is a list of items with an item
// function ("parallel"): which worker runs an item never changes what it computes, and the weighted
// sum is added per token in slot order, so the logits do not depend on the grouping or the worker
// count.
import { activationConverter, activationRowBytes, type ActivationFormat, type WeightKernels } from "../kernels/dispatch";
import { wholeActivationBlocks } from "../../weights/gguf/types";
import type { Kernels } from "../kernels/module";
import type { Qwen2Config, Qwen2Tensors, TensorDesc } from "../../weights/qwen2";

/** A matrix the kernels can run: rows = output features, cols = input features (GGUF ne0). For a
 *  3-D expert tensor, `rows` is one expert's: expert e is the slab at offset + e * rows * rowBytes. */
export interface MoEMatrix {
  type: number;
  offset: number;
  rows: number;
  cols: number;
  rowBytes: number;
  kernels: WeightKernels;
  format: ActivationFormat;
  xStride: number; // bytes of one converted input row
}

/** Where a qwen2moe layer's routing tensors are (offsets of F32 data). */
export interface MoELayerLayout<M = MoEMatrixLayout> {
  router: number;     // (E, hidden) F32
  sharedGate: number; // (hidden) F32
  gateExps: M;        // E × (F_e, hidden)
  upExps: M;          // E × (F_e, hidden)
  downExps: M;        // E × (hidden, F_e)
}

export interface MoEMatrixLayout {
  type: number;
  offset: number;
  rows: number;
  cols: number;
  rowBytes: number;
}

/** The scratch of the MoE FFN, sized for a step of T tokens. */
export interface MoEStateLayout {
  router: number;      // (nLayers, maxTokens, E) f32 router logits, one slab per layer (kept: debugging)
  selected: number;    // (nLayers, maxTokens, K) i32 experts chosen per token, by descending probability
  probs: number;       // (T, K) f32 their softmax probabilities
  sharedGate: number;  // (T) f32 the shared expert's gate g
  expertStart: number; // (nLayers, E + 1) i32 first grouped row of each expert (rows of expert e: [start_e, start_e+1)),
                       // one row per layer: see MoEFeedForward.run on why it is never overwritten within a step
  rowToken: number;    // (T*K) i32 the token of each grouped row
  slotRow: number;     // (T*K) i32 the grouped row of (token, slot)
  act: Partial<Record<ActivationFormat, number>>; // (T*K, rowBytes(max(hidden, F_e))) grouped matmul inputs per format
  gate: number;        // (T*K, F_e) f32, then the SwiGLU output
  up: number;          // (T*K, F_e) f32
  out: number;         // (T*K, hidden) f32 the experts' outputs
}

/** Output rows per item of the expert and shared-expert matmuls (a multiple of the 16-row unit).
 *  Large enough that the one-token kernel's four quarter-streams stay long (DEVELOPERS.md: short
 *  interleaved runs defeat the prefetcher), small enough to spread K experts over the workers.
 *  A row's result does not depend on the range it is computed in, so this changes no logits. */
export const MOE_ROW_CHUNK = 256;

/** Allocates the MoE scratch for steps of up to T tokens. */
export function planMoEState(alloc: (bytes: number) => number, nLayers: number, hidden: number, T: number,
  moe: { nExperts: number; nExpertsUsed: number; expertFfn: number }, formats: Iterable<ActivationFormat>): MoEStateLayout {
  const { nExperts: E, nExpertsUsed: K, expertFfn: Fe } = moe;
  const rows = T * K;
  const act: Partial<Record<ActivationFormat, number>> = {};
  for (const format of formats) act[format] ??= alloc(rows * activationRowBytes(format, wholeActivationBlocks(format, Math.max(hidden, Fe))));
  return {
    router: alloc(4 * nLayers * T * E),
    selected: alloc(4 * nLayers * T * K),
    probs: alloc(4 * rows),
    sharedGate: alloc(4 * T),
    expertStart: alloc(4 * nLayers * (E + 1)),
    rowToken: alloc(4 * rows),
    slotRow: alloc(4 * rows),
    act,
    gate: alloc(4 * rows * Fe),
    up: alloc(4 * rows * Fe),
    out: alloc(4 * rows * hidden),
  };
}

/** Most work items the MoE FFN of one layer makes in a step of T tokens (the ops of MoEFeedForward.run). */
export function moeStepItems(T: number, hidden: number, moe: { nExperts: number; nExpertsUsed: number; expertFfn: number; sharedFfn: number }): number {
  const rows = T * moe.nExpertsUsed;
  const active = Math.min(moe.nExperts, rows);
  const chunks = (n: number) => Math.ceil(n / MOE_ROW_CHUNK);
  return T + 1 + rows + (active * chunks(moe.expertFfn) + chunks(moe.sharedFfn)) + (rows + T) +
    (active * chunks(hidden) + chunks(hidden)) + T;
}

/** Runs `fn(item)` for items 0..n-1, spread over the workers; returns when all are done. */
export type Parallel = (n: number, fn: (item: number) => void) => void;

/** What the MoE FFN needs of a layer: its norms, the shared expert (dense matrices), the experts. */
export interface MoELayer {
  ffnNorm: number;
  gate: MoEMatrix; up: MoEMatrix; down: MoEMatrix; // the shared expert, (F_s, hidden) / (hidden, F_s)
  moe: MoELayerLayout<MoEMatrix>;
}

/** The buffers of the step the FFN reads and writes (forward.ts's StateLayout). */
export interface MoEStepBuffers {
  x: number;     // (T, hidden) residual stream, updated in place
  xb: number;    // (T, hidden) the normed input
  proj: number;  // (T, hidden) scratch: the shared expert's output
  gate: number;  // (T, F_s)
  up: number;    // (T, F_s)
  act: Partial<Record<ActivationFormat, number>>; // (T, rowBytes) converted inputs of the dense matrices
}

/** What MoEFeedForward's op items read: the layer and step being run (set by `run`). */
interface MoEStep {
  l: MoELayer;
  T: number;
  scratch: number;
  router: number;      // this layer's router logits
  selected: number;    // this layer's chosen experts
  expertStart: number; // this layer's grouping
  inputFormats: ActivationFormat[]; // of the per-token conversions (gate/up, shared and routed)
  gatherFormats: ActivationFormat[]; // of the grouped rows' inputs (routed gate/up)
  upItems: number;     // routed items of op (4)
  downItems: number;   // of op (6)
}

export class MoEFeedForward {
  private buffer: ArrayBufferLike | undefined;
  private f32 = new Float32Array(0);
  private i32 = new Int32Array(0);
  private bytes = new Uint8Array(0);
  /** Per worker and layer, built once (a step allocates nothing that grows with the layers or
   *  experts: see forward.ts's op items). */
  private readonly formats = new Map<MoELayer, { input: ActivationFormat[]; gather: ActivationFormat[] }>();
  private readonly probs: Float64Array;
  private readonly used: Uint8Array;
  private readonly next: Int32Array;
  private readonly active: Int32Array;
  private readonly slotRows: Int32Array; // element offsets (a memory is at most 4 GiB)
  private readonly slotProbs: Float64Array;
  private readonly st: MoEStep;

  constructor(private readonly k: Kernels, private readonly memory: WebAssembly.Memory,
    private readonly hidden: number, private readonly eps: number, private readonly maxTokens: number,
    private readonly moe: { nExperts: number; nExpertsUsed: number; expertFfn: number; sharedFfn: number },
    private readonly s: MoEStepBuffers, private readonly m: MoEStateLayout) {
    const { nExperts: E, nExpertsUsed: K } = moe;
    this.probs = new Float64Array(E);
    this.used = new Uint8Array(E);
    this.next = new Int32Array(E);
    this.active = new Int32Array(E);
    this.slotRows = new Int32Array(K);
    this.slotProbs = new Float64Array(K);
    this.st = { l: undefined as unknown as MoELayer, T: 0, scratch: 0, router: 0, selected: 0, expertStart: 0,
      inputFormats: [], gatherFormats: [], upItems: 0, downItems: 0 };
  }

  /**
   * The MoE FFN of layer `layer` for the step's T tokens (x holds the attention's residual already),
   * added into x. Ops:
   * (1) per token: rmsnorm, input conversions, router logits, softmax and top-K, shared
   * gate; (2) the grouping of (token, slot) pairs by expert; (3) gather of each grouped row's input;
   * (4) gate/up matmuls per (selected expert, row chunk) and of the shared expert per row chunk;
   * (5) SwiGLU and conversion of the down inputs per row; (6) down matmuls likewise; (7) per token:
   * the weighted sum in slot order plus the gated shared expert. `scratch`: the calling worker's
   * matmul scratch (see matmulScratchBytes).
   */
  run(l: MoELayer, layer: number, T: number, parallel: Parallel, scratch: number): void {
    const { m, st } = this;
    const { nExperts: E, nExpertsUsed: K, expertFfn: Fe, sharedFfn: Fs } = this.moe;
    if (this.buffer !== this.memory.buffer) {
      this.buffer = this.memory.buffer;
      this.f32 = new Float32Array(this.buffer);
      this.i32 = new Int32Array(this.buffer);
      this.bytes = new Uint8Array(this.buffer);
    }
    let formats = this.formats.get(l);
    if (!formats) {
      const e = l.moe;
      formats = { input: unique([l.gate.format, l.up.format, e.gateExps.format, e.upExps.format]), gather: unique([e.gateExps.format, e.upExps.format]) };
      this.formats.set(l, formats);
    }
    st.l = l;
    st.T = T;
    st.scratch = scratch;
    st.router = m.router + 4 * layer * this.maxTokens * E;
    st.selected = m.selected + 4 * layer * this.maxTokens * K;
    // Ops (4) and (6) have as many items as experts got tokens, which every worker reads from the
    // grouping after op (2). Items are claimed, not assigned: a worker descheduled between ops may
    // read it after the others have run on into later layers, so each layer keeps its own grouping
    // (a later layer's would give this worker another item count, and other items).
    st.expertStart = m.expertStart + 4 * layer * (E + 1);
    st.inputFormats = formats.input;
    st.gatherFormats = formats.gather;

    parallel(T, this.tokenItem); // (1)
    parallel(1, this.groupItem); // (2)
    parallel(T * K, this.gatherItem); // (3)

    // The experts that got tokens this step (the same list on every worker: read after the grouping).
    const start = st.expertStart >>> 2;
    let nActive = 0;
    for (let j = 0; j < E; j++) if (this.i32[start + j + 1] > this.i32[start + j]) this.active[nActive++] = j;
    st.upItems = nActive * Math.ceil(Fe / MOE_ROW_CHUNK);
    st.downItems = nActive * Math.ceil(this.hidden / MOE_ROW_CHUNK);

    parallel(st.upItems + Math.ceil(Fs / MOE_ROW_CHUNK), this.upItem); // (4)
    parallel(T * K + T, this.swigluItem); // (5)
    parallel(st.downItems + Math.ceil(this.hidden / MOE_ROW_CHUNK), this.downItem); // (6)
    parallel(T, this.sumItem); // (7)
  }

  /** (1) Per token t. */
  private readonly tokenItem = (t: number): void => {
    const { k, s, m, hidden, f32, i32, st, probs: logits, used } = this;
    const { nExperts: E, nExpertsUsed: K } = this.moe;
    const l = st.l;
    const e = l.moe;
    const xt = s.x + 4 * t * hidden;
    const xbt = s.xb + 4 * t * hidden;
    k.rmsnorm(xt, l.ffnNorm, xbt, hidden, 1, this.eps);
    for (let i = 0; i < st.inputFormats.length; i++) {
      const format = st.inputFormats[i];
      if (format === "f32") continue;
      k[activationConverter(format)](xbt, s.act[format]! + t * activationRowBytes(format, hidden), hidden);
    }
    // Router logits and the shared expert's gate: F32 weights, f32 activations.
    k.matmul_f32(e.router, xbt, st.router + 4 * t * E, hidden, 0, E, 1, 4 * hidden, E, 0);
    k.matmul_f32(e.sharedGate, xbt, m.sharedGate + 4 * t, hidden, 0, 1, 1, 4 * hidden, 1, 0);
    // g = sigmoid(v), as ggml computes it: silu(v) / v.
    const v = f32[(m.sharedGate >>> 2) + t];
    const silu = Math.fround(v / Math.fround(1 + Math.fround(Math.exp(-v))));
    f32[(m.sharedGate >>> 2) + t] = v === 0 ? 0.5 : Math.fround(silu / v);
    // Softmax over all E (ggml_soft_max: f32 exps, f64 sum, scaled by the f32 inverse), then the K
    // largest probabilities in descending order (ties: the lower expert id).
    const r = (st.router >>> 2) + t * E;
    let max = -Infinity;
    for (let j = 0; j < E; j++) max = Math.max(max, f32[r + j]);
    let sum = 0;
    for (let j = 0; j < E; j++) sum += (logits[j] = Math.fround(Math.exp(Math.fround(f32[r + j] - max))));
    const inv = Math.fround(1 / sum);
    for (let j = 0; j < E; j++) logits[j] = Math.fround(logits[j] * inv);
    // (NaN probabilities, from broken weights, lose every comparison: the lowest free id is taken,
    // so the selection is always K distinct valid experts.)
    used.fill(0);
    for (let slot = 0; slot < K; slot++) {
      let best = -1;
      for (let j = 0; j < E; j++) if (!used[j] && (best < 0 || logits[j] > logits[best])) best = j;
      used[best] = 1;
      i32[(st.selected >>> 2) + t * K + slot] = best;
      f32[(m.probs >>> 2) + t * K + slot] = logits[best];
    }
  };

  /** (2) Grouping: the (token, slot) pairs of expert 0, then expert 1, ..., tokens ascending. */
  private readonly groupItem = (): void => {
    const { m, i32, st, next } = this;
    const { nExperts: E, nExpertsUsed: K } = this.moe;
    const { T } = st;
    const start = st.expertStart >>> 2;
    const selected = st.selected >>> 2;
    i32.fill(0, start, start + E + 1);
    for (let i = 0; i < T * K; i++) i32[start + i32[selected + i] + 1]++;
    for (let j = 0; j < E; j++) i32[start + j + 1] += i32[start + j];
    for (let j = 0; j < E; j++) next[j] = i32[start + j];
    for (let t = 0; t < T; t++) {
      for (let slot = 0; slot < K; slot++) {
        const row = next[i32[selected + t * K + slot]]++;
        i32[(m.rowToken >>> 2) + row] = t;
        i32[(m.slotRow >>> 2) + t * K + slot] = row;
      }
    }
  };

  /** (3) Gather grouped row `row`'s input (already converted per token) into expert order. */
  private readonly gatherItem = (row: number): void => {
    const { s, m, i32, st, hidden } = this;
    const t = i32[(m.rowToken >>> 2) + row];
    for (let i = 0; i < st.gatherFormats.length; i++) {
      const format = st.gatherFormats[i];
      const n = activationRowBytes(format, hidden);
      const from = format === "f32" ? s.xb : s.act[format]!;
      this.bytes.copyWithin(m.act[format]! + row * n, from + t * n, from + (t + 1) * n);
    }
  };

  /** out rows of a chunk of `item` (expert, row chunk) of `w`, for the expert's grouped rows. */
  private expertMatmul(w: MoEMatrix, item: number, input: number, out: number): void {
    const chunks = Math.ceil(w.rows / MOE_ROW_CHUNK);
    const ex = this.active[Math.floor(item / chunks)];
    const r0 = (item % chunks) * MOE_ROW_CHUNK;
    const r1 = Math.min(w.rows, r0 + MOE_ROW_CHUNK);
    const starts = this.st.expertStart >>> 2;
    const first = this.i32[starts + ex];
    const xStride = w.format === "f32" ? 4 * w.cols : w.xStride;
    w.kernels.matmul(w.offset + ex * w.rows * w.rowBytes, input + first * xStride, out + 4 * first * w.rows,
      w.cols, r0, r1, this.i32[starts + ex + 1] - first, xStride, w.rows, this.st.scratch);
  }

  /** Rows of chunk `item` of a dense matrix (the shared expert) for all T tokens. */
  private denseMatmul(w: MoEMatrix, item: number, input: number, out: number): void {
    const r0 = item * MOE_ROW_CHUNK;
    const r1 = Math.min(w.rows, r0 + MOE_ROW_CHUNK);
    const x = w.format === "f32" ? input : this.s.act[w.format]!;
    const xStride = w.format === "f32" ? 4 * w.cols : w.xStride;
    w.kernels.matmul(w.offset, x, out, w.cols, r0, r1, this.st.T, xStride, w.rows, this.st.scratch);
  }

  /** (4) gate and up: the selected experts' rows, then the shared expert's. */
  private readonly upItem = (item: number): void => {
    const { s, m, st } = this;
    const { l } = st;
    const e = l.moe;
    if (item < st.upItems) {
      this.expertMatmul(e.gateExps, item, e.gateExps.format === "f32" ? m.act.f32! : m.act[e.gateExps.format]!, m.gate);
      this.expertMatmul(e.upExps, item, e.upExps.format === "f32" ? m.act.f32! : m.act[e.upExps.format]!, m.up);
    } else {
      this.denseMatmul(l.gate, item - st.upItems, s.xb, s.gate);
      this.denseMatmul(l.up, item - st.upItems, s.xb, s.up);
    }
  };

  /** (5) SwiGLU per row, and the conversion of the down matmuls' inputs. */
  private readonly swigluItem = (row: number): void => {
    const { k, s, m, st } = this;
    const { nExpertsUsed: K, expertFfn: Fe, sharedFfn: Fs } = this.moe;
    const { l, T } = st;
    if (row < T * K) {
      const g = m.gate + 4 * row * Fe;
      k.swiglu(g, m.up + 4 * row * Fe, g, Fe);
      const d = l.moe.downExps;
      if (d.format !== "f32") k[activationConverter(d.format)](g, m.act[d.format]! + row * d.xStride, Fe);
    } else {
      const t = row - T * K;
      const g = s.gate + 4 * t * Fs;
      k.swiglu(g, s.up + 4 * t * Fs, g, Fs);
      const d = l.down;
      if (d.format !== "f32") k[activationConverter(d.format)](g, s.act[d.format]! + t * d.xStride, Fs);
    }
  };

  /** (6) down: each selected expert for its rows, and the shared expert for all tokens. */
  private readonly downItem = (item: number): void => {
    const { s, m, st } = this;
    const { l } = st;
    if (item < st.downItems) {
      const d = l.moe.downExps;
      this.expertMatmul(d, item, d.format === "f32" ? m.gate : m.act[d.format]!, m.out);
    } else {
      this.denseMatmul(l.down, item - st.downItems, s.gate, s.proj);
    }
  };

  /** (7) Per token: x += (Σ_slot p·y in slot order) + g·sh, rounded to f32 at each step as ggml
   *  does (the sum, then the residual add). */
  private readonly sumItem = (t: number): void => {
    const { s, m, f32, i32, hidden, slotRows: rows, slotProbs: p } = this;
    const K = this.moe.nExpertsUsed;
    const sh = (s.proj >>> 2) + t * hidden;
    const xt = (s.x >>> 2) + t * hidden;
    const g = f32[(m.sharedGate >>> 2) + t];
    for (let slot = 0; slot < K; slot++) {
      rows[slot] = (m.out >>> 2) + i32[(m.slotRow >>> 2) + t * K + slot] * hidden;
      p[slot] = f32[(m.probs >>> 2) + t * K + slot];
    }
    for (let i = 0; i < hidden; i++) {
      let sum = Math.fround(f32[rows[0] + i] * p[0]);
      for (let slot = 1; slot < K; slot++) sum = Math.fround(sum + Math.fround(f32[rows[slot] + i] * p[slot]));
      f32[xt + i] = Math.fround(f32[xt + i] + Math.fround(sum + Math.fround(f32[sh + i] * g)));
    }
  };
}

function unique<T>(values: T[]): T[] {
  return [...new Set(values)];
}

/** Weight bytes one decoded token reads, by part: what a MoE decode streams (the K experts' slabs
 *  only, never the other E - K), for bandwidth figures and `qwasm inspect`. */
export interface TokenReadBytes {
  attention: number;    // q, k, v, o (+ biases) and both norms of every layer
  router: number;       // ffn_gate_inp and ffn_gate_inp_shexp of every layer
  sharedExpert: number; // ffn_{gate,up,down}_shexp, or the dense FFN of a qwen2 model
  experts: number;      // K experts' gate, up and down slabs of every layer
  head: number;         // output_norm, output.weight and one token_embd row
  total: number;
  /** All routed-expert bytes of the model (what a token does not read, plus what it does). */
  allExperts: number;
}

export function tokenReadBytes(config: Qwen2Config, t: Qwen2Tensors<TensorDesc & { nbytes: number }>): TokenReadBytes {
  const K = config.moe?.nExpertsUsed ?? 0;
  const E = config.moe?.nExperts ?? 1;
  const sum = (xs: ({ nbytes: number } | undefined)[]) => xs.reduce((n, x) => n + (x?.nbytes ?? 0), 0);
  let attention = 0, router = 0, sharedExpert = 0, experts = 0, allExperts = 0;
  for (const l of t.layers) {
    attention += sum([l.attnNorm, l.q, l.qBias, l.k, l.kBias, l.v, l.vBias, l.o, l.ffnNorm]);
    sharedExpert += sum([l.gate, l.up, l.down]);
    if (l.moe) {
      router += sum([l.moe.router, l.moe.sharedGate]);
      const all = sum([l.moe.gateExps, l.moe.upExps, l.moe.downExps]);
      allExperts += all;
      experts += (all / E) * K;
    }
  }
  const head = sum([t.outputNorm, t.output]) + t.tokenEmbd.nbytes / t.tokenEmbd.dims[1];
  return { attention, router, sharedExpert, experts, head, total: attention + router + sharedExpert + experts + head, allExperts };
}
