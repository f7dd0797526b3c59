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
// shard, and where the next layer (or the head) is in another shard, one op copies the step's
// residual rows (x) across: the same arithmetic.
import { QwasmError } from "../../platform/errors";
import { interleavable, packable } from "./interleave";
import { activationConverter, activationFormat, activationRowBytes, flashAttention, matmulScratchBytes, packedRowReader, pagedAttention, weightKernels, type ActivationFormat, type WeightKernels } from "../kernels/dispatch";
import { wholeActivationBlocks } from "../../weights/gguf/types";
import type { Kernels } from "../kernels/module";
import type { Qwen2Config, Qwen2Tensors, TensorDesc } from "../../weights/qwen2";
import type { Allocator } from "./arena";
import { MAX_STEP_ITEMS } from "../workers/protocol";
import { MoEFeedForward, moeStepItems, planMoEState, type MoELayer, type MoELayerLayout, type MoEMatrix, type MoEStateLayout, type Parallel } from "./moe";

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
  /** Rows interleaved by four in memory (compute/model/interleave.ts: the loader rearranges the
   *  file's bytes, the x4 kernels read them); absent: the file's layout. */
  x4?: boolean;
  /** Blocks in their type's packed layout (Q3_K, Q5_K, Q6_K, Q8_0: interleave.ts packBlocks, read
   *  by matmul_T_p); absent: the file's. */
  packed?: boolean;
  /** A MoE expert tensor: this many slabs of `rows` rows, expert e's at offset + e * rows * rowBytes
   *  (each laid out as one matrix: an x4 or Q8_0 group never spans two experts, rows % 4 == 0). */
  experts?: number;
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
  moe?: MoELayerLayout<MatrixLayout>;                // qwen2moe: router and experts; gate/up/down = shared expert
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
  actFfn: Partial<Record<ActivationFormat, number>>; // (T, rowBytes(ffn)) the dense down matmul's input per format
                   // (written by the gate/up items while others still read act)
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

/** Views of a step's inputs (StepLayout) in one shard's buffer, each of its largest size: made once
 *  per buffer by the side that writes them (Qwen2Forward) and by each runner that reads them. */
export interface StepInputViews {
  /** The buffer they view (they are made again when a memory's buffer changes). */
  of: ArrayBufferLike;
  header: Int32Array;
  ids: Int32Array;
  groups: Int32Array;
  outRows: Int32Array;
  tables: Int32Array;
}

export function stepInputViews(buffer: ArrayBufferLike, L: ForwardLayout): StepInputViews {
  return {
    of: buffer,
    header: new Int32Array(buffer, L.step.header, 3),
    ids: new Int32Array(buffer, L.step.tokens, L.maxTokens),
    groups: new Int32Array(buffer, L.step.groups, 4 * L.maxGroups),
    outRows: new Int32Array(buffer, L.step.outRows, L.maxTokens),
    tables: new Int32Array(buffer, L.step.tables, L.maxGroups * L.pagesPerSequence),
  };
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
  scoresStride: number; // bytes of one worker's scratch (attention or matmul)
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
 * step runs the flash kernel, one item per (KV head, tile of FLASH_TILE tokens). A decode token (and
 * a short chunk) runs one item per run of query heads (headRuns): with an f32 cache on
 * attention_paged_*, llama.cpp's non-flash attention (the flash kernel is no faster there: 0.95-1.06x
 * at 256-32768 positions); with an f16 or q8_0 cache on the flash kernel too, which widens or
 * dequantizes each block of K and V once for the run's heads where attention_paged_* converts per
 * head (one token at the end of N positions, bench-attention --chunk 1 --tile 1 --relaxed: f16
 * 1.6-2.6x, q8_0 1.4-1.5x faster for N = 256-32768). The
 * tiles are cut by the step, never by the worker count, and a row's result depends neither on its
 * tile nor on its head run.
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
  // Per layer: two norm ops and the o conversion (at most T + workers items each: a row is cut in
  // ranges only when there are fewer tokens than workers), the shard carry, six matmul ops, attention.
  const W = options.maxWorkers;
  const items = config.nLayers * (4 * T + 3 * W + 6 * chunks + (G + Math.ceil(T / FLASH_TILE)) * nHeads +
    (config.moe ? moeStepItems(T, hidden, config.moe) : 0)) + 3 * T + W + chunks;
  if (items >= MAX_STEP_ITEMS) {
    throw new QwasmError("INVALID_ARGUMENT", `a step of ${T} tokens (maxTokens) over ${G} sequences makes up to ${items} work ` +
      `items, more than the ${MAX_STEP_ITEMS} a step can count; use a smaller maxTokens`);
  }
}

/**
 * Lays out what every shard starts with (call it first on each shard's fresh arena, so the offsets
 * are the same everywhere): the activations (but the logits), the attention scratch and the step
 * inputs. `types` are the weight types of the model's matrices (one conversion buffer per format),
 * `expertTypes` those of a MoE model's expert tensors (their grouped inputs), `downTypes` those of
 * the dense layers' ffn_down (a conversion buffer of their own, see StateLayout.actFfn).
 */
export function planShardState(arena: Allocator, config: Qwen2Config, types: readonly number[], expertTypes: readonly number[],
  downTypes: readonly number[], options: ForwardOptions): ShardState {
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
  const actFfn: Partial<Record<ActivationFormat, number>> = {};
  for (const type of downTypes) {
    const format = activationFormat(type);
    if (format !== "f32" && actFfn[format] === undefined) actFfn[format] = arena.alloc(T * activationRowBytes(format, wholeActivationBlocks(format, ffn)));
  }
  const f32 = (n: number) => arena.alloc(4 * n);
  // Scratch per worker: the query heads of one KV head together (assembly/ops/attention.ts, paged
  // kernels): their converted queries and their rows of scores; or the flash kernel's scratch for a
  // tile of FLASH_TILE tokens of those heads; or a matmul's (the widest input of any matrix). A
  // worker runs one of them at a time.
  const group = nHeads / nKVHeads;
  const widestK = Math.max(hidden, ffn, nHeads * headDim, config.moe?.expertFfn ?? 0, config.moe?.sharedFfn ?? 0);
  const scoresStride = 64 * Math.ceil(Math.max(4 * (group * (headDim + ctx) + 4 * headDim),
    flashScratchBytes(group * FLASH_TILE, headDim), matmulScratchBytes(widestK)) / 64);
  return {
    state: {
      x: f32(T * hidden), xb: f32(T * hidden),
      q: f32(T * nHeads * headDim), k: f32(T * nKVHeads * headDim), v: f32(T * nKVHeads * headDim),
      att: f32(T * nHeads * headDim), proj: f32(T * hidden),
      gate: f32(T * ffn), up: f32(T * ffn),
      act, actFfn,
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

/** One layer's K and V pools (kvPages × pageSize rows of the KV type each). */
export interface KVPools { kPool: number; vPool: number }

/**
 * Lays out the KV pools of each layer in the shard of the layer. The loader calls it before it places
 * the weights, so that the pools lie low in their memory: an offset past 1 GiB is no V8 small integer,
 * and every attention call of a decode step would box it (test/model/step-allocation.test.ts).
 */
export function planKVPools(arenas: readonly Allocator[], config: Qwen2Config, options: ForwardOptions, placement: ShardPlacement): KVPools[] {
  const poolBytes = options.kvPages * options.pageSize * KV_BYTES[options.kvType](config.nKVHeads * config.headDim);
  return placement.layers.map((shard) => ({ kPool: arenas[shard].alloc(poolBytes), vPool: arenas[shard].alloc(poolBytes) }));
}

/**
 * Lays out the logits (in the output's shard) and describes the whole forward step. `arenas[k]` is
 * shard k's, on which planShardState ran first, then planKVPools (`pools`), and the weights of
 * `tensors` were then placed.
 */
export function planForward(arenas: readonly Allocator[], config: Qwen2Config, tensors: Qwen2Tensors<WeightTensor>,
  options: ForwardOptions, common: ShardState, placement: ShardPlacement, pools: readonly KVPools[]): ForwardLayout {
  checkForward(config, options);
  const { nKVHeads, headDim, vocabSize } = config;
  // Matrices only the matmuls read get the x4 layout where their type has one, Q3_K, Q5_K, Q6_K and
  // Q8_0 ones the packed layout (not with the scalar reference kernels, which read the file's layout);
  // token_embd, which get_rows reads (and the LM head when tied to it), keeps the file's, but for a
  // Q8_0 or Q6_K one tied to the head (below). A MoE expert tensor too: each expert's slab is a
  // matrix of `rows` rows that only the matmuls read (moe.ts: rows in chunks of MOE_ROW_CHUNK).
  const tied = tensors.output.name === tensors.tokenEmbd.name;
  const laidOut = (m: MatrixLayout, matmulOnly: boolean): MatrixLayout => {
    if (!matmulOnly || options.reference) return m;
    if (interleavable(m.type, m.rows, m.cols)) return { ...m, x4: true };
    return packable(m.type, m.rows, m.cols) ? { ...m, packed: true } : m;
  };
  const matrix = (t: WeightTensor, matmulOnly = true): MatrixLayout =>
    laidOut({ type: t.type, offset: t.offset, cols: t.dims[0], rows: t.dims[1], rowBytes: t.nbytes / t.dims[1] }, matmulOnly);
  // A 3-D expert tensor {cols, rows, E}: `rows` per expert, expert e at offset + e * rows * rowBytes.
  const experts = (t: WeightTensor): MatrixLayout => laidOut({
    type: t.type, offset: t.offset, cols: t.dims[0], rows: t.dims[1], rowBytes: t.nbytes / (t.dims[1] * t.dims[2]), experts: t.dims[2],
  }, true);
  const T = options.maxTokens;
  const ctx = options.contextLength;
  const kvRowBytes = KV_BYTES[options.kvType](nKVHeads * headDim);
  const pagesPerSequence = Math.ceil(ctx / options.pageSize);
  const layers = tensors.layers.map((l, i) => ({
    attnNorm: l.attnNorm.offset,
    q: matrix(l.q), qBias: l.qBias.offset,
    k: matrix(l.k), kBias: l.kBias.offset,
    v: matrix(l.v), vBias: l.vBias.offset,
    o: matrix(l.o),
    ffnNorm: l.ffnNorm.offset,
    gate: matrix(l.gate), up: matrix(l.up), down: matrix(l.down),
    kPool: pools[i].kPool,
    vPool: pools[i].vPool,
    shard: placement.layers[i],
    ...(l.moe ? {
      moe: {
        router: l.moe.router.offset, sharedGate: l.moe.sharedGate.offset,
        gateExps: experts(l.moe.gateExps), upExps: experts(l.moe.upExps), downExps: experts(l.moe.downExps),
      },
    } : {}),
  }));
  // A tied LM head is token_embd itself: packed too where its type's packed layout has a get_rows
  // reader (Q8_0: get_row_q8_0p, Q6_K: dequantize_q6_kp), else both keep the file's layout.
  const tokenEmbd = matrix(tensors.tokenEmbd, false);
  const embdPacked = tied && !options.reference && packedRowReader(tokenEmbd.type) && packable(tokenEmbd.type, tokenEmbd.rows, tokenEmbd.cols);
  const output = embdPacked ? { ...tokenEmbd, packed: true } : matrix(tensors.output, !tied);
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
    tokenEmbd: embdPacked ? output : tokenEmbd,
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
  return [sliceStart(n, index, count, align), sliceStart(n, index + 1, count, align)];
}

/** The start of sliceRange's slice `index` (its end is slice index + 1's start); no array, for the
 *  per-item code of a step, which allocates nothing that grows with the layers (see runStep). */
export function sliceStart(n: number, index: number, count: number, align = 1): number {
  return Math.min(n, Math.floor((Math.ceil(n / align) * index) / count) * align);
}

interface Matrix extends MatrixLayout {
  /** The kernel instance over the matrix's shard. */
  k: Kernels;
  kernels: WeightKernels;
  format: ActivationFormat;
  xStride: number; // bytes of one converted input row
}

/** What the item of a matmul op does after its rows, for every token of the step (see runStep). */
const enum Then {
  Nothing,
  /** q rows (whole heads): bias, RoPE. */
  Query,
  /** k rows (whole heads): bias, RoPE, into the KV pages. */
  Key,
  /** v rows (whole heads): bias, into the KV pages. */
  Value,
  /** x += out (the residual stream), for the rows computed. */
  Residual,
  /** gate rows, then the same rows of up (`pair`), SwiGLU into gate, converted for down. */
  SwiGLU,
}

/** One item of a matmul op: rows [r0, r1) of a matrix, for every token of the step. */
interface RowChunk {
  m: Matrix;
  r0: number;
  r1: number;
  input: number; // f32 input rows (T, m.cols)
  act: Partial<Record<ActivationFormat, number>>; // the input converted per format (T, m.xStride)
  out: number;   // f32 output (T, m.rows)
  then: Then;
  /** Then.SwiGLU: the up matrix's chunk over the same rows, into its own output. */
  pair?: RowChunk;
}

interface ChunkPart {
  m: Matrix;
  input: number;
  act: Partial<Record<ActivationFormat, number>>;
  out: number;
  then?: Then;
  pair?: { m: Matrix; out: number };
}

/** Row chunks per worker in a matmul op (see rowChunks). */
const CHUNKS_PER_WORKER = 2;

/**
 * The items of a matmul op over one or more matrices: each matrix cut into chunks of whole `align`-row
 * units (16, the kernels' unit, or a multiple: whole heads, whole activation blocks), a few per
 * worker, so that a worker that is slow or descheduled does not hold the others up, while each chunk
 * still streams its rows as long sequential runs.
 */
function rowChunks(parts: readonly ChunkPart[], workers: number, align = 16): RowChunk[] {
  const chunks: RowChunk[] = [];
  for (const { m, input, act, out, then = Then.Nothing, pair } of parts) {
    const n = Math.min(Math.ceil(m.rows / align), workers === 1 ? 1 : CHUNKS_PER_WORKER * workers);
    for (let i = 0; i < n; i++) {
      const [r0, r1] = sliceRange(m.rows, i, n, align);
      if (r1 > r0) {
        chunks.push({ m, r0, r1, input, act, out, then, pair: pair && { m: pair.m, r0, r1, input, act, out: pair.out, then: Then.Nothing } });
      }
    }
  }
  return chunks;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const lcm = (a: number, b: number) => (a / gcd(a, b)) * b;

/**
 * The unit in which a row of activations may be cut between workers: whole blocks of every format it
 * is converted to, and at least 32 values (whole SIMD steps of every converter). Each block is
 * converted on its own, so a row converted in such ranges is the row converted whole, bit for bit.
 */
function rangeUnit(formats: Iterable<ActivationFormat>): number {
  let unit = 32;
  for (const format of formats) if (format !== "f32") unit = lcm(unit, wholeActivationBlocks(format, 1));
  return unit;
}

/** The matrices among `ms` whose activation formats differ (one conversion per format), f32 left out. */
function byFormat(ms: Matrix[]): Matrix[] {
  const seen = new Set<ActivationFormat>();
  return ms.filter((m) => m.format !== "f32" && !seen.has(m.format) && seen.add(m.format));
}

type RunnerLayer = Omit<LayerLayout, "q" | "k" | "v" | "o" | "gate" | "up" | "down" | "moe"> &
  Record<"q" | "k" | "v" | "o" | "gate" | "up" | "down", Matrix> & {
    qkvChunks: RowChunk[]; oChunks: RowChunk[]; gateUpChunks: RowChunk[]; downChunks: RowChunk[];
    /** The conversions of the attention norm's output (q/k/v) and of the FFN norm's (gate/up), and
     *  the units their rows (and o's input rows) may be cut in (rangeUnit). */
    qkvInputs: Matrix[]; gateUpInputs: Matrix[];
    qkvUnit: number; gateUpUnit: number; oUnit: number;
    moe?: MoELayerLayout<MoEMatrix>;
  };

/** What ForwardRunner's op items read: the step being run and the current op's arguments. */
interface StepState {
  w: WorkerSlice;
  T: number;
  groups: Int32Array; // views.groups and views.ids, for the op items
  ids: Int32Array;
  buffers: ArrayBuffer[]; // per shard
  /** The step inputs in shard 0's buffer (groups: four words each, first token, tokens, first
   *  position, page table), made again only when the buffer changes: a step made four fresh views. */
  views: StepInputViews | undefined;
  scratch: number; // this worker's
  groupOf: Int32Array; // per token of the step: its group
  posOf: Int32Array;   // and position
  attnItems: Int32Array; // six words per item (see runStep), grown when a step needs more, never shrunk
  nAttn: number;          // items this step
  aligned: Map<number, boolean>;
  l: RunnerLayer;
  k: Kernels; // the layer's shard's kernels
  fuseO: boolean;
  oParts: number;
  norm: { k: Kernels; weight: number; inputs: Matrix[]; unit: number; parts: number; rowOf: Int32Array | undefined };
  chunks: RowChunk[];
  chunkTokens: number;
  carryFrom: number;
  carryTo: number;
}

const rowAt = (base: number, t: number, width: number) => base + 4 * t * width;

/** Executes forward steps described by a ForwardLayout; one per worker, over the shared memory (or
 *  memories: `kernels[k]` is an instance over `memories[k]`, shard k). */
export class ForwardRunner {
  private readonly k: Kernels[];
  private readonly memories: WebAssembly.Memory[];
  private readonly layers: RunnerLayer[];
  private readonly tokenEmbd: Matrix;
  private readonly output: Matrix;
  private readonly outputChunks: RowChunk[];
  private readonly outputUnit: number;
  /** Attention items of one sequence: [first query head, end) runs within one KV head. */
  private readonly headRuns: [number, number][];
  /** Whether the head-run items (decode tokens, short chunks) take the flash kernel: an f16 or q8_0
   *  cache (see FLASH_MIN_TOKENS). 1 or 0, the attention item's kernel flag. */
  private readonly headRunsFlash: number;
  /** qwen2moe: the routed-expert FFN (gate/up/down of a layer are then its shared expert), per shard. */
  private readonly moe: MoEFeedForward[] = [];
  /** Per shard: the attention kernels for the KV type (decode, and the flash kernel of prefill tiles). */
  private readonly attention: ReturnType<typeof pagedAttention>[];
  private readonly flash: ReturnType<typeof flashAttention>[];
  private readonly attentionScale: number;
  private readonly outputInputs: Matrix[];
  /** The step being run, and the arguments of the op being spread (see the op items below runStep). */
  private readonly st: StepState;

  constructor(kernels: Kernels | readonly Kernels[], memories: WebAssembly.Memory | readonly WebAssembly.Memory[], readonly layout: ForwardLayout) {
    this.k = Array.isArray(kernels) ? [...kernels] : [kernels as Kernels];
    this.memories = Array.isArray(memories) ? [...memories] : [memories as WebAssembly.Memory];
    if (this.k.length !== layout.shards || this.memories.length !== layout.shards) {
      throw new QwasmError("INVALID_ARGUMENT", `the layout has ${layout.shards} shards; got ${this.memories.length} memories and ${this.k.length} kernel instances`);
    }
    // Every matrix gets the same properties in the same order (none left out): the op items read
    // `offset` from matrices of every kind (x4, packed, file layout, expert slabs) at one call site,
    // and where objects of two shapes met there V8 loaded the offset as a tagged number and boxed one
    // past 1 GiB for the kernel call (16 bytes per expert matmul chunk of the MoE model under Node 20).
    const matrix = (m: MatrixLayout, shard: number): Matrix => {
      const kernels = weightKernels(this.k[shard], m.type, layout.reference, m.x4, m.packed);
      return {
        type: m.type, offset: m.offset, rows: m.rows, cols: m.cols, rowBytes: m.rowBytes,
        x4: m.x4 === true, packed: m.packed === true, experts: m.experts,
        k: this.k[shard], kernels, format: kernels.format, xStride: activationRowBytes(kernels.format, m.cols),
      };
    };
    const s = layout.state;
    const W = layout.maxWorkers;
    const headDim = layout.config.headDim;
    // q/k/v chunks hold whole heads (RoPE and the KV store follow in the same item); gate/up chunks
    // whole blocks of down's activation format (the conversion for down follows in the same item).
    const headAlign = lcm(16, headDim);
    this.layers = layout.layers.map((l) => {
      const at = (m: MatrixLayout) => matrix(m, l.shard);
      const q = at(l.q), kk = at(l.k), v = at(l.v), o = at(l.o);
      const gate = at(l.gate), up = at(l.up), down = at(l.down);
      return {
        ...l, q, k: kk, v, o, gate, up, down,
        moe: l.moe && { ...l.moe, gateExps: at(l.moe.gateExps), upExps: at(l.moe.upExps), downExps: at(l.moe.downExps) },
        qkvChunks: rowChunks([
          { m: q, input: s.xb, act: s.act, out: s.q, then: Then.Query },
          { m: kk, input: s.xb, act: s.act, out: s.k, then: Then.Key },
          { m: v, input: s.xb, act: s.act, out: s.v, then: Then.Value },
        ], W, headAlign),
        oChunks: rowChunks([{ m: o, input: s.att, act: s.act, out: s.proj, then: Then.Residual }], W),
        gateUpChunks: rowChunks([{ m: gate, input: s.xb, act: s.act, out: s.gate, then: Then.SwiGLU, pair: { m: up, out: s.up } }],
          W, lcm(16, rangeUnit([down.format]))),
        downChunks: rowChunks([{ m: down, input: s.gate, act: s.actFfn, out: s.proj, then: Then.Residual }], W),
        qkvInputs: byFormat([q, kk, v]),
        gateUpInputs: byFormat([gate, up]),
        qkvUnit: rangeUnit([q.format, kk.format, v.format]),
        gateUpUnit: rangeUnit([gate.format, up.format]),
        oUnit: rangeUnit([o.format]),
      };
    });
    this.tokenEmbd = matrix(layout.tokenEmbd, layout.embdShard);
    this.output = matrix(layout.output, layout.outputShard);
    this.outputChunks = rowChunks([{ m: this.output, input: s.xb, act: s.act, out: s.logits }], W);
    this.outputUnit = rangeUnit([this.output.format]);
    this.outputInputs = byFormat([this.output]);
    this.attention = this.k.map((k) => pagedAttention(k, layout.kvType));
    this.flash = this.k.map((k) => flashAttention(k, layout.kvType));
    this.attentionScale = 1 / Math.sqrt(headDim);
    this.st = {
      w: INLINE_SLICE, T: 0, groups: new Int32Array(0), ids: new Int32Array(0), buffers: [], scratch: 0, views: undefined,
      groupOf: new Int32Array(layout.maxTokens), posOf: new Int32Array(layout.maxTokens), attnItems: new Int32Array(6 * 64), nAttn: 0, aligned: new Map(),
      l: this.layers[0], k: this.k[0], fuseO: false, oParts: 1,
      norm: { k: this.k[0], weight: 0, inputs: [], unit: 1, parts: 1, rowOf: undefined },
      chunks: [], chunkTokens: 0, carryFrom: 0, carryTo: 0,
    };
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
    this.headRunsFlash = layout.kvType !== "f32" && layout.config.headDim % 4 === 0 ? 1 : 0;
  }

  /**
   * One forward step, as described in the step inputs (header, tokens, groups, tables, outRows):
   * the logits of the out rows land in state.logits, in order. The caller has checked the inputs
   * and written the RoPE table (one row per token, for its own position).
   *
   * Ops per dense layer (each ends at a barrier): (1) rmsnorm and the q/k/v input conversions, per
   * token, or per range of a token's row when there are fewer tokens than workers; (2) the q/k/v
   * matmuls, each item then adding the bias of its rows, rotating them (whole heads) and writing
   * k/v into the KV pages; (3) attention per (sequence, query heads of one KV head[, tile]), each
   * item converting its heads' output for o when they are whole blocks of o's format (else one more
   * op converts it, per token or range); (4) o, each item adding its rows into x; (5) rmsnorm and
   * the gate/up conversions as (1); (6) gate and up over the same rows in one item, then SwiGLU and
   * the conversion for down of those rows; (7) down, adding into x. One token in flight thus runs 6
   * ops a layer with every worker busy in each. Every value is computed by one item with the same
   * code and order whatever the cut, so the logits do not depend on the worker count.
   */
  runStep(w: WorkerSlice): void {
    const L = this.layout;
    const s = L.state;
    const st = this.st;
    const { nHeads, nKVHeads, headDim } = L.config;
    // The step inputs are the same in every shard (Qwen2Forward.run writes each).
    for (let i = 0; i < this.memories.length; i++) st.buffers[i] = this.memories[i].buffer;
    const buffer = st.buffers[0];
    const v = st.views?.of === buffer ? st.views : (st.views = stepInputViews(buffer, L));
    const T = v.header[0], nGroups = v.header[1], nOut = v.header[2];
    const groups = v.groups;
    st.w = w;
    st.T = T;
    st.groups = groups;
    st.ids = v.ids;
    st.scratch = s.scores + w.index * L.scoresStride;
    // Which group (sequence) each token of the step belongs to, and its position.
    const { groupOf, posOf } = st;
    for (let g = 0; g < nGroups; g++) {
      for (let t = groups[4 * g], j = 0; j < groups[4 * g + 1]; t++, j++) {
        groupOf[t] = g;
        posOf[t] = groups[4 * g + 2] + j;
      }
    }
    // Attention items, six numbers each: group, query heads [h0, h1), tokens [t0, t1) of the group,
    // and 1 for the flash kernel (a (KV head, tile) item) or 0 for attention_paged_* (a head run, all tokens).
    st.nAttn = 0;
    st.aligned.clear();
    const group = nHeads / nKVHeads;
    for (let g = 0; g < nGroups; g++) {
      const n = groups[4 * g + 1];
      if (n >= FLASH_MIN_TOKENS && headDim % 4 === 0) {
        // the last tiles first: they see the most keys (causal), and the workers that claim items in
        // turn then end the op together, the small items last
        for (let t0 = Math.floor((n - 1) / FLASH_TILE) * FLASH_TILE; t0 >= 0; t0 -= FLASH_TILE) {
          for (let kv = 0; kv < nKVHeads; kv++) this.addAttentionItem(g, kv * group, (kv + 1) * group, t0, Math.min(n, t0 + FLASH_TILE), 1);
        }
      } else {
        for (let r = 0; r < this.headRuns.length; r++) this.addAttentionItem(g, this.headRuns[r][0], this.headRuns[r][1], 0, n, this.headRunsFlash);
      }
    }

    // The embedding rows into x (in the embedding's shard), carried to the first layer's shard.
    w.parallel(T, this.embedItem);
    this.carry(L.embdShard, this.layers[0].shard);

    for (let layer = 0; layer < this.layers.length; layer++) {
      const l = this.layers[layer];
      st.l = l;
      st.k = this.k[l.shard];
      this.norm(st.k, l.attnNorm, l.qkvInputs, l.qkvUnit, T, undefined);
      w.parallel(l.qkvChunks.length, this.qkvItem);
      // Attention per (sequence, run of query heads of one KV head[, tile of tokens]).
      const o = l.o;
      st.fuseO = o.format !== "f32" && this.headsAligned(l.oUnit);
      w.parallel(st.nAttn, this.attentionItem);
      if (o.format !== "f32" && !st.fuseO) {
        st.oParts = this.partsOf(T, nHeads * headDim, l.oUnit);
        w.parallel(T * st.oParts, this.oConvertItem);
      }
      this.matmuls(l.oChunks, T);
      if (l.moe) {
        // qwen2moe: rmsnorm, routed experts + shared expert, added into x (compute/model/moe.ts).
        this.moe[l.shard].run(l as RunnerLayer & MoELayer, layer, T, this.stepParallel, st.scratch);
      } else {
        this.norm(st.k, l.ffnNorm, l.gateUpInputs, l.gateUpUnit, T, undefined);
        w.parallel(l.gateUpChunks.length, this.gateUpItem);
        this.matmuls(l.downChunks, T);
      }
      this.carry(l.shard, layer + 1 < this.layers.length ? this.layers[layer + 1].shard : L.outputShard);
    }

    // The out rows: the final norm (gathered to rows 0..nOut-1 of xb), the LM head.
    this.norm(this.k[L.outputShard], L.outputNorm, this.outputInputs, this.outputUnit, nOut, v.outRows);
    this.matmuls(this.outputChunks, nOut);
  }

  // The ops' items. A step calls `parallel` some ten times a layer; were each item function a fresh
  // closure over the step's values, a decode step would allocate tens of KB of them, and the young
  // generation's collections (which took 10-70 ms on the 2-vCPU VM of the README) would land in
  // random steps. So the items are built once per runner and read the step (and the op's arguments)
  // from `st`; what a step still allocates does not grow with the layers.

  /** Parts per row of n values in a per-token op: one, unless there are fewer rows than workers. */
  private partsOf(rows: number, n: number, unit: number): number {
    const count = this.st.w.count;
    return rows >= count || n % unit !== 0 ? 1 : Math.min(Math.ceil(count / rows), n / unit);
  }

  /** Values [i0, i1) of f32 row t of `input` (rows of m.cols) converted for m into `act`. */
  private convertRange(m: Matrix, input: number, act: number, t: number, i0: number, i1: number): void {
    m.k[activationConverter(m.format as Exclude<ActivationFormat, "f32">)](
      input + 4 * (t * m.cols + i0), act + t * m.xStride + activationRowBytes(m.format, i0), i1 - i0);
  }

  /** Appends an attention item (a typed array reused from step to step: a plain array emptied and
   *  pushed again reallocated its elements every step). */
  private addAttentionItem(g: number, h0: number, h1: number, t0: number, t1: number, flash: number): void {
    const st = this.st;
    let a = st.attnItems;
    const at = 6 * st.nAttn;
    if (at + 6 > a.length) {
      const grown = new Int32Array(2 * a.length);
      grown.set(a);
      st.attnItems = a = grown;
    }
    a[at] = g; a[at + 1] = h0; a[at + 2] = h1; a[at + 3] = t0; a[at + 4] = t1; a[at + 5] = flash;
    st.nAttn++;
  }

  /** Whether every attention item's heads are whole units of `unit` values (its o conversion can
   *  follow it); once per unit and step. */
  private headsAligned(unit: number): boolean {
    const { attnItems, nAttn, aligned } = this.st;
    const headDim = this.layout.config.headDim;
    let ok = aligned.get(unit);
    if (ok === undefined) {
      ok = true;
      for (let u = 0; ok && u < 6 * nAttn; u += 6) {
        ok = (attnItems[u + 1] * headDim) % unit === 0 && (attnItems[u + 2] * headDim) % unit === 0;
      }
      aligned.set(unit, ok);
    }
    return ok;
  }

  /** Copies the step's rows of x from shard `from` to the same offsets of shard `to`. */
  private carry(from: number, to: number): void {
    if (from === to) return;
    this.st.carryFrom = from;
    this.st.carryTo = to;
    this.st.w.parallel(this.st.T, this.carryItem);
  }

  /** rmsnorm of x rows (rowOf[i], or i) into xb rows i, converted for `inputs`, per row or range
   *  of whole `unit`s. */
  private norm(k: Kernels, weight: number, inputs: Matrix[], unit: number, nRows: number, rowOf: Int32Array | undefined): void {
    const op = this.st.norm;
    op.k = k;
    op.weight = weight;
    op.inputs = inputs;
    op.unit = unit;
    op.rowOf = rowOf;
    op.parts = this.partsOf(nRows, this.layout.config.hidden, unit);
    this.st.w.parallel(nRows * op.parts, this.normItem);
  }

  /** One matmul op: its chunks spread over the workers, each with what follows its rows. */
  private matmuls(chunks: RowChunk[], T: number): void {
    this.st.chunks = chunks;
    this.st.chunkTokens = T;
    this.st.w.parallel(chunks.length, this.matmulItem);
  }

  private readonly stepParallel: Parallel = (n, item) => this.st.w.parallel(n, item);

  private readonly embedItem = (t: number): void => {
    const e = this.tokenEmbd;
    const hidden = this.layout.config.hidden;
    e.kernels.getRow!(e.offset, this.st.ids[t], hidden, rowAt(this.layout.state.x, t, hidden)); // token_embd's layouts have one (planForward)
  };

  private readonly carryItem = (t: number): void => {
    const { buffers, carryFrom, carryTo } = this.st;
    const hidden = this.layout.config.hidden;
    const at = rowAt(this.layout.state.x, t, hidden);
    new Float32Array(buffers[carryTo], at, hidden).set(new Float32Array(buffers[carryFrom], at, hidden));
  };

  private readonly normItem = (item: number): void => {
    const op = this.st.norm;
    const s = this.layout.state;
    const { hidden, eps } = this.layout.config;
    const P = op.parts;
    const i = Math.floor(item / P);
    const p = item % P;
    const i0 = sliceStart(hidden, p, P, op.unit);
    const i1 = sliceStart(hidden, p + 1, P, op.unit);
    op.k.rmsnorm_range(rowAt(s.x, op.rowOf ? op.rowOf[i] : i, hidden), op.weight, rowAt(s.xb, i, hidden), hidden, i0, i1, eps);
    const inputs = op.inputs;
    for (let j = 0; j < inputs.length; j++) this.convertRange(inputs[j], s.xb, s.act[inputs[j].format]!, i, i0, i1);
  };

  private readonly qkvItem = (i: number): void => {
    const { l, k, T, scratch, groups, groupOf, posOf } = this.st;
    const L = this.layout;
    const s = L.state;
    const { headDim, nHeads, nKVHeads } = L.config;
    const qDim = nHeads * headDim;
    const kvDim = nKVHeads * headDim;
    const ch = l.qkvChunks[i];
    this.matmul(ch, T, scratch);
    const { r0, r1 } = ch;
    const n = r1 - r0;
    if (ch.then === Then.Query) {
      for (let t = 0; t < T; t++) k.add_bias(rowAt(s.q, t, qDim) + 4 * r0, l.qBias + 4 * r0, 1, n);
      k.rope_neox(s.q + 4 * r0, T, n / headDim, headDim, qDim, s.cosSin);
      return;
    }
    const key = ch.then === Then.Key;
    const out = key ? s.k : s.v;
    for (let t = 0; t < T; t++) k.add_bias(rowAt(out, t, kvDim) + 4 * r0, (key ? l.kBias : l.vBias) + 4 * r0, 1, n);
    if (key) k.rope_neox(s.k + 4 * r0, T, n / headDim, headDim, kvDim, s.cosSin);
    const pool = (key ? l.kPool : l.vPool) + KV_BYTES[L.kvType](r0);
    const kvTypeId = KV_TYPE_IDS[L.kvType];
    for (let t = 0; t < T; t++) {
      k.kv_store_paged(rowAt(out, t, kvDim) + 4 * r0, pool, groups[4 * groupOf[t] + 3], L.pageSize, posOf[t], 1, n, L.kvRowBytes, kvTypeId);
    }
  };

  private readonly attentionItem = (u: number): void => {
    const { l, attnItems, groups, scratch, fuseO } = this.st;
    const L = this.layout;
    const s = L.state;
    const { nHeads, nKVHeads, headDim } = L.config;
    const qDim = nHeads * headDim;
    const g = attnItems[6 * u], h0 = attnItems[6 * u + 1], h1 = attnItems[6 * u + 2];
    const t0 = attnItems[6 * u + 3], t1 = attnItems[6 * u + 4], isFlash = attnItems[6 * u + 5];
    const start = groups[4 * g] + t0;
    (isFlash ? this.flash[l.shard] : this.attention[l.shard])(s.q + 4 * start * qDim, l.kPool, l.vPool, groups[4 * g + 3], L.pageSize,
      s.att + 4 * start * qDim, scratch, t1 - t0, groups[4 * g + 2] + t0, nHeads, nKVHeads, headDim, qDim,
      L.kvRowBytes, this.attentionScale, h0, h1);
    if (fuseO) {
      const o = l.o;
      for (let t = start; t < start + t1 - t0; t++) this.convertRange(o, s.att, s.act[o.format]!, t, h0 * headDim, h1 * headDim);
    }
  };

  private readonly oConvertItem = (item: number): void => {
    const { l, oParts: P } = this.st;
    const s = this.layout.state;
    const qDim = this.layout.config.nHeads * this.layout.config.headDim;
    const p = item % P;
    this.convertRange(l.o, s.att, s.act[l.o.format]!, Math.floor(item / P), sliceStart(qDim, p, P, l.oUnit), sliceStart(qDim, p + 1, P, l.oUnit));
  };

  private readonly gateUpItem = (i: number): void => {
    const { l, k, T, scratch } = this.st;
    const s = this.layout.state;
    const down = l.down;
    const ch = l.gateUpChunks[i];
    this.matmul(ch, T, scratch);
    this.matmul(ch.pair!, T, scratch);
    const { r0, r1 } = ch;
    const ffn = l.gate.rows;
    for (let t = 0; t < T; t++) {
      k.swiglu(rowAt(s.gate, t, ffn) + 4 * r0, rowAt(s.up, t, ffn) + 4 * r0, rowAt(s.gate, t, ffn) + 4 * r0, r1 - r0);
      if (down.format !== "f32") this.convertRange(down, s.gate, s.actFfn[down.format]!, t, r0, r1);
    }
  };

  private readonly matmulItem = (i: number): void => {
    const { chunks, chunkTokens: T, scratch } = this.st;
    const s = this.layout.state;
    const hidden = this.layout.config.hidden;
    const ch = chunks[i];
    this.matmul(ch, T, scratch);
    if (ch.then === Then.Residual) {
      for (let t = 0; t < T; t++) {
        const at = 4 * (t * hidden + ch.r0);
        ch.m.k.add(s.x + at, ch.out + at, s.x + at, ch.r1 - ch.r0);
      }
    }
  };

  /** One chunk of rows of out (T, m.rows) = input (T, m.cols) · mᵀ; `scratch`: the worker's own. */
  private matmul(c: RowChunk, T: number, scratch: number): void {
    const m = c.m;
    const x = m.format === "f32" ? c.input : c.act[m.format]!;
    const xStride = m.format === "f32" ? 4 * m.cols : m.xStride;
    m.kernels.matmul(m.offset, x, c.out, m.cols, c.r0, c.r1, T, xStride, m.rows, scratch);
  }
}
