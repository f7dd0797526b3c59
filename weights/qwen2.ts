// The Qwen2 model as a GGUF file describes it: one typed config parsed from the qwen2.* keys, and
// the map from tensor names to the weights of the forward pass, each shape checked.
import { GGUFError, QwasmError } from "../ts/errors";
import { GGUFValueType, type GGUFArray, type GGUFMetadata } from "./gguf/metadata";
import { checkSupportedWeightType, typeName } from "./gguf/types";

export interface RopeScaling {
  /** "none" when the file says nothing; "linear" and "yarn" as llama.cpp names them. */
  type: "none" | "linear" | "yarn";
  factor: number;
  /** The context the model was trained with before scaling (YaRN). */
  originalContextLength: number;
  /** YaRN attention factor, when the file gives one. */
  attnFactor?: number;
}

export interface Qwen2Config {
  name: string;
  contextLength: number;
  hidden: number;          // n_embd
  nLayers: number;
  nHeads: number;
  nKVHeads: number;
  headDim: number;         // key/query head size (attention.key_length, else hidden / nHeads)
  headDimV: number;        // value head size (attention.value_length, else headDim)
  ffn: number;             // feed_forward_length
  vocabSize: number;       // rows of token_embd = entries of tokenizer.ggml.tokens
  ropeDim: number;         // rope.dimension_count, else headDim
  ropeBase: number;        // rope.freq_base
  ropeScaling: RopeScaling;
  eps: number;             // attention.layer_norm_rms_epsilon
  tiedEmbeddings: boolean; // no output.weight: the LM head is token_embd
}

/** A tensor as the GGUF tensor table describes it (dims ne0 first). */
export interface TensorDesc {
  name: string;
  dims: readonly number[];
  type: number;
}

/** One weight matrix or vector of the model, by its GGUF tensor. */
export interface Qwen2LayerTensors<T extends TensorDesc = TensorDesc> {
  attnNorm: T;
  q: T; qBias: T;
  k: T; kBias: T;
  v: T; vBias: T;
  o: T;
  ffnNorm: T;
  gate: T; up: T; down: T;
}

export interface Qwen2Tensors<T extends TensorDesc = TensorDesc> {
  tokenEmbd: T;
  outputNorm: T;
  /** The LM head: output.weight, or token_embd.weight when the embeddings are tied. */
  output: T;
  layers: Qwen2LayerTensors<T>[];
}

const SUPPORTED_ARCHITECTURES = ["qwen2"];

function positiveInt(meta: GGUFMetadata, key: string, fallback?: number): number {
  const v = meta.getU32(key, fallback);
  if (!Number.isInteger(v) || v <= 0) {
    throw new GGUFError(key, meta.offsetOf(key) ?? 0, `must be a positive integer, got ${v}`);
  }
  return v;
}

function positiveFloat(meta: GGUFMetadata, key: string, fallback?: number): number {
  const v = meta.getF32(key, fallback);
  if (!(v > 0) || !Number.isFinite(v)) {
    throw new GGUFError(key, meta.offsetOf(key) ?? 0, `must be a positive number, got ${v}`);
  }
  return v;
}

/** Reads the architecture and refuses what qwasm does not run, saying what it does run. */
export function checkArchitecture(meta: GGUFMetadata): string {
  const arch = meta.getString("general.architecture");
  if (arch === "qwen2moe") {
    throw new QwasmError("MODEL_UNSUPPORTED",
      "this is a Qwen2 mixture-of-experts model (general.architecture = qwen2moe, e.g. Qwen2-57B-A14B); " +
      "qwasm does not support MoE models yet; supported: qwen2 (Qwen2 / Qwen2.5 dense models)");
  }
  if (!SUPPORTED_ARCHITECTURES.includes(arch)) {
    throw new QwasmError("MODEL_UNSUPPORTED",
      `general.architecture is "${arch}"; qwasm supports: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  return arch;
}

function parseRopeScaling(meta: GGUFMetadata, contextLength: number): RopeScaling {
  const type = meta.getString("qwen2.rope.scaling.type", "none");
  // Older converters wrote a linear scale as rope.scale_linear.
  const linear = meta.getF32("qwen2.rope.scale_linear", 0);
  if (type === "none" && linear > 0 && linear !== 1) {
    return { type: "linear", factor: linear, originalContextLength: contextLength };
  }
  if (type !== "none" && type !== "linear" && type !== "yarn") {
    throw new GGUFError("qwen2.rope.scaling.type", meta.offsetOf("qwen2.rope.scaling.type") ?? 0,
      `"${type}" is not supported; supported: none, linear, yarn`, "GGUF_UNSUPPORTED");
  }
  const factor = type === "none" ? 1 : positiveFloat(meta, "qwen2.rope.scaling.factor", 1);
  const originalContextLength = meta.has("qwen2.rope.scaling.original_context_length")
    ? positiveInt(meta, "qwen2.rope.scaling.original_context_length")
    : contextLength;
  const scaling: RopeScaling = { type, factor, originalContextLength };
  if (meta.has("qwen2.rope.scaling.attn_factor")) scaling.attnFactor = meta.getF32("qwen2.rope.scaling.attn_factor");
  return scaling;
}

/**
 * One embedding row (and one LM head row) per token, as llama.cpp requires (it builds token_embd as
 * {n_embd, n_tokens} and refuses any other shape): with fewer tokens than rows, a sampled id would
 * have no text; with more, a prompt token would have no embedding. Converters pad the token list
 * ([PAD{id}]) to the rows, so real files agree. A missing or mistyped list is the tokenizer's to report.
 */
function checkVocabularySize(meta: GGUFMetadata, rows: number): void {
  const entry = meta.entry("tokenizer.ggml.tokens");
  if (entry?.type !== GGUFValueType.ARRAY) return;
  const count = (entry.value as GGUFArray).items.length;
  if (count !== rows) {
    throw new QwasmError("MODEL_INVALID",
      `tokenizer.ggml.tokens has ${count} entries but token_embd.weight has ${rows} rows; a Qwen2 GGUF needs ` +
      "exactly one embedding row per token (llama.cpp refuses this file too): its tokenizer does not belong to its weights");
  }
}

/** Parses the qwen2.* keys into one config; `tensors` supplies the vocabulary size and tying. */
export function parseQwen2Config(meta: GGUFMetadata, tensors: readonly TensorDesc[]): Qwen2Config {
  checkArchitecture(meta);
  const hidden = positiveInt(meta, "qwen2.embedding_length");
  const nHeads = positiveInt(meta, "qwen2.attention.head_count");
  const nKVHeads = positiveInt(meta, "qwen2.attention.head_count_kv", nHeads);
  if (nHeads % nKVHeads !== 0) {
    throw new GGUFError("qwen2.attention.head_count_kv", meta.offsetOf("qwen2.attention.head_count_kv") ?? 0,
      `${nKVHeads} does not divide head_count ${nHeads}`);
  }
  const headDim = positiveInt(meta, "qwen2.attention.key_length", Math.floor(hidden / nHeads));
  const headDimV = positiveInt(meta, "qwen2.attention.value_length", headDim);
  const ropeDim = positiveInt(meta, "qwen2.rope.dimension_count", headDim);
  if (ropeDim > headDim || ropeDim % 2 !== 0) {
    throw new GGUFError("qwen2.rope.dimension_count", meta.offsetOf("qwen2.rope.dimension_count") ?? 0,
      `${ropeDim} must be even and at most the head size ${headDim}`);
  }
  const contextLength = positiveInt(meta, "qwen2.context_length");
  const embd = tensors.find((t) => t.name === "token_embd.weight");
  if (!embd) throw new QwasmError("MODEL_INVALID", "tensor token_embd.weight is missing");
  const vocabSize = embd.dims[1] ?? 0;
  checkVocabularySize(meta, vocabSize);
  return {
    name: meta.getString("general.name", "qwen2"),
    contextLength,
    hidden,
    nLayers: positiveInt(meta, "qwen2.block_count"),
    nHeads,
    nKVHeads,
    headDim,
    headDimV,
    ffn: positiveInt(meta, "qwen2.feed_forward_length"),
    vocabSize,
    ropeDim,
    ropeBase: positiveFloat(meta, "qwen2.rope.freq_base", 10000),
    ropeScaling: parseRopeScaling(meta, contextLength),
    eps: positiveFloat(meta, "qwen2.attention.layer_norm_rms_epsilon"),
    tiedEmbeddings: !tensors.some((t) => t.name === "output.weight"),
  };
}

/** Finds every tensor of the forward pass, checks its shape and type, and returns them by role. */
export function mapQwen2Tensors<T extends TensorDesc>(config: Qwen2Config, tensors: readonly T[]): Qwen2Tensors<T> {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const { hidden, nHeads, nKVHeads, headDim, headDimV, ffn, vocabSize } = config;

  function get(name: string, dims: number[], matrix: boolean): T {
    const t = byName.get(name);
    if (!t) throw new QwasmError("MODEL_INVALID", `tensor ${name} is missing (expected shape [${dims.join(", ")}])`);
    const same = t.dims.length === dims.length && t.dims.every((d, i) => d === dims[i]);
    if (!same) {
      throw new QwasmError("MODEL_INVALID",
        `tensor ${name} has shape [${t.dims.join(", ")}], expected [${dims.join(", ")}] for this config`);
    }
    if (matrix) checkSupportedWeightType(name, t.type);
    else if (t.type !== 0) {
      throw new QwasmError("MODEL_UNSUPPORTED", `tensor ${name} has type ${typeName(t.type)}; norms and biases must be F32`);
    }
    return t;
  }

  const tokenEmbd = get("token_embd.weight", [hidden, vocabSize], true);
  const layers: Qwen2LayerTensors<T>[] = [];
  for (let i = 0; i < config.nLayers; i++) {
    const p = `blk.${i}.`;
    layers.push({
      attnNorm: get(p + "attn_norm.weight", [hidden], false),
      q: get(p + "attn_q.weight", [hidden, nHeads * headDim], true),
      qBias: get(p + "attn_q.bias", [nHeads * headDim], false),
      k: get(p + "attn_k.weight", [hidden, nKVHeads * headDim], true),
      kBias: get(p + "attn_k.bias", [nKVHeads * headDim], false),
      v: get(p + "attn_v.weight", [hidden, nKVHeads * headDimV], true),
      vBias: get(p + "attn_v.bias", [nKVHeads * headDimV], false),
      o: get(p + "attn_output.weight", [nHeads * headDimV, hidden], true),
      ffnNorm: get(p + "ffn_norm.weight", [hidden], false),
      gate: get(p + "ffn_gate.weight", [hidden, ffn], true),
      up: get(p + "ffn_up.weight", [hidden, ffn], true),
      down: get(p + "ffn_down.weight", [ffn, hidden], true),
    });
  }
  return {
    tokenEmbd,
    outputNorm: get("output_norm.weight", [hidden], false),
    output: config.tiedEmbeddings ? tokenEmbd : get("output.weight", [hidden, vocabSize], true),
    layers,
  };
}
