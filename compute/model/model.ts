// Loading a Qwen2 GGUF into shared memory: parse the header, check the config and tensors, place the
// model over one or more shards (WebAssembly memories of at most 4 GiB: layers with their KV pools),
// hold the plan against the host's memory, lay out the arenas (weights, KV cache, activations),
// stream the tensor data straight into them, instantiate the kernels over each, and start the worker
// pool (or run inline on one thread).
import { GGUFFile, openGGUF, type GGUFReadProgress } from "../../weights/gguf/reader";
import type { GGUFSource } from "../../weights/gguf/source";
import { weightTypeInfo } from "../../weights/gguf/types";
import { packedRowReader, wasmPacker } from "../kernels/dispatch";
import { layerTensorList, mapQwen2Tensors, parseQwen2Config, type Qwen2Config, type Qwen2Tensors, type TensorDesc } from "../../weights/qwen2";
import { CONTROL_WORDS, MAX_WORKERS } from "../workers/protocol";
import { WorkerPool } from "../workers/pool";
import { QwasmError } from "../../platform/errors";
import { createKernelMemory, instantiateKernels, kernelModule, type Kernels } from "../kernels/module";
import { canUseWorkers } from "../../platform/workers";
import { availableCores } from "../../platform/index";
import { hostMemory, type HostMemory } from "../../platform/memory";
import { Arena, ArenaSizer, type Allocator } from "./arena";
import {
  checkForward, ForwardRunner, INLINE_SLICE, KV_BYTES, planForward, planKVPools, planShardState, stepInputViews,
  type ForwardLayout, type StepInputViews, type ForwardOptions, type KVType, type MatrixLayout, type ShardPlacement, type StepGroup, type WeightTensor,
} from "./forward";
import { checkHostMemory } from "./preflight";
import { x4Layout } from "./interleave";
import { ropeCosSin, ropeYarnCorrDims, type RopeScaling } from "./rope";

export interface LoadOptions {
  /** Tokens the KV cache holds; default min(the file's context length, 4096). */
  contextLength?: number;
  /** Most tokens in one forward step (prefill chunk); default 64. */
  maxTokens?: number;
  /** KV cache element type; default f32. */
  kvType?: KVType;
  /** Most sequences computed together in one step (continuous batching); default 1. */
  maxSequences?: number;
  /** Positions per KV page; default 16. */
  pageSize?: number;
  /**
   * Pages in the KV pool shared by all sequences; at least one full context. Default: enough for
   * maxSequences full contexts, or as many as the 4 GiB memory holds beside the weights and
   * activations when that is fewer (requests wait for pages then).
   */
  kvPages?: number;
  /**
   * Compute threads; 1 runs inline on the calling thread. Default: the cores available (at most 16).
   * More than the cores are capped at the cores, with a warning, unless `oversubscribe` is set:
   * threads that outnumber cores only take turns.
   */
  threads?: number;
  /** Allow more threads than cores. */
  oversubscribe?: boolean;
  /**
   * A forward step that takes longer fails (WORKER_FAILED) and the workers are restarted: the
   * watchdog for a stuck worker. Default 300000 (5 minutes).
   */
  stepTimeoutMs?: number;
  /** Where warnings go (a capped thread count); default console.warn. */
  onWarning?: (message: string) => void;
  /** Scalar reference kernels (slow; for tests). */
  reference?: boolean;
  /**
   * Most bytes of one shard, a WebAssembly memory (default and at most 4 GiB). A model that does
   * not fit in one is placed over several, by layers; smaller shards test that on small models.
   */
  maxShardBytes?: number;
  /**
   * For tests: where each shard's layout starts (bytes, a multiple of 64 KiB; default 64 KiB). A start
   * past 2 GiB puts every offset (state, weights, KV, logits) where a signed 32-bit reading of it is
   * negative: the layout is otherwise the same, the memory is that much larger (untouched pages).
   */
  arenaStart?: number;
  /** The host's memory for the preflight (default: asked of the runtime); tests inject their own. */
  hostMemory?: HostMemory;
  onProgress?: (p: GGUFReadProgress) => void;
  signal?: AbortSignal;
}

const WASM_MEMORY_LIMIT = 4 * 1024 * 1024 * 1024;
const DEFAULT_CONTEXT = 4096;

/** Most threads a model uses unless told otherwise. */
const MAX_DEFAULT_THREADS = 16;

/** The default thread count: the cores this process may use (at most 16). */
export async function defaultThreads(): Promise<number> {
  return Math.max(1, Math.min(MAX_DEFAULT_THREADS, await availableCores()));
}

/** Positions per block of the RoPE row cache (Qwen2Forward.ropeRows). */
const ROPE_BLOCK = 256;

/** Qwen2Forward's views of a step's inputs, RoPE rows and logits (see `views`). */
interface StepViews extends StepInputViews {
  outOf: ArrayBufferLike;
  cosSin: Float32Array;
  /** [n]: the logits of n output rows. */
  logits: Float32Array[];
}

/**
 * Runs forward steps of one sequence over the model: inline on the calling thread, or on the
 * worker pool. Steps must not overlap (await each one).
 */
export class Qwen2Forward {
  private readonly ropeScaling: RopeScaling;
  /** The RoPE cos/sin rows (headDim floats per position, ropeCosSin's), computed a block of
   *  ROPE_BLOCK positions at a time when a step first reaches it and kept: a decode step copies its
   *  row instead of computing it (in JavaScript that V8's mid tier, Maglev, compiles with a boxed
   *  double per operation: 6-12 KB of heap per step under Node 24, most of a step's allocation), and
   *  a server's requests share positions 0..N. At most contextLength × headDim floats (8 MiB for
   *  0.5B at 32768). Each row depends only on its position, so the rows are those of a per-step call. */
  private readonly ropeRows: (Float32Array | undefined)[];
  private readonly soloTable: Int32Array;
  /** Views of the step inputs in shard 0's memory, each of its largest size, and of the logits by
   *  row count: made again only when the buffer changes (a step made a dozen fresh ones). */
  private views: StepViews | undefined;
  /** The positions of a step's tokens (reused). */
  private readonly positions: Int32Array;

  constructor(
    /** The shards' memories (one unless the model is placed over several). */
    private readonly memories: readonly WebAssembly.Memory[],
    readonly layout: ForwardLayout,
    private readonly inline: ForwardRunner | undefined,
    private pool: WorkerPool | undefined,
    /** Starts a fresh pool over the same memory (after a worker died). */
    private readonly startPool?: () => Promise<WorkerPool>,
  ) {
    this.ropeScaling = ropeTableScaling(layout.config);
    this.ropeRows = new Array<Float32Array | undefined>(Math.ceil(layout.contextLength / ROPE_BLOCK)).fill(undefined);
    this.soloTable = Int32Array.from({ length: layout.pagesPerSequence }, (_, p) => p);
    this.positions = new Int32Array(layout.maxTokens);
  }

  get contextLength(): number { return this.layout.contextLength; }
  get maxTokens(): number { return this.layout.maxTokens; }
  get pageSize(): number { return this.layout.pageSize; }
  get kvPages(): number { return this.layout.kvPages; }
  get maxSequences(): number { return this.layout.maxGroups; }
  /** Compute threads in use. */
  get threads(): number { return this.pool?.size ?? this.layout.maxWorkers; }

  /** The step views of shard 0's (and the output shard's) current buffers. */
  private stepViews(): StepViews {
    const L = this.layout;
    const buffer = this.memories[0].buffer;
    const outBuffer = this.memories[L.outputShard].buffer;
    let v = this.views;
    if (!v || v.of !== buffer || v.outOf !== outBuffer) {
      v = this.views = {
        ...stepInputViews(buffer, L), outOf: outBuffer,
        cosSin: new Float32Array(buffer, L.state.cosSin, L.maxTokens * L.config.headDim),
        logits: [],
      };
    }
    return v;
  }

  /** The RoPE rows of positions [ROPE_BLOCK·b, ROPE_BLOCK·(b + 1)), computed on first use. */
  private ropeBlock(b: number): Float32Array {
    const have = this.ropeRows[b];
    if (have) return have;
    const c = this.layout.config;
    const positions = Int32Array.from({ length: ROPE_BLOCK }, (_, i) => b * ROPE_BLOCK + i);
    const rows = ropeCosSin(positions, c.headDim, c.ropeBase, new Float32Array(ROPE_BLOCK * c.headDim), this.ropeScaling);
    this.ropeRows[b] = rows;
    return rows;
  }

  /**
   * qwen2moe: the routing of the last step, per layer and token row (undefined for dense models):
   * `experts` (nLayers × nTok × K) the chosen experts by descending probability, `router`
   * (nLayers × nTok × E) the router logits. A copy; for debugging and the conformance tests.
   */
  lastExperts(): { nTok: number; experts: Int32Array; router: Float32Array } | undefined {
    const m = this.layout.state.moe;
    const moe = this.layout.config.moe;
    if (!m || !moe) return undefined;
    const T = new Int32Array(this.memories[0].buffer, this.layout.step.header, 1)[0];
    const L = this.layout.config.nLayers;
    const { nExperts: E, nExpertsUsed: K } = moe;
    const experts = new Int32Array(L * T * K);
    const router = new Float32Array(L * T * E);
    const maxT = this.layout.maxTokens;
    for (let l = 0; l < L; l++) {
      const buffer = this.memories[this.layout.layers[l].shard].buffer;
      experts.set(new Int32Array(buffer, m.selected + 4 * l * maxT * K, T * K), l * T * K);
      router.set(new Float32Array(buffer, m.router + 4 * l * maxT * E, T * E), l * T * E);
    }
    return { nTok: T, experts, router };
  }

  /** The pool's workers, for tests that kill one (undefined when running inline). */
  get workerPool(): WorkerPool | undefined { return this.pool; }

  /**
   * Runs one step: `tokens` laid out in `groups` (one per sequence, each a run of consecutive
   * positions with the sequence's page table), and returns the logits of the rows in `outRows`
   * (outRows.length × vocab, in that order). A copy.
   */
  async run(tokens: ArrayLike<number>, groups: readonly StepGroup[], outRows: readonly number[]): Promise<Float32Array> {
    return (await this.runInPlace(tokens, groups, outRows)).slice();
  }

  /**
   * As `run`, but the logits are a view of the model's memory, valid until the next step starts
   * (which overwrites them); the caller may change them in place. The engine samples from it at once:
   * a fresh copy of every step's logits (0.6 MB for Qwen2's vocabulary) made V8 collect its young
   * generation every 50 or so decode steps, for the external memory alone.
   */
  async runInPlace(tokens: ArrayLike<number>, groups: readonly StepGroup[], outRows: readonly number[]): Promise<Float32Array> {
    const L = this.layout;
    const c = L.config;
    const T = tokens.length;
    if (T < 1 || T > L.maxTokens) throw new QwasmError("INVALID_ARGUMENT", `a step carries 1..${L.maxTokens} tokens, got ${T}`);
    if (groups.length < 1 || groups.length > L.maxGroups) {
      throw new QwasmError("INVALID_ARGUMENT", `a step carries 1..${L.maxGroups} sequences, got ${groups.length}`);
    }
    let rowsOk = outRows.length >= 1 && outRows.length <= T;
    for (let i = 0; rowsOk && i < outRows.length; i++) {
      const r = outRows[i];
      rowsOk = Number.isInteger(r) && r >= 0 && r < T;
    }
    if (!rowsOk) throw new QwasmError("INVALID_ARGUMENT", `out rows must be 1..${T} token rows of the step`);
    const buffer = this.memories[0].buffer;
    const v = this.stepViews();
    const ids = v.ids;
    for (let t = 0; t < T; t++) {
      const id = tokens[t];
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
        throw new QwasmError("INVALID_ARGUMENT", `token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
      }
      ids[t] = id;
    }
    // Groups: consecutive token runs; positions and page tables checked against the pool.
    const positions = this.positions;
    const groupWords = v.groups;
    let next = 0;
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (g.tokenStart !== next || g.nTok < 1 || g.tokenStart + g.nTok > T) {
        throw new QwasmError("INVALID_ARGUMENT", "step groups must cover the tokens in order, each with at least one token");
      }
      if (!Number.isInteger(g.pos0) || g.pos0 < 0 || g.pos0 + g.nTok > L.contextLength) {
        throw new QwasmError("CONTEXT_OVERFLOW",
          `positions ${g.pos0}..${g.pos0 + g.nTok - 1} do not fit in the context of ${L.contextLength} tokens`);
      }
      const pagesNeeded = Math.ceil((g.pos0 + g.nTok) / L.pageSize);
      const table = v.tables, at = i * L.pagesPerSequence;
      for (let p = 0; p < pagesNeeded; p++) {
        const page = g.table[p];
        if (!Number.isInteger(page) || page < 0 || page >= L.kvPages) {
          throw new QwasmError("INVALID_ARGUMENT", `page table entry ${p} is ${page}; pages are 0..${L.kvPages - 1}`);
        }
        table[at + p] = page;
      }
      for (let t = 0; t < g.nTok; t++) positions[g.tokenStart + t] = g.pos0 + t;
      groupWords[4 * i] = g.tokenStart;
      groupWords[4 * i + 1] = g.nTok;
      groupWords[4 * i + 2] = g.pos0;
      groupWords[4 * i + 3] = L.step.tables + 4 * at;
      next = g.tokenStart + g.nTok;
    }
    if (next !== T) throw new QwasmError("INVALID_ARGUMENT", "step groups must cover every token");
    for (let r = 0; r < outRows.length; r++) v.outRows[r] = outRows[r];
    v.header[0] = T;
    v.header[1] = groups.length;
    v.header[2] = outRows.length;
    const cosSin = v.cosSin;
    const hd = c.headDim;
    for (let t = 0; t < T; t++) {
      const p = positions[t];
      const from = (p % ROPE_BLOCK) * hd;
      // set() of a view, not a loop: unoptimized code boxes every float it reads from a Float32Array
      cosSin.set(this.ropeBlock(Math.floor(p / ROPE_BLOCK)).subarray(from, from + hd), t * hd);
    }
    // Every shard gets the same step inputs at the same offsets (its kernels read them there).
    for (let shard = 1; shard < this.memories.length; shard++) {
      const to = this.memories[shard].buffer;
      for (const [at, bytes] of [[L.step.header, 12], [L.step.tokens, 4 * T], [L.step.groups, 16 * groups.length],
        [L.step.outRows, 4 * outRows.length], [L.state.cosSin, 4 * T * c.headDim]]) {
        new Uint8Array(to, at, bytes).set(new Uint8Array(buffer, at, bytes));
      }
      groups.forEach((g, i) => {
        const at = L.step.tables + 4 * i * L.pagesPerSequence;
        const bytes = 4 * Math.ceil((g.pos0 + g.nTok) / L.pageSize);
        new Uint8Array(to, at, bytes).set(new Uint8Array(buffer, at, bytes));
      });
    }

    if (this.pool) await this.runOnPool(T);
    else this.inline!.runStep(INLINE_SLICE);
    return v.logits[outRows.length] ??= new Float32Array(v.outOf, L.state.logits, outRows.length * c.vocabSize);
  }

  /**
   * One sequence on its own (tests, the logits command): `tokens` at positions pos0.. using pages
   * 0, 1, 2, ... of the pool (which always holds one full context); the logits of the last token,
   * or of all with `allLogits`.
   */
  async step(tokens: ArrayLike<number>, pos0: number, allLogits = false): Promise<Float32Array> {
    return (await this.stepInPlace(tokens, pos0, allLogits)).slice();
  }

  /** As `step`, but the logits are a view of the model's memory, valid until the next step starts
   *  (see `runInPlace`): what `bench` times as the forward pass alone, reading the logits as the
   *  engine does. */
  stepInPlace(tokens: ArrayLike<number>, pos0: number, allLogits = false): Promise<Float32Array> {
    const T = tokens.length;
    const outRows = allLogits ? Array.from({ length: T }, (_, t) => t) : [T - 1];
    return this.runInPlace(tokens, [{ tokenStart: 0, nTok: T, pos0, table: this.soloTable }], outRows);
  }

  /**
   * Runs the step on the pool. If a worker dies or throws, the step fails (every worker unwinds
   * from its barrier, so this is bounded), the pool is replaced by a fresh one over the same
   * memory, and the error goes to the caller: the requests in this step fail, later steps run.
   */
  private async runOnPool(tokens: number): Promise<void> {
    try {
      await this.pool!.run(tokens);
    } catch (error) {
      const broken = this.pool!;
      this.pool = undefined;
      await broken.dispose();
      try {
        this.pool = await this.startPool!();
      } catch (restartError) {
        throw new QwasmError("WORKER_FAILED", `a compute worker failed and the pool could not be restarted: ${String(restartError)}`, { cause: error });
      }
      throw error;
    }
  }

  async dispose(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.dispose();
  }
}

export interface Qwen2Model {
  file: GGUFFile;
  config: Qwen2Config;
  tensors: Qwen2Tensors<WeightTensor>;
  /** The first shard's arena (the only one unless the model is placed over several). */
  arena: Arena;
  /** Every shard's arena, one per WebAssembly memory. */
  arenas: Arena[];
  /** The kernels over the first shard's memory (`shardKernels[k]` over shard k's). */
  kernels: Kernels;
  shardKernels: Kernels[];
  forward: Qwen2Forward;
  /** Stops the workers and closes the file. */
  dispose(): Promise<void>;
}

/**
 * Opens and loads a Qwen2 GGUF from a path, URL, stream, Blob or bytes: the low-level model (config,
 * tensors, forward steps). Most callers want createEngine, which adds the tokenizer and scheduler.
 *
 * @example
 * const model = await loadQwen2("model.gguf", { threads: 2, contextLength: 512 });
 * const logits = await model.forward.step([9707, 1879], 0); // the next-token logits
 * await model.dispose();
 */
export async function loadQwen2(source: GGUFSource | GGUFFile, options: LoadOptions = {}): Promise<Qwen2Model> {
  const file = source instanceof GGUFFile ? source : await openGGUF(source, { signal: options.signal });
  try {
    const { config, plan } = await preflightModel(file, options);
    const { threads, kvPages } = plan;
    if (plan.warning) (options.onWarning ?? console.warn)(plan.warning);
    const memories = plan.shardBytes.map((bytes, i) => {
      try {
        return createKernelMemory(Math.ceil(bytes / 65536));
      } catch (e) {
        throw new QwasmError("INSUFFICIENT_MEMORY", `could not allocate WebAssembly memory ${i + 1} of ${plan.shardBytes.length} ` +
          `(${(bytes / 2 ** 30).toFixed(2)} GiB; the model needs ${(plan.bytes / 2 ** 30).toFixed(2)} GiB in all): ${(e as Error).message}; ` +
          "a smaller quantization, fewer KV pages or a shorter context may fit", { cause: e });
      }
    });
    const arenas = memories.map((m) => new Arena(m, options.arenaStart));
    const { placed, tensors, layout, control } = plan.lay(arenas, kvPages);
    await file.readTensorData((t) => {
      const w = placed.get(t.name);
      return w ? arenas[w.shard].u8(w.offset, w.nbytes) : null;
    }, options.onProgress);
    const module = await kernelModule();
    const shardKernels = await Promise.all(memories.map((m) => instantiateKernels(m, module)));
    interleaveMatrices(layout, shardKernels);
    const startPool = () => WorkerPool.start(threads, memories, module, layout, control, undefined, options.stepTimeoutMs);
    const pool = threads > 1 ? await startPool() : undefined;
    const inline = pool ? undefined : new ForwardRunner(shardKernels, memories, layout);
    const forward = new Qwen2Forward(memories, layout, inline, pool, startPool);
    return {
      file, config, tensors, arena: arenas[0], arenas, kernels: shardKernels[0], shardKernels, forward,
      async dispose() {
        await forward.dispose();
        await file.close();
      },
    };
  } catch (e) {
    await file.close();
    throw e;
  }
}

/** Rearranges, in their memories, the matrices that the layout gives rows interleaved by four
 *  (MatrixLayout.x4, see interleave.ts) or packed blocks (MatrixLayout.packed): every one exactly
 *  once, after their bytes are read, with the kernels of its shard (`kernels[k]`, over memories[k]):
 *  `interleave_x4` and the packers dispatch.ts wasmPacker names (every packed type), which write
 *  the bytes interleave.ts interleaveRows4 / packBlocks write in JavaScript (the tests' references)
 *  4-13x faster. The x4 and Q8_0 writers take a group of four rows through worker 0's scratch
 *  (state.scores, not yet in use: scoresStride >= matmulScratchBytes of the widest matrix, 288 bytes
 *  per 32 columns, where four rows of any type take at most 136). */
export function interleaveMatrices(layout: ForwardLayout, kernels: readonly Kernels[]): void {
  const done = new Set<string>();
  const scratch = layout.state.scores;
  const each = (m: MatrixLayout, shard: number) => {
    if (!m.x4 && !m.packed) return;
    const key = `${shard}:${m.offset}`;
    if (done.has(key)) throw new Error(`matrix at ${key} listed twice`);
    done.add(key);
    const info = weightTypeInfo(m.type)!;
    if (4 * (m.cols / info.blockSize) * info.typeSize > layout.scoresStride) throw new Error(`matrix at ${key}: four rows exceed the scratch`);
    const rows = m.rows * (m.experts ?? 1); // an expert tensor's slabs, one after the other (rows % 4 == 0)
    if (m.x4) {
      const x4 = x4Layout(m.type)!;
      kernels[shard].interleave_x4(m.offset, rows, m.cols, info.typeSize, x4.qsAt, x4.hasMin, x4.plane, scratch);
    } else {
      const pack = wasmPacker(kernels[shard], m.type);
      if (!pack) throw new Error(`matrix at ${key}: no packer for type ${m.type}`);
      pack(m.offset, rows, m.cols, scratch);
    }
  };
  for (const l of layout.layers) {
    for (const m of [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]) each(m, l.shard);
    if (l.moe) for (const m of [l.moe.gateExps, l.moe.upExps, l.moe.downExps]) each(m, l.shard);
  }
  each(layout.output, layout.outputShard);
  // token_embd is read by get_rows: it keeps the file's layout, but for a packed Q8_0 or Q6_K LM head
  // tied to it (the same bytes, packed above; forward.ts reads its rows with the layout's getRow)
  const e = layout.tokenEmbd, o = layout.output;
  const tiedPacked = e.packed && o.packed && packedRowReader(e.type) && e.offset === o.offset && layout.embdShard === layout.outputShard;
  if (e.x4 || (e.packed && !tiedPacked)) throw new Error("token_embd is read by get_rows: it keeps the file's layout (but as a packed Q8_0 or Q6_K LM head tied to it)");
}

/**
 * The model's config and memory plan from its header alone, held against the host's memory (the
 * preflight): what loadQwen2 does before it allocates or reads a tensor byte, with the same options.
 * Only the header is used, so `file` may be opened from header-only bytes (a prefix read with HTTP
 * Range requests, a RandomAccessFile that has only the header): a browser refuses a model it cannot
 * hold before downloading it. Throws what loadQwen2 would (INSUFFICIENT_MEMORY, OUT_OF_MEMORY, MODEL_*).
 */
export async function preflightModel(file: GGUFFile, options: LoadOptions = {}): Promise<{ config: Qwen2Config; plan: MemoryPlan }> {
  const config = parseQwen2Config(file.metadata, file.tensors);
  const described = mapQwen2Tensors(config, file.tensors);
  return { config, plan: await planModel(file, config, described, options) };
}

/** How a model will be laid out in its memories, worked out before anything is allocated. */
export interface MemoryPlan {
  /** Bytes of all the memories: weights, KV cache, activations, step inputs, control block. */
  bytes: number;
  /** Bytes of each shard (WebAssembly memory), in order. */
  shardBytes: number[];
  /** Which shard holds what. */
  placement: ShardPlacement;
  weightBytes: number;
  kvBytes: number;
  /** Activations, scratch, step inputs and the control block (every shard has its own). */
  otherBytes: number;
  kvPages: number;
  threads: number;
  /** Why the thread count differs from what was asked, if it does. */
  warning?: string;
  /** Lays the model out in `arenas` (one per shard: the real ones, or sizers): in each, the shard's
   *  state first (the same offsets everywhere), then its weights, its KV pools, and the logits in the
   *  output's shard. The control block is in shard 0. */
  lay(arenas: readonly Allocator[], kvPages: number): {
    placed: Map<string, WeightTensor & { shard: number }>; tensors: Qwen2Tensors<WeightTensor>; layout: ForwardLayout; control: number;
  };
}

/**
 * Plans the memory of a model exactly: the same layout code runs on sizers first, so a model that
 * cannot be had is refused, with the numbers, before a byte is allocated or read. Layers go into a
 * shard until the next would pass maxShardBytes (default 4 GiB), then into the next shard; the plan is
 * then held against the host's memory (the preflight). The default KV pool shrinks to what fits
 * beside the rest in one 4 GiB memory (never below one full context).
 */
export async function planModel(file: GGUFFile, config: Qwen2Config, described: Qwen2Tensors, options: LoadOptions): Promise<MemoryPlan> {
  const contextLength = options.contextLength ?? Math.min(config.contextLength, DEFAULT_CONTEXT);
  const maxTokens = options.maxTokens ?? 64;
  const cores = await availableCores();
  const requested = options.threads ?? await defaultThreads();
  const maxSequences = options.maxSequences ?? 1;
  const pageSize = options.pageSize ?? 16;
  for (const [name, v] of [["contextLength", contextLength], ["maxTokens", maxTokens], ["threads", requested],
    ["maxSequences", maxSequences], ["pageSize", pageSize], ["kvPages", options.kvPages ?? 1]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new QwasmError("INVALID_ARGUMENT", `${name} must be a positive integer, got ${v}`);
  }
  if (options.stepTimeoutMs !== undefined && !(options.stepTimeoutMs > 0)) {
    throw new QwasmError("INVALID_ARGUMENT", `stepTimeoutMs must be a positive number of milliseconds, got ${options.stepTimeoutMs}`);
  }
  const maxShardBytes = options.maxShardBytes ?? WASM_MEMORY_LIMIT;
  if (!Number.isInteger(maxShardBytes) || maxShardBytes < 1 || maxShardBytes > WASM_MEMORY_LIMIT) {
    throw new QwasmError("INVALID_ARGUMENT", `maxShardBytes must be a whole number of bytes from 1 to ${WASM_MEMORY_LIMIT} ` +
      `(4 GiB, one WebAssembly memory), got ${maxShardBytes}`);
  }
  let threads = requested > 1 && canUseWorkers() ? requested : 1;
  let warning: string | undefined;
  if (threads > cores && !options.oversubscribe) {
    warning = `${threads} threads asked for, but this process has ${cores} core${cores === 1 ? "" : "s"}: using ${cores} ` +
      "(threads beyond the cores only take turns and slow every step; oversubscribe: true allows it)";
    threads = cores;
  }
  if (threads > MAX_WORKERS) {
    throw new QwasmError("INVALID_ARGUMENT", `threads must be at most ${MAX_WORKERS}, got ${threads}`);
  }
  const pagesPerSequence = Math.ceil(contextLength / pageSize);
  if (options.kvPages !== undefined && options.kvPages < pagesPerSequence) {
    throw new QwasmError("INVALID_ARGUMENT", `kvPages ${options.kvPages} hold ${options.kvPages * pageSize} positions; one sequence ` +
      `of contextLength ${contextLength} needs ${pagesPerSequence} pages of ${pageSize}: ask for at least that many, or a shorter context`);
  }
  const kvType = options.kvType ?? "f32";
  const forwardOptions = (kvPages: number): ForwardOptions => ({
    contextLength, maxTokens, maxGroups: maxSequences, pageSize, kvPages, kvType, maxWorkers: threads, reference: options.reference,
  });
  checkForward(config, forwardOptions(pagesPerSequence));
  const tied = described.output.name === described.tokenEmbd.name;
  // The units a shard holds whole, in forward order: token_embd (unless tied to the LM head), each
  // layer, and the head (output_norm and the LM head; with it token_embd when tied).
  const units: TensorDesc[][] = [
    ...(tied ? [] : [[described.tokenEmbd]]),
    ...described.layers.map((l) => layerTensorList(l)),
    [described.outputNorm, described.output],
  ];
  const firstLayerUnit = tied ? 0 : 1;
  const headUnit = units.length - 1;
  const matrixTypes = [...described.layers.flatMap((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]), described.output].map((t) => t.type);
  const downTypes = described.layers.filter((l) => !l.moe).map((l) => l.down.type);
  const expertTypes = described.layers.flatMap((l) => l.moe ? [l.moe.gateExps, l.moe.upExps, l.moe.downExps] : []).map((t) => t.type);
  const placementOf = (unitShard: readonly number[], count: number): ShardPlacement => ({
    count,
    embd: tied ? unitShard[headUnit] : unitShard[0],
    layers: described.layers.map((_, i) => unitShard[firstLayerUnit + i]),
    output: unitShard[headUnit],
  });
  const layWith = (unitShard: readonly number[], count: number) => (arenas: readonly Allocator[], kvPages: number) => {
    const options = forwardOptions(kvPages);
    const common = arenas.map((a) => planShardState(a, config, matrixTypes, expertTypes, downTypes, options))[0];
    const control = arenas.map((a) => a.alloc(4 * CONTROL_WORDS))[0];
    const placement = placementOf(unitShard, count);
    const pools = planKVPools(arenas, config, options, placement);
    const placed = new Map<string, WeightTensor & { shard: number }>();
    units.forEach((unit, u) => {
      const shard = unitShard[u];
      for (const t of unit) {
        const info = file.tensor(t.name)!;
        placed.set(t.name, { ...t, offset: arenas[shard].alloc(info.nbytes), nbytes: info.nbytes, shard });
      }
    });
    const tensors = mapQwen2Tensors(config, [...placed.values()]);
    const layout = planForward(arenas, config, tensors, options, common, placement, pools);
    return { placed, tensors, layout, control };
  };
  /** Bytes of each of `count` shards with units placed as `unitShard` says. */
  const sizes = (unitShard: readonly number[], count: number, kvPages: number) => {
    const sizers = Array.from({ length: count }, () => new ArenaSizer(options.arenaStart));
    layWith(unitShard, count)(sizers, kvPages);
    return sizers.map((s) => s.used);
  };
  const oneShard = units.map(() => 0);
  let weightBytes = 0;
  for (const unit of units) for (const t of unit) weightBytes += file.tensor(t.name)!.nbytes;
  const pageBytes = 2 * config.nLayers * pageSize * KV_BYTES[kvType](config.nKVHeads * config.headDim);
  let kvPages = options.kvPages ?? maxSequences * pagesPerSequence;
  if (options.kvPages === undefined) {
    // As many pages as fit beside the rest in one 4 GiB memory (alignment adds at most a few bytes
    // per pool), at least one context: a bigger pool is asked for with kvPages.
    const withoutKV = sizes(oneShard, 1, 0)[0];
    if (withoutKV + kvPages * pageBytes > WASM_MEMORY_LIMIT) {
      kvPages = Math.max(pagesPerSequence, Math.min(kvPages, Math.floor((WASM_MEMORY_LIMIT - withoutKV) / pageBytes)));
      while (kvPages > pagesPerSequence && sizes(oneShard, 1, kvPages)[0] > WASM_MEMORY_LIMIT) kvPages--;
    }
  }
  const kvBytes = kvPages * pageBytes;
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
  const wayOut = "a smaller quantization, fewer kvPages, a shorter contextLength, fewer maxSequences or an f16/q8_0 KV cache may fit";
  // Greedy, in forward order: a unit joins the current shard while that shard stays within the limit.
  // Units not placed yet wait in a shard after it (sized, never checked), so the current one is exact.
  const unitShard = units.map(() => 1);
  let shard = 0;
  let inShard = 0;
  for (let u = 0; u < units.length; u++) {
    for (let v = u; v < units.length; v++) unitShard[v] = shard + 1;
    unitShard[u] = shard;
    if (sizes(unitShard, shard + 2, kvPages)[shard] > maxShardBytes) {
      if (inShard > 0) {
        shard++;
        inShard = 0;
        for (let v = u; v < units.length; v++) unitShard[v] = shard + 1;
        unitShard[u] = shard;
      }
      const alone = sizes(unitShard, shard + 2, kvPages)[shard];
      if (alone > maxShardBytes) {
        const total = sizes(oneShard, 1, kvPages)[0];
        const name = u === headUnit ? "the output norm and LM head" : u < firstLayerUnit ? "token_embd" : `layer ${u - firstLayerUnit}`;
        throw new QwasmError("OUT_OF_MEMORY",
          `the model needs ${gib(total)} (weights ${gib(weightBytes)}, KV cache ${gib(kvBytes)} for ${kvPages} pages of ` +
          `${pageSize} positions in ${kvType}), and ${name}${u === headUnit || u < firstLayerUnit ? "" : " with its KV pools"} ` +
          `alone needs a memory of ${gib(alone)}, more than a shard's ${gib(maxShardBytes)} (one WebAssembly memory holds at most ` +
          `4 GiB); ${wayOut}${maxShardBytes < WASM_MEMORY_LIMIT ? ", or a larger maxShardBytes" : ""}`);
      }
    }
    inShard++;
  }
  const count = shard + 1;
  const shardBytes = sizes(unitShard, count, kvPages);
  const bytes = shardBytes.reduce((a, b) => a + b, 0);
  const plan: MemoryPlan = {
    bytes, shardBytes, placement: placementOf(unitShard, count), weightBytes, kvBytes, otherBytes: bytes - weightBytes - kvBytes,
    kvPages, threads, warning, lay: layWith(unitShard, count),
  };
  checkHostMemory({ shards: shardBytes, weightBytes, kvBytes, wayOut }, options.hostMemory ?? await hostMemory());
  return plan;
}

/** Runs a prompt through the model in chunks of maxTokens, returning the last token's logits (or all);
 *  `afterStep` runs after each chunk (e.g. to read forward.lastExperts()). */
export async function prefill(forward: Qwen2Forward, tokens: ArrayLike<number>, pos0 = 0, allLogits = false,
  afterStep?: () => void): Promise<Float32Array> {
  const chunks: Float32Array[] = [];
  let last: Float32Array = new Float32Array(0);
  for (let i = 0; i < tokens.length; i += forward.maxTokens) {
    const chunk = Array.from({ length: Math.min(forward.maxTokens, tokens.length - i) }, (_, j) => tokens[i + j]);
    last = await forward.step(chunk, pos0 + i, allLogits);
    afterStep?.();
    if (allLogits) chunks.push(last);
  }
  if (!allLogits) return last;
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

/** The config's rope scaling as ggml_rope_ext's arguments (what llama.cpp passes for Qwen2). */
function ropeTableScaling(c: Qwen2Config): RopeScaling {
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
