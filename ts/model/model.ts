// Loading a Qwen2 GGUF into one shared memory: parse the header, check the config and tensors,
// lay out the arena (weights, KV cache, activations), stream the tensor data straight into it,
// instantiate the kernels over it, and start the worker pool (or run inline on one thread).
import { GGUFFile, openGGUF, type GGUFReadProgress } from "../../weights/gguf/reader";
import type { GGUFSource } from "../../weights/gguf/source";
import { mapQwen2Tensors, parseQwen2Config, type Qwen2Config, type Qwen2Tensors } from "../../weights/qwen2";
import { CONTROL_WORDS } from "../../workers/protocol";
import { WorkerPool } from "../../workers/pool";
import { QwasmError } from "../errors";
import { createSharedMemory, instantiateKernels, kernelModule, type Kernels } from "../kernels/module";
import { canUseWorkers } from "../runtime/workers";
import { Arena } from "./arena";
import { ForwardRunner, planForward, type ForwardLayout, type KVType, type WeightTensor } from "./forward";
import { ropeCosSin, ropeYarnCorrDims, type RopeScaling } from "./rope";

export interface LoadOptions {
  /** Tokens the KV cache holds; default min(the file's context length, 4096). */
  contextLength?: number;
  /** Most tokens in one forward step (prefill chunk); default 64. */
  maxTokens?: number;
  /** KV cache element type; default f32. */
  kvType?: KVType;
  /** Compute threads; 1 runs inline on the calling thread. Default: the cores available. */
  threads?: number;
  /** Scalar reference kernels (slow; for tests). */
  reference?: boolean;
  onProgress?: (p: GGUFReadProgress) => void;
  signal?: AbortSignal;
}

const WASM_MEMORY_LIMIT = 4 * 1024 * 1024 * 1024;
const DEFAULT_CONTEXT = 4096;

/** The cores this process may use (navigator.hardwareConcurrency in every runtime qwasm targets). */
export function defaultThreads(): number {
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return Math.max(1, Math.min(16, n ?? 1));
}

/**
 * Runs forward steps of one sequence over the model: inline on the calling thread, or on the
 * worker pool. Steps must not overlap (await each one).
 */
export class Qwen2Forward {
  private readonly host: Float32Array;
  private readonly ropeScaling: RopeScaling;

  constructor(
    private readonly memory: WebAssembly.Memory,
    readonly layout: ForwardLayout,
    private readonly inline: ForwardRunner | undefined,
    private readonly pool: WorkerPool | undefined,
  ) {
    this.host = new Float32Array(layout.maxTokens * layout.config.headDim);
    this.ropeScaling = ropeTableScaling(layout.config);
  }

  get contextLength(): number { return this.layout.contextLength; }
  get maxTokens(): number { return this.layout.maxTokens; }
  /** Compute threads in use. */
  get threads(): number { return this.pool?.size ?? 1; }

  /**
   * Runs `tokens` (at most maxTokens) at positions pos0, pos0+1, ... and returns the logits of the
   * last token, or of every token with `allLogits` (n_tokens × vocab, position-major). A copy.
   */
  async step(tokens: ArrayLike<number>, pos0: number, allLogits = false): Promise<Float32Array> {
    const L = this.layout;
    const c = L.config;
    const T = tokens.length;
    if (T < 1 || T > L.maxTokens) throw new QwasmError("INVALID_ARGUMENT", `a step carries 1..${L.maxTokens} tokens, got ${T}`);
    if (!Number.isInteger(pos0) || pos0 < 0 || pos0 + T > L.contextLength) {
      throw new QwasmError("CONTEXT_OVERFLOW",
        `positions ${pos0}..${pos0 + T - 1} do not fit in the context of ${L.contextLength} tokens`);
    }
    const ids = new Int32Array(this.memory.buffer, L.step.tokens, T);
    for (let t = 0; t < T; t++) {
      const id = tokens[t];
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
        throw new QwasmError("INVALID_ARGUMENT", `token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
      }
      ids[t] = id;
    }
    const firstLogitRow = allLogits ? 0 : T - 1;
    new Int32Array(this.memory.buffer, L.step.header, 3).set([T, pos0, firstLogitRow]);
    const positions = Int32Array.from({ length: T }, (_, t) => pos0 + t);
    const table = ropeCosSin(positions, c.headDim, c.ropeBase, this.host.subarray(0, T * c.headDim), this.ropeScaling);
    new Float32Array(this.memory.buffer, L.state.cosSin, T * c.headDim).set(table);

    if (this.pool) await this.pool.run();
    else this.inline!.runStep({ index: 0, count: 1, barrier: () => {} });
    return new Float32Array(this.memory.buffer, L.state.logits, (T - firstLogitRow) * c.vocabSize).slice();
  }

  async dispose(): Promise<void> {
    await this.pool?.dispose();
  }
}

export interface Qwen2Model {
  file: GGUFFile;
  config: Qwen2Config;
  tensors: Qwen2Tensors<WeightTensor>;
  arena: Arena;
  kernels: Kernels;
  forward: Qwen2Forward;
  /** Stops the workers and closes the file. */
  dispose(): Promise<void>;
}

/** Opens and loads a Qwen2 GGUF from a path, URL, stream, Blob or bytes. */
export async function loadQwen2(source: GGUFSource | GGUFFile, options: LoadOptions = {}): Promise<Qwen2Model> {
  const file = source instanceof GGUFFile ? source : await openGGUF(source, { signal: options.signal });
  try {
    const config = parseQwen2Config(file.metadata, file.tensors);
    const described = mapQwen2Tensors(config, file.tensors);
    const contextLength = options.contextLength ?? Math.min(config.contextLength, DEFAULT_CONTEXT);
    const maxTokens = options.maxTokens ?? 64;
    const requested = options.threads ?? defaultThreads();
    for (const [name, v] of [["contextLength", contextLength], ["maxTokens", maxTokens], ["threads", requested]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new QwasmError("INVALID_ARGUMENT", `${name} must be a positive integer, got ${v}`);
    }
    const threads = requested > 1 && canUseWorkers() ? requested : 1;

    // Refuse before allocating anything when the weights alone cannot fit in one wasm memory.
    const needed = new Set([described.tokenEmbd, described.outputNorm, described.output,
      ...described.layers.flatMap((l) => Object.values(l))]);
    const weightBytes = [...needed].reduce((sum, t) => sum + file.tensor(t.name)!.nbytes + 64, 0);
    if (weightBytes > WASM_MEMORY_LIMIT) {
      throw new QwasmError("OUT_OF_MEMORY",
        `the weights need ${(weightBytes / 2 ** 30).toFixed(2)} GiB, more than the 4 GiB of one WebAssembly memory`);
    }

    const memory = createSharedMemory(Math.ceil((weightBytes + 65536) / 65536));
    const arena = new Arena(memory);
    const placed = new Map<string, WeightTensor>();
    for (const t of needed) {
      const info = file.tensor(t.name)!;
      placed.set(t.name, { ...t, offset: arena.alloc(info.nbytes), nbytes: info.nbytes });
    }
    await file.readTensorData((t) => {
      const w = placed.get(t.name);
      return w ? arena.u8(w.offset, w.nbytes) : null;
    }, options.onProgress);

    const tensors = mapQwen2Tensors(config, [...placed.values()]);
    const layout = planForward(arena, config, tensors, {
      contextLength, maxTokens, kvType: options.kvType ?? "f32", maxWorkers: threads, reference: options.reference,
    });
    const control = arena.alloc(4 * CONTROL_WORDS);
    const kernels = await instantiateKernels(memory);
    const pool = threads > 1 ? await WorkerPool.start(threads, memory, await kernelModule(), layout, control) : undefined;
    const inline = pool ? undefined : new ForwardRunner(kernels, memory, layout);
    const forward = new Qwen2Forward(memory, layout, inline, pool);
    return {
      file, config, tensors, arena, kernels, forward,
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

/** Runs a prompt through the model in chunks of maxTokens, returning the last token's logits (or all). */
export async function prefill(forward: Qwen2Forward, tokens: ArrayLike<number>, pos0 = 0, allLogits = false): Promise<Float32Array> {
  const chunks: Float32Array[] = [];
  let last = new Float32Array(0);
  for (let i = 0; i < tokens.length; i += forward.maxTokens) {
    const chunk = Array.from({ length: Math.min(forward.maxTokens, tokens.length - i) }, (_, j) => tokens[i + j]);
    last = await forward.step(chunk, pos0 + i, allLogits);
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
