// qwasm quantize: llama-quantize's output for a Qwen2 (or Qwen2-MoE) GGUF, byte for byte, without an
// imatrix. Three parts, each as llama.cpp does it (src/llama-quant.cpp):
//   - the per-tensor type of every ftype mix (llama_tensor_get_type: which tensors get more bits, by
//     layer and role; the fallbacks when a row length is not a multiple of the block size; a tied
//     token_embd treated as the output tensor; norms, biases, routers and 1-D tensors left as they are);
//   - the file: the input's metadata with general.quantization_version and general.file_type moved to
//     the end, the tensors sorted as llama.cpp's loader sorts them (non-layer tensors by name, then by
//     layer number and name), trailing dimensions of 1 dropped;
//   - the data: the scalar reference quantizers of weights/quant (byte-identical to ggml's).
// The output is produced tensor by tensor and, within a tensor, a few MiB of rows at a time, so a 7B
// F16 input needs a few tensors' worth of memory at most.

import { QwasmError } from "../platform/errors";
import { openFile, type RandomAccessFile } from "../platform/index";
import { spawnWorker, type WorkerHandle } from "../platform/workers";
import { kv, type GGUFEntry } from "../weights/gguf/metadata";
import { openGGUF } from "../weights/gguf/reader";
import { GGMLType, type GGMLTypeName, rowBytes, typeInfo, typeName } from "../weights/gguf/types";

/** "Q4_K" for a known type id, typeName's text otherwise. */
function nameOf(id: number): string {
  return typeInfo(id)?.name ?? typeName(id);
}
import { writeGGUFFile, type GGUFLayout, type GGUFSink, type GGUFToWrite, writeGGUF } from "../weights/gguf/writer";
import { bf16ToF32, f16ToF32 } from "../weights/quant/half";
import { QUANTIZABLE_TYPES, quantTraits } from "../weights/quant/index";

// ---------------------------------------------------------------------------------------------
// File types (llama_ftype) and their default tensor type

/** The ftypes qwasm writes: name → [general.file_type, default tensor type]. */
const FTYPES = {
  F32: [0, "F32"], F16: [1, "F16"], BF16: [32, "BF16"],
  Q4_0: [2, "Q4_0"], Q4_1: [3, "Q4_1"], Q5_0: [8, "Q5_0"], Q5_1: [9, "Q5_1"], Q8_0: [7, "Q8_0"],
  Q2_K: [10, "Q2_K"],
  Q3_K_S: [11, "Q3_K"], Q3_K_M: [12, "Q3_K"], Q3_K_L: [13, "Q3_K"],
  Q4_K_S: [14, "Q4_K"], Q4_K_M: [15, "Q4_K"],
  Q5_K_S: [16, "Q5_K"], Q5_K_M: [17, "Q5_K"],
  Q6_K: [18, "Q6_K"],
  IQ4_NL: [25, "IQ4_NL"],
} as const satisfies Record<string, readonly [number, GGMLTypeName]>;

export type QuantizeFtypeName = keyof typeof FTYPES;

/** llama-quantize's aliases: the K-quant names without a size are the _M mixes. */
const ALIASES: Record<string, QuantizeFtypeName> = { Q3_K: "Q3_K_M", Q4_K: "Q4_K_M", Q5_K: "Q5_K_M" };

/** Every name `type` accepts (the ftypes and the aliases). */
export const QUANTIZE_TYPES: readonly string[] = [
  "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q3_K", "Q4_K_S", "Q4_K_M", "Q4_K",
  "Q5_K_S", "Q5_K_M", "Q5_K", "Q6_K", "IQ4_NL", "F16", "BF16", "F32",
];

/** llama-quantize types that need an importance matrix (or, IQ3_S/IQ3_M/IQ4_XS, a type qwasm cannot write). */
const NEEDS_IMATRIX = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "Q2_K_S"];
const NOT_WRITTEN = ["IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4_MOE", "COPY"];

function supportedText(): string {
  return `supported: ${QUANTIZE_TYPES.join(" ")}`;
}

/** The ftype a name means; throws a QwasmError that says why for imatrix types and unknown names. */
export function quantizeFtype(name: string): { name: QuantizeFtypeName; ftype: number; defaultType: number } {
  const upper = name.toUpperCase();
  const canonical = (ALIASES[upper] ?? upper) as QuantizeFtypeName;
  const entry = FTYPES[canonical];
  if (!entry) {
    if (NEEDS_IMATRIX.includes(upper)) {
      throw new QwasmError("INVALID_ARGUMENT",
        `${upper} needs an importance matrix (llama-quantize --imatrix), which qwasm quantize does not take; ${supportedText()}`);
    }
    if (NOT_WRITTEN.includes(upper)) {
      throw new QwasmError("INVALID_ARGUMENT", `qwasm quantize does not write ${upper}; ${supportedText()}`);
    }
    throw new QwasmError("INVALID_ARGUMENT", `unknown quantization type "${name}"; ${supportedText()}`);
  }
  return { name: canonical, ftype: entry[0], defaultType: GGMLType[entry[1]] };
}

/** A tensor type given by name (--output-type, --token-embedding-type): one qwasm can write. */
export function writableTensorType(name: string, what: string): number {
  const upper = name.toUpperCase();
  if (!(QUANTIZABLE_TYPES as readonly string[]).includes(upper)) {
    const needs = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "IQ3_XXS"].includes(upper) ? " (it needs an importance matrix)" : "";
    throw new QwasmError("INVALID_ARGUMENT",
      `${what} ${name}: qwasm cannot write that tensor type${needs}; types: ${QUANTIZABLE_TYPES.join(" ")}`);
  }
  return GGMLType[upper as GGMLTypeName];
}

// ---------------------------------------------------------------------------------------------
// The per-tensor type choice (llama_tensor_get_type for qwen2 / qwen2moe)

export interface QuantizeOptions {
  /** An ftype mix (Q4_K_M, ...) or a plain type (Q4_0, Q8_0, ...; F16, BF16, F32): see QUANTIZE_TYPES. */
  type: string;
  /** Every quantizable tensor in the default type, no mix (llama-quantize --pure). */
  pure?: boolean;
  /** Type of output.weight (and of a tied token_embd, unless pure). */
  outputType?: string;
  /** Type of token_embd.weight. */
  tokenEmbeddingType?: string;
  /** Quantize tensors that are already quantized (dequantized first; llama-quantize --allow-requantize). */
  allowRequantize?: boolean;
  /**
   * Workers that quantize rows in parallel (quantizeGGUF; default 1: this thread). The bytes do not
   * depend on it: rows are independent.
   */
  threads?: number;
  /** The quantize worker bundle; default dist/quantize-worker.js (beside this module when bundled). */
  workerUrl?: URL;
}

export interface TensorDescription {
  name: string;
  /** [ne0, ne1, ...], ne0 the row length. */
  dims: readonly number[];
  type: number;
}

export interface TensorPlan extends TensorDescription {
  /** dims without trailing 1s (what llama-quantize writes). */
  outDims: number[];
  /** The type written. */
  outType: number;
  /** Why outType is not what the mix asked for, when a row length forced a fallback. */
  fallback?: string;
}

export interface QuantizePlan {
  ftypeName: QuantizeFtypeName;
  ftype: number;
  /** In output order. */
  tensors: TensorPlan[];
  /** The output metadata, in order. */
  metadata: [string, GGUFEntry][];
}

type Category = "TOKEN_EMBD" | "ATTENTION_Q" | "ATTENTION_V" | "ATTENTION_K" | "ATTENTION_QKV" | "ATTENTION_KV_B" |
  "ATTENTION_OUTPUT" | "FFN_UP" | "FFN_GATE" | "FFN_DOWN" | "OUTPUT" | "OTHER";

function category(name: string): Category {
  if (name === "output.weight") return "OUTPUT";
  if (name === "token_embd.weight" || name === "per_layer_token_embd.weight") return "TOKEN_EMBD";
  if (name.includes("attn_qkv.weight")) return "ATTENTION_QKV";
  if (name.includes("attn_kv_b.weight")) return "ATTENTION_KV_B";
  if (name.includes("attn_v.weight")) return "ATTENTION_V";
  if (name.includes("attn_k.weight")) return "ATTENTION_K";
  if (name.includes("attn_q.weight")) return "ATTENTION_Q";
  if (name.includes("attn_output.weight")) return "ATTENTION_OUTPUT";
  if (name.includes("ffn_up")) return "FFN_UP";
  if (name.includes("ffn_gate")) return "FFN_GATE";
  if (name.includes("ffn_down")) return "FFN_DOWN";
  return "OTHER";
}

const isAttnV = (c: Category) => c === "ATTENTION_V" || c === "ATTENTION_QKV" || c === "ATTENTION_KV_B";

/** ggml_n_dims: the dimensions up to the last one that is not 1. */
function nDims(dims: readonly number[]): number {
  let n = dims.length;
  while (n > 1 && dims[n - 1] === 1) n--;
  return n;
}

/** tensor_allows_quantization (the names that concern a Qwen2 file, and the generic ones). */
function allowsQuantization(t: TensorDescription): boolean {
  if (nDims(t.dims) < 2) return false;
  const name = t.name;
  if (!name.endsWith("weight")) return false;
  const never = ["_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "attn_rel_b.weight", ".position_embd", ".rel_pos", ".patch_embd", ".patch_merger"];
  if (never.some((s) => name.includes(s))) return false;
  return name !== "position_embd.weight" && name !== "token_types.weight";
}

/** The layer of a "blk.N." name (sscanf "blk.%d."), or -1. */
function layerOf(name: string): number {
  const m = /^blk\.\s*([+-]?\d+)/.exec(name);
  return m ? parseInt(m[1], 10) : -1;
}

/** llama_model_loader's weight order: by layer (-1 first), then by name. */
function compareWeights(a: string, b: string): number {
  const la = layerOf(a);
  const lb = layerOf(b);
  if (la !== lb) return la < lb ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

interface Hparams {
  arch: "qwen2" | "qwen2moe";
  nLayer: number;
  nGqa: number;
  nExpert: number;
  is70B: boolean;
}

function firstNumber(entry: GGUFEntry | undefined, key: string): number {
  const v = entry?.value;
  if (typeof v === "number") return v;
  if (typeof v === "object" && v !== null && "items" in v && typeof v.items[0] === "number") return v.items[0] as number;
  throw new QwasmError("MODEL_INVALID", `quantize: metadata ${key} is missing or not a number`);
}

function hparams(metadata: Map<string, GGUFEntry>): Hparams {
  const arch = metadata.get("general.architecture")?.value;
  if (arch !== "qwen2" && arch !== "qwen2moe") {
    throw new QwasmError("MODEL_UNSUPPORTED",
      `quantize: general.architecture is ${JSON.stringify(arch ?? null)}; qwasm quantize applies llama.cpp's rules for qwen2 and qwen2moe`);
  }
  const nLayer = firstNumber(metadata.get(`${arch}.block_count`), `${arch}.block_count`);
  const nHead = firstNumber(metadata.get(`${arch}.attention.head_count`), `${arch}.attention.head_count`);
  const kvEntry = metadata.get(`${arch}.attention.head_count_kv`);
  const nHeadKv = kvEntry ? firstNumber(kvEntry, `${arch}.attention.head_count_kv`) : nHead;
  const expertEntry = metadata.get(`${arch}.expert_count`);
  const nExpert = expertEntry ? firstNumber(expertEntry, `${arch}.expert_count`) : 0;
  return {
    arch, nLayer, nExpert,
    nGqa: nHeadKv === 0 ? 0 : Math.floor(nHead / nHeadKv),
    is70B: arch === "qwen2" && nLayer === 80, // llama.cpp's LLM_TYPE_70B for qwen2 (Qwen2-72B)
  };
}

const T = GGMLType;

/** tensor_type_fallback: a type whose block fits the row length. */
function fallbackType(t: TensorDescription, target: number): { type: number; why?: string } {
  const ncols = t.dims[0];
  const block = typeInfo(target)!.blockSize;
  if (ncols % block === 0) return { type: target };
  let type: number;
  switch (target) {
    case T.Q2_K: case T.Q3_K: type = T.Q4_0; break;
    case T.Q4_K: type = T.Q5_0; break;
    case T.Q5_K: type = T.Q5_1; break;
    case T.Q6_K: type = T.Q8_0; break;
    default:
      throw new QwasmError("INVALID_ARGUMENT",
        `quantize: tensor ${t.name} has rows of ${ncols}, not a multiple of the ${nameOf(target)} block size ${block}, and llama.cpp defines no fallback for it`);
  }
  if (ncols % typeInfo(type)!.blockSize !== 0) type = T.F16;
  return { type, why: `rows of ${ncols} are not a multiple of ${block} (${typeInfo(target)!.name}): ${typeInfo(type)!.name}` };
}

/** llama_tensor_get_type_impl for the ftypes qwasm writes. */
class TypeChooser {
  private iAttentionWv = 0;
  private iFfnDown = 0;
  private iFfnGate = 0;
  private iFfnUp = 0;
  readonly nAttentionWv: number;
  readonly tied: boolean;

  constructor(private readonly hp: Hparams, private readonly ftype: QuantizeFtypeName, names: readonly string[],
    private readonly outputType: number | undefined) {
    this.nAttentionWv = names.filter((n) => isAttnV(category(n))).length;
    this.tied = !names.includes("output.weight");
  }

  private static useMoreBits(i: number, n: number): boolean {
    return i < Math.trunc(n / 8) || i >= Math.trunc((7 * n) / 8) || (i - Math.trunc(n / 8)) % 3 === 2;
  }

  /** (i_layer, n_layer): the counter, or for MoE models the layer in the name (experts interleave). */
  private layerInfo(counter: number, name: string): [number, number] {
    const n = this.hp.nLayer;
    if (this.hp.nExpert > 1) {
      const l = layerOf(name);
      if (l < 0 || l >= n) throw new QwasmError("MODEL_INVALID", `quantize: tensor ${name}: no layer in 0..${n - 1} in its name`);
      return [l, n];
    }
    return [counter, n];
  }

  choose(t: TensorDescription, cat: Category, defaultType: number): number {
    const ftype = this.ftype;
    const hp = this.hp;
    let type = defaultType;
    if (cat === "OUTPUT" || (this.tied && cat === "TOKEN_EMBD")) {
      if (this.outputType !== undefined) return this.outputType;
      if (t.dims[0] % typeInfo(type)!.blockSize !== 0) type = T.Q8_0;
      else if (type !== T.Q8_0) type = T.Q6_K;
      return type;
    }
    if (cat === "TOKEN_EMBD") return type; // no rule for the ftypes written here
    if (isAttnV(cat)) {
      if (ftype === "Q2_K") type = hp.nGqa >= 4 ? T.Q4_K : T.Q3_K;
      else if (ftype === "Q3_K_M") type = this.iAttentionWv < 2 ? T.Q5_K : T.Q4_K;
      else if (ftype === "Q3_K_L") type = T.Q5_K;
      else if (ftype === "IQ4_NL" && hp.nGqa >= 4) type = T.Q5_K;
      else if ((ftype === "Q4_K_M" || ftype === "Q5_K_M") && TypeChooser.useMoreBits(this.iAttentionWv, this.nAttentionWv)) type = T.Q6_K;
      else if (ftype === "Q4_K_S" && this.iAttentionWv < 4) type = T.Q5_K;
      if (hp.is70B && (type === T.Q3_K || type === T.Q4_K)) type = T.Q5_K;
      if (hp.nExpert === 8) type = T.Q8_0;
      this.iAttentionWv++;
    } else if (cat === "ATTENTION_K") {
      if (hp.nExpert === 8) type = T.Q8_0;
    } else if (cat === "FFN_DOWN") {
      const [iLayer, nLayer] = this.layerInfo(this.iFfnDown, t.name);
      const n8 = Math.trunc(nLayer / 8);
      if (ftype === "Q2_K") type = T.Q3_K;
      else if (ftype === "Q3_K_M") {
        type = iLayer < Math.trunc(nLayer / 16) ? T.Q5_K : T.Q4_K; // arch != FALCON: Q4_K
      } else if (ftype === "Q3_K_L") type = T.Q5_K;
      else if (ftype === "Q4_K_M") {
        if (TypeChooser.useMoreBits(iLayer, nLayer)) type = T.Q6_K;
      } else if (iLayer < n8 && ftype === "IQ4_NL") type = T.Q5_K;
      else if (ftype === "Q5_K_M" && TypeChooser.useMoreBits(iLayer, nLayer)) type = T.Q6_K;
      else if (ftype === "Q4_K_S" && iLayer < n8) type = T.Q5_K;
      this.iFfnDown++;
    } else if (cat === "ATTENTION_OUTPUT") {
      if (hp.nExpert === 8) {
        if (ftype === "Q2_K" || ftype === "Q3_K_S" || ftype === "Q3_K_M" || ftype === "IQ4_NL" || ftype === "Q4_K_S" || ftype === "Q4_K_M") {
          type = T.Q5_K;
        }
      } else if (ftype === "Q2_K") type = T.Q3_K;
      else if (ftype === "Q3_K_M") type = T.Q4_K;
      else if (ftype === "Q3_K_L") type = T.Q5_K;
    } else if (cat === "FFN_GATE") {
      this.layerInfo(this.iFfnGate, t.name);
      this.iFfnGate++;
    } else if (cat === "FFN_UP") {
      this.layerInfo(this.iFfnUp, t.name);
      this.iFfnUp++;
    }
    return type;
  }
}

/** Output metadata: the input's, split keys dropped, quantization_version and file_type set last. */
function outputMetadata(entries: Iterable<[string, GGUFEntry]>, ftype: number): [string, GGUFEntry][] {
  const drop = new Set(["general.quantization_version", "general.file_type", "split.no", "split.count", "split.tensors.count"]);
  const out = [...entries].filter(([key]) => !drop.has(key));
  out.push(["general.quantization_version", kv.u32(2)], ["general.file_type", kv.u32(ftype)]);
  return out;
}

/** What quantizing a file with these options writes: every tensor's type, the order, the metadata. */
export function planQuantization(metadata: Iterable<[string, GGUFEntry]>, tensors: readonly TensorDescription[],
  options: QuantizeOptions): QuantizePlan {
  const { name: ftypeName, ftype, defaultType } = quantizeFtype(options.type);
  const outputType = options.outputType === undefined ? undefined : writableTensorType(options.outputType, "--output-type");
  const embdType = options.tokenEmbeddingType === undefined ? undefined
    : writableTensorType(options.tokenEmbeddingType, "--token-embedding-type");
  const entries = [...metadata];
  const hp = hparams(new Map(entries));
  const sorted = [...tensors].sort((a, b) => compareWeights(a.name, b.name));
  const chooser = new TypeChooser(hp, ftypeName, sorted.map((t) => t.name), outputType);
  const quantizedDefault = typeInfo(defaultType)!.blockSize > 1;
  const plans: TensorPlan[] = sorted.map((t) => {
    const outDims = t.dims.slice(0, nDims(t.dims));
    if (!allowsQuantization(t)) return { ...t, outDims, outType: t.type };
    const cat = category(t.name);
    let outType: number;
    let fallback: string | undefined;
    if (embdType !== undefined && cat === "TOKEN_EMBD") outType = embdType;
    else if (outputType !== undefined && cat === "OUTPUT") outType = outputType;
    else if (!quantizedDefault) outType = defaultType;
    else {
      const chosen = options.pure ? defaultType : chooser.choose(t, cat, defaultType);
      const fb = fallbackType(t, chosen);
      outType = fb.type;
      fallback = fb.why;
    }
    if (t.dims[0] % typeInfo(outType)!.blockSize !== 0) {
      throw new QwasmError("INVALID_ARGUMENT",
        `quantize: tensor ${t.name} has rows of ${t.dims[0]}, not a multiple of the ${nameOf(outType)} block size ${typeInfo(outType)!.blockSize}`);
    }
    if (outType !== t.type && typeInfo(t.type)!.blockSize > 1 && !options.allowRequantize) {
      throw new QwasmError("INVALID_ARGUMENT",
        `quantize: tensor ${t.name} is already ${nameOf(t.type)}; requantizing loses accuracy (allowRequantize / --allow-requantize does it anyway)`);
    }
    return { ...t, outDims, outType, fallback };
  });
  return { ftypeName, ftype, tensors: plans, metadata: outputMetadata(entries, ftype) };
}

// ---------------------------------------------------------------------------------------------
// The data

/** A tensor to quantize: its description and its bytes, read on demand. */
export interface QuantizeSourceTensor extends TensorDescription {
  /** `length` bytes of this tensor's data, from `offset` bytes into it. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

export interface QuantizeSource {
  metadata: Iterable<[string, GGUFEntry]>;
  tensors: readonly QuantizeSourceTensor[];
}

/** Input bytes converted per step; a multiple of whole rows (at least one). */
const CHUNK_INPUT_BYTES = 8 * 1024 * 1024;

/** `rows` rows of `type` → f32. */
function toF32(type: number, bytes: Uint8Array, count: number, tensor: string, allowRequantize: boolean): Float32Array {
  switch (type) {
    case T.F32: {
      const out = new Float32Array(count);
      new Uint8Array(out.buffer).set(bytes.subarray(0, 4 * count));
      return out;
    }
    case T.F16: {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = f16ToF32(bytes[2 * i] | (bytes[2 * i + 1] << 8));
      return out;
    }
    case T.BF16: {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = bf16ToF32(bytes[2 * i] | (bytes[2 * i + 1] << 8));
      return out;
    }
    default:
      if (!allowRequantize) throw new QwasmError("INVALID_ARGUMENT", `quantize: tensor ${tensor} is ${nameOf(type)}, not F32/F16/BF16`);
      return quantTraits(type).dequantize(bytes, count);
  }
}

async function* quantizedChunks(t: QuantizeSourceTensor, plan: TensorPlan, allowRequantize: boolean,
  workers: QuantizeWorkers | undefined): AsyncGenerator<Uint8Array> {
  const rowLength = t.dims[0];
  const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const inRow = rowBytes(t.type, rowLength);
  if (plan.outType === t.type) {
    const total = inRow * rows;
    for (let at = 0; at < total; at += CHUNK_INPUT_BYTES) yield await t.read(at, Math.min(CHUNK_INPUT_BYTES, total - at));
    return;
  }
  const traits = quantTraits(plan.outType);
  if (!traits.quantize) throw new QwasmError("INVALID_ARGUMENT", `quantize: qwasm cannot write ${traits.name}`);
  const outRow = rowBytes(plan.outType, rowLength);
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_INPUT_BYTES / inRow));
  for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
    const n = Math.min(rowsPerChunk, rows - r0);
    const bytes = await t.read(r0 * inRow, n * inRow);
    const x = toF32(t.type, bytes, n * rowLength, t.name, allowRequantize);
    for (let i = 0; i < x.length; i++) {
      if (!Number.isFinite(x[i])) {
        throw new QwasmError("MODEL_INVALID",
          `quantize: tensor ${t.name} has a non-finite value (${x[i]}) in row ${r0 + Math.floor(i / rowLength)}; it cannot be quantized`);
      }
    }
    if (workers) {
      yield await workers.quantize(plan.outType, rowLength, x);
      continue;
    }
    const out = new Uint8Array(n * outRow);
    for (let r = 0; r < n; r++) out.set(traits.quantize(x.subarray(r * rowLength, (r + 1) * rowLength)), r * outRow);
    yield out;
  }
}

/** The quantized file, described: metadata and tensors whose data is computed when written. */
export function quantizeModel(source: QuantizeSource, options: QuantizeOptions,
  workers?: QuantizeWorkers): GGUFToWrite & { plan: QuantizePlan } {
  const plan = planQuantization(source.metadata, source.tensors, options);
  const byName = new Map(source.tensors.map((t) => [t.name, t]));
  return {
    plan,
    metadata: plan.metadata,
    tensors: plan.tensors.map((p) => ({
      name: p.name,
      dims: p.outDims,
      type: p.outType,
      data: () => quantizedChunks(byName.get(p.name)!, p, options.allowRequantize ?? false, workers),
    })),
  };
}

/** A GGUF input (a path or a RandomAccessFile, or bytes) as a QuantizeSource, read on demand. */
export async function openQuantizeSource(input: string | URL | Uint8Array | RandomAccessFile): Promise<QuantizeSource & { close(): Promise<void> }> {
  const file: RandomAccessFile = input instanceof Uint8Array
    ? { size: input.length, read: async (o, l) => input.subarray(o, o + l), close: async () => {} }
    : typeof input === "string" || input instanceof URL ? await openFile(input) : input;
  try {
    const gguf = await openGGUF(file);
    const tensors = gguf.tensors.map((t): QuantizeSourceTensor => ({
      name: t.name, dims: t.dims, type: t.type,
      read: async (offset, length) => {
        const bytes = await file.read(gguf.dataOffset + t.offset + offset, length);
        if (bytes.length !== length) {
          throw new QwasmError("GGUF_INVALID", `quantize: the input ended inside tensor ${t.name} (it is shorter than when it was opened)`);
        }
        return bytes;
      },
    }));
    return { metadata: gguf.metadata, tensors, close: () => file.close() };
  } catch (e) {
    await file.close();
    throw e;
  }
}

export interface QuantizeResult {
  plan: QuantizePlan;
  layout: GGUFLayout;
}

/**
 * Quantizes a GGUF file as llama-quantize does (no imatrix) and writes the result to `output` (a
 * path, or a sink that receives the file in order). `onProgress` gets bytes written of the total.
 *
 * @example
 * await quantizeGGUF("qwen2-0_5b-f16.gguf", "qwen2-0_5b-q4_k_m.gguf", { type: "Q4_K_M" });
 */
export async function quantizeGGUF(input: string | URL | Uint8Array | RandomAccessFile, output: string | URL | GGUFSink,
  options: QuantizeOptions, onProgress?: (written: number, total: number) => void): Promise<QuantizeResult> {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new QwasmError("INVALID_ARGUMENT", `quantize: threads must be an integer 1..256, got ${threads}`);
  }
  const source = await openQuantizeSource(input);
  let workers: QuantizeWorkers | undefined;
  try {
    const model = quantizeModel(source, options);
    if (threads > 1) workers = await QuantizeWorkers.start(threads, options.workerUrl ?? defaultQuantizeWorkerUrl());
    const parallel = workers ? quantizeModel(source, options, workers) : model;
    const layout = typeof output === "function"
      ? await writeGGUF(parallel, output, onProgress)
      : await writeGGUFFile(output, parallel, onProgress);
    return { plan: model.plan, layout };
  } finally {
    await workers?.close();
    await source.close();
  }
}

/** A one-line summary of a plan: how many tensors of each written type. */
export function planSummary(plan: QuantizePlan): string {
  const counts = new Map<string, number>();
  for (const t of plan.tensors) {
    const name = typeInfo(t.outType)!.name;
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].map(([name, n]) => `${n} ${name}`).join(", ");
}

// ---------------------------------------------------------------------------------------------
// Workers

/** A quantize worker's job: f32 rows (whole rows of `rowLength`) to quantize to `type`. */
export interface QuantizeJob {
  id: number;
  type: number;
  rowLength: number;
  x: Float32Array;
}

export type QuantizeJobResult = { id: number; bytes: Uint8Array } | { id: number; error: string };

/** Where the quantize worker bundle is: beside this module when bundled, in dist/ when run from source. */
export function defaultQuantizeWorkerUrl(): URL {
  const here = import.meta.url;
  return here.endsWith(".ts") ? new URL("../dist/quantize-worker.js", here) : new URL("./quantize-worker.js", here);
}

/** Workers that quantize the rows of a chunk in parallel, each a contiguous share of the rows. */
export class QuantizeWorkers {
  private seq = 0;
  private readonly pending = new Map<number, { resolve(bytes: Uint8Array): void; reject(e: Error): void }>();
  private failure: Error | undefined;

  private constructor(private readonly workers: WorkerHandle[]) {
    for (const w of workers) {
      w.onMessage((message) => {
        const reply = message as QuantizeJobResult;
        const job = this.pending.get(reply.id);
        if (!job) return;
        this.pending.delete(reply.id);
        if ("error" in reply) job.reject(new QwasmError("WORKER_FAILED", `quantize worker: ${reply.error}`));
        else job.resolve(reply.bytes);
      });
      w.onError((error) => this.fail(new QwasmError("WORKER_FAILED", `a quantize worker failed: ${error.message}`, { cause: error })));
    }
  }

  static async start(n: number, url: URL): Promise<QuantizeWorkers> {
    const workers: WorkerHandle[] = [];
    try {
      for (let i = 0; i < n; i++) workers.push(await spawnWorker(url));
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw new QwasmError("WORKER_FAILED", `cannot start the quantize workers (${url.href}): ${(e as Error).message}`, { cause: e });
    }
    return new QuantizeWorkers(workers);
  }

  get size(): number { return this.workers.length; }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const job of this.pending.values()) job.reject(error);
    this.pending.clear();
  }

  /** x (whole rows of `rowLength`) quantized to `type`, the rows shared out between the workers. */
  async quantize(type: number, rowLength: number, x: Float32Array): Promise<Uint8Array> {
    if (this.failure) throw this.failure;
    const rows = x.length / rowLength;
    const share = Math.ceil(rows / this.workers.length);
    const parts: Promise<Uint8Array>[] = [];
    for (let w = 0, r0 = 0; r0 < rows; w++, r0 += share) {
      const id = ++this.seq;
      const part = x.slice(r0 * rowLength, Math.min(rows, r0 + share) * rowLength);
      parts.push(new Promise((resolve, reject) => this.pending.set(id, { resolve, reject })));
      this.workers[w].postMessage({ id, type, rowLength, x: part } satisfies QuantizeJob);
    }
    const done = await Promise.all(parts);
    const out = new Uint8Array(done.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of done) {
      out.set(b, at);
      at += b.length;
    }
    return out;
  }

  async close(): Promise<void> {
    this.fail(new QwasmError("WORKER_FAILED", "the quantize workers were closed"));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

