// Loading a Qwen2 GGUF into one shared memory: parse the header, check the config and tensors,
// lay out the arena (weights, KV cache, activations), stream the tensor data straight into it, and
// instantiate the kernels over it.
import { GGUFFile, openGGUF, type GGUFReadProgress } from "../../weights/gguf/reader";
import type { GGUFSource } from "../../weights/gguf/source";
import { mapQwen2Tensors, parseQwen2Config, type Qwen2Config, type Qwen2Tensors } from "../../weights/qwen2";
import { QwasmError } from "../errors";
import { createSharedMemory, instantiateKernels, type Kernels } from "../kernels/module";
import { Arena } from "./arena";
import { Qwen2Forward, type KVType, type WeightTensor } from "./forward";

export interface LoadOptions {
  /** Tokens the KV cache holds; default min(the file's context length, 4096). */
  contextLength?: number;
  /** Most tokens in one forward step (prefill chunk); default 64. */
  maxTokens?: number;
  /** KV cache element type; default f32. */
  kvType?: KVType;
  /** Scalar reference kernels (slow; for tests). */
  reference?: boolean;
  onProgress?: (p: GGUFReadProgress) => void;
  signal?: AbortSignal;
}

export interface Qwen2Model {
  file: GGUFFile;
  config: Qwen2Config;
  tensors: Qwen2Tensors<WeightTensor>;
  arena: Arena;
  kernels: Kernels;
  forward: Qwen2Forward;
}

const WASM_MEMORY_LIMIT = 4 * 1024 * 1024 * 1024;
const DEFAULT_CONTEXT = 4096;

/** Opens and loads a Qwen2 GGUF from a path, URL, stream, Blob or bytes. */
export async function loadQwen2(source: GGUFSource | GGUFFile, options: LoadOptions = {}): Promise<Qwen2Model> {
  const file = source instanceof GGUFFile ? source : await openGGUF(source, { signal: options.signal });
  try {
    const config = parseQwen2Config(file.metadata, file.tensors);
    const described = mapQwen2Tensors(config, file.tensors);
    const contextLength = options.contextLength ?? Math.min(config.contextLength, DEFAULT_CONTEXT);
    const maxTokens = options.maxTokens ?? 64;
    if (!Number.isInteger(contextLength) || contextLength < 1) {
      throw new QwasmError("INVALID_ARGUMENT", `contextLength must be a positive integer, got ${contextLength}`);
    }
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      throw new QwasmError("INVALID_ARGUMENT", `maxTokens must be a positive integer, got ${maxTokens}`);
    }

    // Refuse before allocating anything when the weights alone cannot fit in one wasm memory.
    const needed = new Set(roleTensors(described));
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
    const kernels = await instantiateKernels(memory);
    const forward = new Qwen2Forward(kernels, arena, config, tensors, {
      contextLength, maxTokens, kvType: options.kvType ?? "f32", reference: options.reference,
    });
    return { file, config, tensors, arena, kernels, forward };
  } catch (e) {
    await file.close();
    throw e;
  }
}

function roleTensors<T>(t: Qwen2Tensors<T & { name: string }>): (T & { name: string })[] {
  return [t.tokenEmbd, t.outputNorm, t.output, ...t.layers.flatMap((l) => Object.values(l))];
}

/** Runs a prompt through the model in chunks of maxTokens, returning the last token's logits (or all). */
export function prefill(forward: Qwen2Forward, tokens: ArrayLike<number>, pos0 = 0, allLogits = false): Float32Array {
  const chunks: Float32Array[] = [];
  let last = new Float32Array(0);
  for (let i = 0; i < tokens.length; i += forward.maxTokens) {
    const chunk = Array.from({ length: Math.min(forward.maxTokens, tokens.length - i) }, (_, j) => tokens[i + j]);
    last = forward.step(chunk, pos0 + i, allLogits);
    if (allLogits) chunks.push(last);
  }
  if (!allLogits) return last;
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}
