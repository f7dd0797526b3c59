// The Qwen2 forward pass over one shared memory: embeddings → n_layers × (rmsnorm, q/k/v with bias,
// RoPE, KV write, attention, o, residual, rmsnorm, gate/up, SwiGLU, down, residual) → norm → LM head.
//
// One code path for prefill (many tokens) and decode (one token), run SPMD: every worker of the
// pool (or the one calling thread) runs `runStep` with its own slice index, does its share of each
// op (matmul rows, attention heads, token rows) and meets the others at a barrier before an op that
// reads what another worker wrote. Each output element is computed by exactly one worker with the
// same code, so the logits do not depend on the number of workers.
//
// `planForward` lays out the memory once (the ForwardLayout, plain data that can be posted to a
// worker); `runStep` only reads it.
//
// A model may be placed over several shards, each its own WebAssembly.Memory (one holds at most
// 4 GiB): shard k holds a contiguous run of layers with their KV pools, the embedding goes with the
// first layers (or, tied to the LM head, with it), the output norm, LM head and logits with the last.
// Every shard starts with the same activation scratch and step inputs at the same offsets
// (`planShardState`), so one StateLayout serves all; each layer runs with the kernel instance of its
// shard, and the first per-token op of a layer whose shard differs from the one before copies the
// token's residual rows (x and the pending proj) across: no extra op, and the same arithmetic.
import { QwasmError } from "../../platform/errors";
import { activationConverter, activationFormat, activationRowBytes, flashAttention, pagedAttention, weightKernels, type ActivationFormat, type WeightKernels } from "../kernels/dispatch";
import { wholeActivationBlocks } from "../../weights/gguf/types";
import type { Kernels } from "../kernels/module";
import type { Qwen2Config, Qwen2Tensors, TensorDesc } from "../../weights/qwen2";
import type { Allocator } from "./arena";
import { MAX_STEP_ITEMS } from "../workers/protocol";
import { MoEFeedForward, moeStepItems, planMoEState, type MoELayerLayout, type MoEMatrix, type MoEStateLayout } from "./moe";

export type KVType = "f32" | "f16" | "q8_0";

/** A weight tensor copied into the arena. */
export interface WeightTensor extends TensorDesc {
  offset: number; // byte address in the shared memory
  nbytes: number;
}

/** A matrix: rows = output features, cols = input features (GGUF ne0), rows contiguous. */
export interface MatrixLayout {
  type: number;
  offset: number;
  rows: number;
  cols: number;
  rowBytes: number;
}

export interface LayerLayout {
  attnNorm: number;                                  // (hidden)
  q: MatrixLayout; qBias: number;                    // (nHeads*headDim, hidden), (nHeads*headDim)
  k: MatrixLayout; kBias: number;                    // (nKV*headDim, hidden), (nKV*headDim)
  v: MatrixLayout; vBias: number;                    // (nKV*headDim, hidden), (nKV*headDim)
  o: MatrixLayout;                                   // (hidden, nHeads*headDim)
  ffnNorm: number;                                   // (hidden)
  gate: MatrixLayout; up: MatrixLayout;              // (ffn, hidden)
  down: MatrixLayout;                                // (hidden, ffn)
  kPool: number; vPool: number;                      // (kvPages, pageSize, nKV*headDim) in kvType
  shard: number;                                     // the memory that holds this layer and its KV pools
  moe?: MoELayerLayout;                              // qwen2moe: router and experts; gate/up/down = shared expert
}

/** Activation buffers, sized once for the largest step (maxTokens tokens). */
export interface StateLayout {
  x: number;       // (T, hidden) residual stream
  xb: number;      // (T, hidden) normed input of a matmul
  q: number;       // (T, nHeads*headDim)
  k: number;       // (T, nKV*headDim)
  v: number;       // (T, nKV*headDim)
  att: number;     // (T, nHeads*headDim) attention output
  proj: number;    // (T, hidden) o / down projection before the residual add
  gate: number;    // (T, ffn)
  up: number;      // (T, ffn)
  act: Partial<Record<ActivationFormat, number>>; // (T, rowBytes(widest input)) matmul inputs per format
  cosSin: number;  // (T, headDim) per token: headDim/2 cosines, then headDim/2 sines
  scores: number;  // (maxWorkers, contextLength + 4*headDim) attention scratch, one slice per worker
  logits: number;  // (T, vocab), in the output's shard only
  moe?: MoEStateLayout; // qwen2moe: routing, grouped expert rows (compute/model/moe.ts)
}

/**
 * Where a step's inputs are, written by the engine before the workers start. A step carries the
 * tokens of several sequences: each group is one sequence's run of consecutive positions (a prefill
 * chunk or one decode token), with its block table.
 */
export interface StepLayout {
  header: number;    // i32 [nTok, nGroups, nOut]
  tokens: number;    // (maxTokens) i32 token ids
  groups: number;    // (maxGroups, 4) i32 [tokenStart, nTok, pos0, table (byte address)]
  outRows: number;   // (maxTokens) i32 rows whose logits are wanted, in output order
  tables: number;    // (maxGroups, pagesPerSequence) i32 page ids
}

/** One group of a step, as the engine describes it. */
export interface StepGroup {
  tokenStart: number;
  nTok: number;
  pos0: number;
  /** Page ids of the sequence, position j in page table[j / pageSize]. */
  table: ArrayLike<number>;
}

export interface ForwardLayout {
  config: Qwen2Config;
  /** Most positions one sequence can hold. */
  contextLength: number;
  maxTokens: number;
  /** Most sequences (groups) in one step. */
  maxGroups: number;
  maxWorkers: number;
  kvType: KVType;
  kvRowBytes: number;
  pageSize: number;
  kvPages: number;
  pagesPerSequence: number;
  reference: boolean;
  tokenEmbd: MatrixLayout;
  outputNorm: number;
  output: MatrixLayout;
  layers: LayerLayout[];
  state: StateLayout;
  step: StepLayout;
  scoresStride: number; // bytes of one worker's attention scratch
  /** WebAssembly memories the model is placed over; state and step are at the same offsets in each. */
  shards: number;
  /** The shard of token_embd, and of output_norm, the LM head and the logits. */
  embdShard: number;
  outputShard: number;
}

/** Which shard holds each part of a model: token_embd, each layer (weights and KV pools), and the
 *  output norm with the LM head (and the logits). */
export interface ShardPlacement {
  count: number;
  embd: number;
  layers: number[];
  output: number;
}

/** What every shard starts with, at the same offsets: activation scratch (all but the logits) and
 *  the step inputs. */
export interface ShardState {
  state: Omit<StateLayout, "logits">;
  step: StepLayout;
  scoresStride: number;
}

export interface ForwardOptions {
  /** Longest sequence (prompt + generated) one sequence may reach. */
  contextLength: number;
  /** Most tokens one step may carry; longer prompts are run in chunks of this size. */
  maxTokens: number;
  /** Most sequences in one step. */
  maxGroups: number;
  /** Positions per KV page, and the number of pages in the pool (shared by all sequences). */
  pageSize: number;
  kvPages: number;
  kvType: KVType;
  /** Most workers that will run steps (attention scratch is per worker). */
  maxWorkers: number;
  /** Use the scalar reference matmuls (for tests). */
  reference?: boolean;
}

/**
 * Prefill attention (assembly/ops/flash.ts): a sequence with at least FLASH_MIN_TOKENS tokens in the
 * step runs the flash kernel, one item per (KV head, tile of FLASH_TILE tokens); a decode token (and
 * a short chunk) keeps attention_paged_*, which is faster for one query. The tiles are cut by the
 * step, never by the worker count, and a row's result does not depend on its tile anyway.
 */
export const FLASH_MIN_TOKENS = 8;
export const FLASH_TILE = 16;
/** The flash kernel's most keys per block (BLOCK in assembly/ops/flash.ts), for its scratch size. */
const FLASH_BLOCK = 64;

/** Bytes of the flash kernel's scratch for `rows` query rows (assembly/ops/flash.ts). */
export function flashScratchBytes(rows: number, headDim: number): number {
  return 4 * (rows * (2 * headDim + 4) + FLASH_BLOCK * (2 + 2 * headDim));
}

/** kv_store_paged's kvType argument. */
const KV_TYPE_IDS: Record<KVType, number> = { f32: 0, f16: 1, q8_0: 2 };

/** Bytes of one KV row of n values (one position, all KV heads) per cache type. */
export const KV_BYTES: Record<KVType, (n: number) => number> = {
  f32: (n) => 4 * n,
  f16: (n) => 2 * n,
  q8_0: (n) => (n / 32) * 34,
};

/** Checks what the forward step supports of a config and options (before anything is laid out). */
export function checkForward(config: Qwen2Config, options: ForwardOptions): void {
  const { hidden, nHeads, headDim, headDimV, ffn, vocabSize, ropeDim } = config;
  if (options.kvType === "q8_0" && headDim % 32 !== 0) {
    throw new QwasmError("INVALID_ARGUMENT", `a q8_0 KV cache needs a head size divisible by 32 (this model: ${headDim})`);
  }
  if (ropeDim !== headDim) {
    throw new QwasmError("MODEL_UNSUPPORTED", `partial RoPE (rope dimension ${ropeDim} < head size ${headDim}) is not supported`);
  }
  if (headDim !== headDimV) {
    throw new QwasmError("MODEL_UNSUPPORTED", `key head size ${headDim} differs from value head size ${headDimV}`);
  }
  const T = options.maxTokens;
  const G = options.maxGroups;
  // A step's work items are numbered in one counter (compute/workers/protocol.ts): bound them from above.
  const chunks = Math.min(Math.ceil(Math.max(hidden, ffn, vocabSize, nHeads * headDim) / 16), CHUNKS_PER_WORKER * options.maxWorkers);
  const items = config.nLayers * (5 * T + 7 * chunks + (G + Math.ceil(T / FLASH_TILE)) * nHeads + (config.moe ? moeStepItems(T, hidden, config.moe) : 0)) + T + chunks;
  if (items >= MAX_STEP_ITEMS) {
    throw new QwasmError("INVALID_ARGUMENT", `a step of ${T} tokens (maxTokens) over ${G} sequences makes up to ${items} work ` +
      `items, more than the ${MAX_STEP_ITEMS} a step can count; use a smaller maxTokens`);
  }
}

/**
 * Lays out what every shard starts with (call it first on each shard's fresh arena, so the offsets
 * are the same everywhere): the activations (but the logits), the attention scratch and the step
 * inputs. `types` are the weight types of the model's matrices (one conversion buffer per format),
 * `expertTypes` those of a MoE model's expert tensors (their grouped inputs).
 */
export function planShardState(arena: Allocator, config: Qwen2Config, types: readonly number[], expertTypes: readonly number[],
  options: ForwardOptions): ShardState {
  const { hidden, nHeads, nKVHeads, headDim, ffn } = config;
  const T = options.maxTokens;
  const ctx = options.contextLength;
  const G = options.maxGroups;
  const pagesPerSequence = Math.ceil(ctx / options.pageSize);
  // One conversion buffer per activation format the model's matrices use, sized for the widest input.
  const act: Partial<Record<ActivationFormat, number>> = {};
  const widest = Math.max(hidden, ffn, nHeads * headDim);
  for (const type of [...types, ...expertTypes]) {
    const format = activationFormat(type);
    if (format !== "f32" && act[format] === undefined) act[format] = arena.alloc(T * activationRowBytes(format, wholeActivationBlocks(format, widest)));
  }
  const f32 = (n: number) => arena.alloc(4 * n);
  // Attention scratch per worker: the query heads of one KV head together (assembly/ops/attention.ts,
  // paged kernels): their converted queries and their rows of scores; or the flash kernel's scratch
  // for a tile of FLASH_TILE tokens of those heads.
  const group = nHeads / nKVHeads;
  const scoresStride = Math.max(4 * (group * (headDim + ctx) + 4 * headDim), flashScratchBytes(group * FLASH_TILE, headDim));
  return {
    state: {
      x: f32(T * hidden), xb: f32(T * hidden),
      q: f32(T * nHeads * headDim), k: f32(T * nKVHeads * headDim), v: f32(T * nKVHeads * headDim),
      att: f32(T * nHeads * headDim), proj: f32(T * hidden),
      gate: f32(T * ffn), up: f32(T * ffn),
      act,
      cosSin: f32(T * headDim),
      scores: arena.alloc(options.maxWorkers * scoresStride),
      ...(config.moe ? {
        moe: planMoEState((n) => arena.alloc(n), config.nLayers, hidden, T, config.moe,
          expertTypes.map((t) => activationFormat(t))),
      } : {}),
    },
    step: {
      header: arena.alloc(16), tokens: arena.alloc(4 * T), groups: arena.alloc(16 * G),
      outRows: arena.alloc(4 * T), tables: arena.alloc(4 * G * pagesPerSequence),
    },
    scoresStride,
  };
}

/**
 * Lays out the KV pools of each layer (in the shard of the layer, after its weights) and the logits
 * (in the output's shard), and describes the whole forward step. `arenas[k]` is shard k's, on which
 * planShardState ran first and the weights of `tensors` were then placed.
 */
export function planForward(arenas: readonly Allocator[], config: Qwen2Config, tensors: Qwen2Tensors<WeightTensor>,
  options: ForwardOptions, common: ShardState, placement: ShardPlacement): ForwardLayout {
  checkForward(config, options);
  const { nKVHeads, headDim, vocabSize } = config;
  const matrix = (t: WeightTensor): MatrixLayout => ({
    type: t.type, offset: t.offset, cols: t.dims[0], rows: t.dims[1], rowBytes: t.nbytes / t.dims[1],
  });
  // A 3-D expert tensor {cols, rows, E}: `rows` per expert, expert e at offset + e * rows * rowBytes.
  const experts = (t: WeightTensor): MatrixLayout => ({
    type: t.type, offset: t.offset, cols: t.dims[0], rows: t.dims[1], rowBytes: t.nbytes / (t.dims[1] * t.dims[2]),
  });
  const T = options.maxTokens;
  const ctx = options.contextLength;
  const kvRowBytes = KV_BYTES[options.kvType](nKVHeads * headDim);
  const pagesPerSequence = Math.ceil(ctx / options.pageSize);
  const poolBytes = options.kvPages * options.pageSize * kvRowBytes;
  const layers = tensors.layers.map((l, i) => ({
    attnNorm: l.attnNorm.offset,
    q: matrix(l.q), qBias: l.qBias.offset,
    k: matrix(l.k), kBias: l.kBias.offset,
    v: matrix(l.v), vBias: l.vBias.offset,
    o: matrix(l.o),
    ffnNorm: l.ffnNorm.offset,
    gate: matrix(l.gate), up: matrix(l.up), down: matrix(l.down),
    kPool: arenas[placement.layers[i]].alloc(poolBytes),
    vPool: arenas[placement.layers[i]].alloc(poolBytes),
    shard: placement.layers[i],
    ...(l.moe ? {
      moe: {
        router: l.moe.router.offset, sharedGate: l.moe.sharedGate.offset,
        gateExps: experts(l.moe.gateExps), upExps: experts(l.moe.upExps), downExps: experts(l.moe.downExps),
      },
    } : {}),
  }));
  const output = matrix(tensors.output);
  const logits = arenas[placement.output].alloc(4 * T * vocabSize);
  return {
    config,
    contextLength: ctx,
    maxTokens: T,
    maxGroups: options.maxGroups,
    maxWorkers: options.maxWorkers,
    kvType: options.kvType,
    kvRowBytes,
    pageSize: options.pageSize,
    kvPages: options.kvPages,
    pagesPerSequence,
    reference: options.reference ?? false,
    tokenEmbd: matrix(tensors.tokenEmbd),
    outputNorm: tensors.outputNorm.offset,
    output,
    layers,
    state: { ...common.state, logits },
    step: common.step,
    scoresStride: common.scoresStride,
    shards: placement.count,
    embdShard: placement.embd,
    outputShard: placement.output,
  };
}

/**
 * How one worker takes part in a step. Every worker runs the same sequence of `parallel` calls
 * (the control flow never depends on the worker), and each call is one op: its `n` items are done
 * once each, by whichever worker takes them, and the call returns when all `n` are done, so the next
 * op may read what any item wrote. An item's result must not depend on which worker runs it; per
 * worker scratch is addressed by `index` (< layout.maxWorkers).
 */
export interface WorkerSlice {
  index: number;
  count: number;
  parallel(n: number, item: (i: number) => void): void;
}

/** One thread does every item (inline steps, no workers). */
export const INLINE_SLICE: WorkerSlice = {
  index: 0,
  count: 1,
  parallel(n, item) { for (let i = 0; i < n; i++) item(i); },
};

/** [start, end) of `n` items for worker `index` of `count`, boundaries on multiples of `align`. */
export function sliceRange(n: number, index: number, count: number, align = 1): [number, number] {
  const units = Math.ceil(n / align);
  const start = Math.min(n, Math.floor((units * index) / count) * align);
  const end = Math.min(n, Math.floor((units * (index + 1)) / count) * align);
  return [start, end];
}

interface Matrix extends MatrixLayout {
  /** The kernel instance over the matrix's shard. */
  k: Kernels;
  kernels: WeightKernels;
  format: ActivationFormat;
  xStride: number; // bytes of one converted input row
}

/** One item of a matmul op: rows [r0, r1) of a matrix, for every token of the step. */
interface RowChunk {
  m: Matrix;
  r0: number;
  r1: number;
  input: number; // f32 input rows (T, m.cols); converted to m.format by the op before
  out: number;   // f32 output (T, m.rows)
}

/** Row chunks per worker in a matmul op (see rowChunks). */
const CHUNKS_PER_WORKER = 2;

/**
 * The items of a matmul op over one or more matrices: each matrix cut into chunks of whole 16-row
 * units, a few per worker, so that a worker that is slow or descheduled does not hold the others
 * up, while each chunk still streams its rows as long sequential runs.
 */
function rowChunks(parts: readonly { m: Matrix; input: number; out: number }[], workers: number): RowChunk[] {
  const chunks: RowChunk[] = [];
  for (const { m, input, out } of parts) {
    const n = Math.min(Math.ceil(m.rows / 16), workers === 1 ? 1 : CHUNKS_PER_WORKER * workers);
    for (let i = 0; i < n; i++) {
      const [r0, r1] = sliceRange(m.rows, i, n, 16);
      if (r1 > r0) chunks.push({ m, r0, r1, input, out });
    }
  }
  return chunks;
}

/** Executes forward steps described by a ForwardLayout; one per worker, over the shared memory (or
 *  memories: `kernels[k]` is an instance over `memories[k]`, shard k). */
export class ForwardRunner {
  private readonly k: Kernels[];
  private readonly memories: WebAssembly.Memory[];
  private readonly layers: (Omit<LayerLayout, "q" | "k" | "v" | "o" | "gate" | "up" | "down" | "moe"> &
    Record<"q" | "k" | "v" | "o" | "gate" | "up" | "down", Matrix> &
    { qkvChunks: RowChunk[]; oChunks: RowChunk[]; gateUpChunks: RowChunk[]; downChunks: RowChunk[] } &
    { moe?: MoELayerLayout<MoEMatrix> })[];
  private readonly tokenEmbd: Matrix;
  private readonly output: Matrix;
  private readonly outputChunks: RowChunk[];
  /** Attention items of one sequence: [first query head, end) runs within one KV head. */
  private readonly headRuns: [number, number][];
  /** qwen2moe: the routed-expert FFN (gate/up/down of a layer are then its shared expert), per shard. */
  private readonly moe: MoEFeedForward[] = [];

  constructor(kernels: Kernels | readonly Kernels[], memories: WebAssembly.Memory | readonly WebAssembly.Memory[], readonly layout: ForwardLayout) {
    this.k = Array.isArray(kernels) ? [...kernels] : [kernels as Kernels];
    this.memories = Array.isArray(memories) ? [...memories] : [memories as WebAssembly.Memory];
    if (this.k.length !== layout.shards || this.memories.length !== layout.shards) {
      throw new QwasmError("INVALID_ARGUMENT", `the layout has ${layout.shards} shards; got ${this.memories.length} memories and ${this.k.length} kernel instances`);
    }
    const matrix = (m: MatrixLayout, shard: number): Matrix => {
      const kernels = weightKernels(this.k[shard], m.type, layout.reference);
      return { ...m, k: this.k[shard], kernels, format: kernels.format, xStride: activationRowBytes(kernels.format, m.cols) };
    };
    const s = layout.state;
    const W = layout.maxWorkers;
    this.layers = layout.layers.map((l) => {
      const at = (m: MatrixLayout) => matrix(m, l.shard);
      const q = at(l.q), kk = at(l.k), v = at(l.v), o = at(l.o);
      const gate = at(l.gate), up = at(l.up), down = at(l.down);
      return {
        ...l, q, k: kk, v, o, gate, up, down,
        moe: l.moe && { ...l.moe, gateExps: at(l.moe.gateExps), upExps: at(l.moe.upExps), downExps: at(l.moe.downExps) },
        qkvChunks: rowChunks([{ m: q, input: s.xb, out: s.q }, { m: kk, input: s.xb, out: s.k }, { m: v, input: s.xb, out: s.v }], W),
        oChunks: rowChunks([{ m: o, input: s.att, out: s.proj }], W),
        gateUpChunks: rowChunks([{ m: gate, input: s.xb, out: s.gate }, { m: up, input: s.xb, out: s.up }], W),
        downChunks: rowChunks([{ m: down, input: s.gate, out: s.proj }], W),
      };
    });
    this.tokenEmbd = matrix(layout.tokenEmbd, layout.embdShard);
    this.output = matrix(layout.output, layout.outputShard);
    this.outputChunks = rowChunks([{ m: this.output, input: s.xb, out: s.logits }], W);
    const c = layout.config;
    if (c.moe && s.moe) {
      for (let shard = 0; shard < layout.shards; shard++) {
        this.moe.push(new MoEFeedForward(this.k[shard], this.memories[shard], c.hidden, c.eps, layout.maxTokens, c.moe, s, s.moe));
      }
    }
    // The query heads of one KV head go together (the paged kernel reads each page of K and V once
    // for all of them); a KV head's group is cut further only when there are more workers than KV heads.
    const { nHeads, nKVHeads } = layout.config;
    const group = nHeads / nKVHeads;
    const parts = Math.min(group, Math.max(1, Math.ceil(W / nKVHeads)));
    this.headRuns = [];
    for (let kv = 0; kv < nKVHeads; kv++) {
      for (let p = 0; p < parts; p++) {
        const [a, b] = sliceRange(group, p, parts);
        if (b > a) this.headRuns.push([kv * group + a, kv * group + b]);
      }
    }
  }

  /**
   * One forward step, as described in the step inputs (header, tokens, groups, tables, outRows):
   * the logits of the out rows land in state.logits, in order. The caller has checked the inputs
   * and written the RoPE table (one row per token, for its own position).
   */
  runStep(w: WorkerSlice): void {
    const L = this.layout;
    const c = L.config;
    const s = L.state;
    // The step inputs are the same in every shard (Qwen2Forward.run writes each).
    const buffers = this.memories.map((m) => m.buffer);
    const buffer = buffers[0];
    const [T, nGroups, nOut] = new Int32Array(buffer, L.step.header, 3);
    const groups = new Int32Array(buffer, L.step.groups, 4 * nGroups);
    const { hidden, nHeads, nKVHeads, headDim, ffn } = c;
    const qDim = nHeads * headDim;
    const kvDim = nKVHeads * headDim;
    const scale = 1 / Math.sqrt(headDim);
    const kvTypeId = KV_TYPE_IDS[L.kvType];
    const scratch = s.scores + w.index * L.scoresStride;
    const row = (base: number, t: number, width: number) => base + 4 * t * width;
    const ids = new Int32Array(buffer, L.step.tokens, T);
    /** Copies rows of `hidden` floats at `offsets` from shard `from` to the same offsets of shard `to`. */
    const carry = (from: number, to: number, ...offsets: number[]) => {
      for (const at of offsets) new Float32Array(buffers[to], at, hidden).set(new Float32Array(buffers[from], at, hidden));
    };
    const headRuns = this.headRuns;
    // Which group (sequence) each token of the step belongs to.
    const groupOf = new Int32Array(T);
    for (let g = 0; g < nGroups; g++) groupOf.fill(g, groups[4 * g], groups[4 * g] + groups[4 * g + 1]);
    const matmuls = (chunks: RowChunk[], nTok: number) => w.parallel(chunks.length, (i) => this.matmul(chunks[i], nTok));
    // Attention items, six numbers each: group, query heads [h0, h1), tokens [t0, t1) of the group,
    // and 1 for the flash kernel (a (KV head, tile) item) or 0 for attention_paged_* (a head run, all tokens).
    const attnItems: number[] = [];
    const group = nHeads / nKVHeads;
    for (let g = 0; g < nGroups; g++) {
      const n = groups[4 * g + 1];
      if (n >= FLASH_MIN_TOKENS && headDim % 4 === 0) {
        for (let kv = 0; kv < nKVHeads; kv++) {
          for (let t0 = 0; t0 < n; t0 += FLASH_TILE) attnItems.push(g, kv * group, (kv + 1) * group, t0, Math.min(n, t0 + FLASH_TILE), 1);
        }
      } else {
        for (const [h0, h1] of headRuns) attnItems.push(g, h0, h1, 0, n, 0);
      }
    }

    let prev: (typeof this.layers)[number] | undefined;
    for (const [layer, l] of this.layers.entries()) {
      const k = this.k[l.shard];
      const attention = pagedAttention(k, L.kvType);
      const flash = flashAttention(k, L.kvType);
      const from = prev ? prev.shard : L.embdShard;
      // Per token: the residual of the layer before (or the embedding), rmsnorm, q/k/v inputs; at a
      // shard boundary, the token's rows of x and proj come over from the shard before first.
      w.parallel(T, (t) => {
        if (prev) {
          if (from !== l.shard) carry(from, l.shard, row(s.x, t, hidden), row(s.proj, t, hidden));
          k.add(row(s.x, t, hidden), row(s.proj, t, hidden), row(s.x, t, hidden), hidden);
        } else {
          this.tokenEmbd.kernels.dequantize(this.tokenEmbd.offset + ids[t] * this.tokenEmbd.rowBytes, row(s.x, t, hidden), hidden);
          if (from !== l.shard) carry(from, l.shard, row(s.x, t, hidden));
        }
        k.rmsnorm(row(s.x, t, hidden), l.attnNorm, row(s.xb, t, hidden), hidden, 1, c.eps);
        this.convert(l.q, s.xb, t);
        if (l.k.format !== l.q.format) this.convert(l.k, s.xb, t);
        if (l.v.format !== l.q.format && l.v.format !== l.k.format) this.convert(l.v, s.xb, t);
      });
      matmuls(l.qkvChunks, T);
      // Per token: biases, RoPE, and the K and V rows into the sequence's pages.
      w.parallel(T, (t) => {
        k.add_bias(row(s.q, t, qDim), l.qBias, 1, qDim);
        k.add_bias(row(s.k, t, kvDim), l.kBias, 1, kvDim);
        k.add_bias(row(s.v, t, kvDim), l.vBias, 1, kvDim);
        k.rope_neox(row(s.q, t, qDim), 1, nHeads, headDim, qDim, row(s.cosSin, t, headDim));
        k.rope_neox(row(s.k, t, kvDim), 1, nKVHeads, headDim, kvDim, row(s.cosSin, t, headDim));
        const g = groupOf[t];
        const pos = groups[4 * g + 2] + (t - groups[4 * g]);
        k.kv_store_paged(row(s.k, t, kvDim), l.kPool, groups[4 * g + 3], L.pageSize, pos, 1, kvDim, L.kvRowBytes, kvTypeId);
        k.kv_store_paged(row(s.v, t, kvDim), l.vPool, groups[4 * g + 3], L.pageSize, pos, 1, kvDim, L.kvRowBytes, kvTypeId);
      });
      // Attention per (sequence, run of query heads of one KV head[, tile of tokens]).
      w.parallel(attnItems.length / 6, (u) => {
        const [g, h0, h1, t0, t1, isFlash] = attnItems.slice(6 * u, 6 * u + 6);
        const start = groups[4 * g] + t0;
        (isFlash ? flash : attention)(s.q + 4 * start * qDim, l.kPool, l.vPool, groups[4 * g + 3], L.pageSize,
          s.att + 4 * start * qDim, scratch, t1 - t0, groups[4 * g + 2] + t0, nHeads, nKVHeads, headDim, qDim,
          L.kvRowBytes, scale, h0, h1);
      });
      w.parallel(T, (t) => this.convert(l.o, s.att, t));
      matmuls(l.oChunks, T);
      if (l.moe) {
        // qwen2moe: residual, rmsnorm, routed experts + shared expert into proj (compute/model/moe.ts).
        this.moe[l.shard].run({ ...l, moe: l.moe }, layer, T, (n, item) => w.parallel(n, item));
        prev = l;
        continue;
      }
      // Per token: residual, rmsnorm, gate/up inputs.
      w.parallel(T, (t) => {
        k.add(row(s.x, t, hidden), row(s.proj, t, hidden), row(s.x, t, hidden), hidden);
        k.rmsnorm(row(s.x, t, hidden), l.ffnNorm, row(s.xb, t, hidden), hidden, 1, c.eps);
        this.convert(l.gate, s.xb, t);
        if (l.up.format !== l.gate.format) this.convert(l.up, s.xb, t);
      });
      matmuls(l.gateUpChunks, T);
      // Per token: SwiGLU, down's input.
      w.parallel(T, (t) => {
        k.swiglu(row(s.gate, t, ffn), row(s.up, t, ffn), row(s.gate, t, ffn), ffn);
        this.convert(l.down, s.gate, t);
      });
      matmuls(l.downChunks, T);
      prev = l;
    }

    // The out rows: the last residual, the final norm (gathered to rows 0..nOut-1 of xb), the LM head.
    const outRows = new Int32Array(buffer, L.step.outRows, nOut);
    const k = this.k[L.outputShard];
    const from = prev ? prev.shard : L.embdShard;
    w.parallel(nOut, (i) => {
      const r = outRows[i];
      if (from !== L.outputShard) carry(from, L.outputShard, row(s.x, r, hidden), row(s.proj, r, hidden));
      k.add(row(s.x, r, hidden), row(s.proj, r, hidden), row(s.xb, i, hidden), hidden);
      k.rmsnorm(row(s.xb, i, hidden), L.outputNorm, row(s.xb, i, hidden), hidden, 1, c.eps);
      this.convert(this.output, s.xb, i);
    });
    matmuls(this.outputChunks, nOut);
  }

  /** Converts input row t to the matrix's activation format (nothing for f32 weights). */
  private convert(m: Matrix, input: number, t: number): void {
    if (m.format === "f32") return;
    m.k[activationConverter(m.format)](input + 4 * t * m.cols, this.layout.state.act[m.format]! + t * m.xStride, m.cols);
  }

  /** One chunk of rows of out (T, m.rows) = input (T, m.cols) · mᵀ. */
  private matmul(c: RowChunk, T: number): void {
    const m = c.m;
    const x = m.format === "f32" ? c.input : this.layout.state.act[m.format]!;
    const xStride = m.format === "f32" ? 4 * m.cols : m.xStride;
    m.kernels.matmul(m.offset, x, c.out, m.cols, c.r0, c.r1, T, xStride, m.rows);
  }
}
