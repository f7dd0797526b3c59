// The Qwen2 model as a GGUF file describes it: one typed config parsed from the qwen2.* keys, and
// the map from tensor names to the weights of the forward pass, each shape checked.
import { GGUFError, QwasmError } from "../platform/errors";
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
  /** general.architecture: "qwen2" (dense) or "qwen2moe" (mixture of experts). */
  architecture: "qwen2" | "qwen2moe";
  /** The expert layout of a qwen2moe model (absent for dense qwen2); `ffn` is then the shared expert's width. */
  moe?: MoEConfig;
}

export interface MoEConfig {
  nExperts: number;        // expert_count (E)
  nExpertsUsed: number;    // expert_used_count (K): experts each token is routed to
  expertFfn: number;       // expert_feed_forward_length (F_e), else feed_forward_length / K
  sharedFfn: number;       // expert_shared_feed_forward_length (F_s), else feed_forward_length
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
  /** The dense FFN; in a qwen2moe layer, the shared expert (ffn_{gate,up,down}_shexp). */
  gate: T; up: T; down: T;
  /** The routed experts of a qwen2moe layer. */
  moe?: MoELayerTensors<T>;
}

export interface MoELayerTensors<T extends TensorDesc = TensorDesc> {
  router: T;      // ffn_gate_inp {H, E}, F32
  sharedGate: T;  // ffn_gate_inp_shexp {H} or {H, 1}, F32: the shared expert's sigmoid gate
  gateExps: T;    // ffn_gate_exps {H, F_e, E}
  upExps: T;      // ffn_up_exps {H, F_e, E}
  downExps: T;    // ffn_down_exps {F_e, H, E}
}

/** Every tensor of a layer (the routed experts' included). */
export function layerTensorList<T extends TensorDesc>(l: Qwen2LayerTensors<T>): T[] {
  const { moe, ...dense } = l;
  return [...Object.values(dense) as T[], ...(moe ? Object.values(moe) as T[] : [])];
}

export interface Qwen2Tensors<T extends TensorDesc = TensorDesc> {
  tokenEmbd: T;
  outputNorm: T;
  /** The LM head: output.weight, or token_embd.weight when the embeddings are tied. */
  output: T;
  layers: Qwen2LayerTensors<T>[];
}

const SUPPORTED_ARCHITECTURES = ["qwen2", "qwen2moe"];

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
export function checkArchitecture(meta: GGUFMetadata): "qwen2" | "qwen2moe" {
  const arch = meta.getString("general.architecture");
  if (!SUPPORTED_ARCHITECTURES.includes(arch)) {
    throw new QwasmError("MODEL_UNSUPPORTED",
      `general.architecture is "${arch}"; qwasm supports: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  return arch as "qwen2" | "qwen2moe";
}

function parseRopeScaling(meta: GGUFMetadata, contextLength: number, arch: string): RopeScaling {
  const type = meta.getString(`${arch}.rope.scaling.type`, "none");
  // Older converters wrote a linear scale as rope.scale_linear.
  const linear = meta.getF32(`${arch}.rope.scale_linear`, 0);
  if (type === "none" && linear > 0 && linear !== 1) {
    return { type: "linear", factor: linear, originalContextLength: contextLength };
  }
  if (type !== "none" && type !== "linear" && type !== "yarn") {
    throw new GGUFError(`${arch}.rope.scaling.type`, meta.offsetOf(`${arch}.rope.scaling.type`) ?? 0,
      `"${type}" is not supported; supported: none, linear, yarn`, "GGUF_UNSUPPORTED");
  }
  const factor = type === "none" ? 1 : positiveFloat(meta, `${arch}.rope.scaling.factor`, 1);
  const originalContextLength = meta.has(`${arch}.rope.scaling.original_context_length`)
    ? positiveInt(meta, `${arch}.rope.scaling.original_context_length`)
    : contextLength;
  const scaling: RopeScaling = { type, factor, originalContextLength };
  if (meta.has(`${arch}.rope.scaling.attn_factor`)) scaling.attnFactor = meta.getF32(`${arch}.rope.scaling.attn_factor`);
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

/** Parses the qwen2.* (or qwen2moe.*) keys into one config; `tensors` supplies the vocabulary size and tying. */
export function parseQwen2Config(meta: GGUFMetadata, tensors: readonly TensorDesc[]): Qwen2Config {
  const arch = checkArchitecture(meta);
  const hidden = positiveInt(meta, `${arch}.embedding_length`);
  const nHeads = positiveInt(meta, `${arch}.attention.head_count`);
  const nKVHeads = positiveInt(meta, `${arch}.attention.head_count_kv`, nHeads);
  if (nHeads % nKVHeads !== 0) {
    throw new GGUFError(`${arch}.attention.head_count_kv`, meta.offsetOf(`${arch}.attention.head_count_kv`) ?? 0,
      `${nKVHeads} does not divide head_count ${nHeads}`);
  }
  const headDim = positiveInt(meta, `${arch}.attention.key_length`, Math.floor(hidden / nHeads));
  const headDimV = positiveInt(meta, `${arch}.attention.value_length`, headDim);
  const ropeDim = positiveInt(meta, `${arch}.rope.dimension_count`, headDim);
  if (ropeDim > headDim || ropeDim % 2 !== 0) {
    throw new GGUFError(`${arch}.rope.dimension_count`, meta.offsetOf(`${arch}.rope.dimension_count`) ?? 0,
      `${ropeDim} must be even and at most the head size ${headDim}`);
  }
  const contextLength = positiveInt(meta, `${arch}.context_length`);
  const moe = arch === "qwen2moe" ? parseMoEConfig(meta) : undefined;
  const embd = tensors.find((t) => t.name === "token_embd.weight");
  if (!embd) throw new QwasmError("MODEL_INVALID", "tensor token_embd.weight is missing");
  const vocabSize = embd.dims[1] ?? 0;
  checkVocabularySize(meta, vocabSize);
  return {
    name: meta.getString("general.name", "qwen2"),
    contextLength,
    hidden,
    nLayers: positiveInt(meta, `${arch}.block_count`),
    nHeads,
    nKVHeads,
    headDim,
    headDimV,
    ffn: moe ? moe.sharedFfn : positiveInt(meta, `${arch}.feed_forward_length`),
    vocabSize,
    ropeDim,
    ropeBase: positiveFloat(meta, `${arch}.rope.freq_base`, 10000),
    ropeScaling: parseRopeScaling(meta, contextLength, arch),
    eps: positiveFloat(meta, `${arch}.attention.layer_norm_rms_epsilon`),
    tiedEmbeddings: !tensors.some((t) => t.name === "output.weight"),
    architecture: arch,
    ...(moe ? { moe } : {}),
  };
}

/** The qwen2moe expert keys, with llama.cpp's fallbacks for the two widths. */
function parseMoEConfig(meta: GGUFMetadata): MoEConfig {
  const nExperts = positiveInt(meta, "qwen2moe.expert_count");
  const nExpertsUsed = positiveInt(meta, "qwen2moe.expert_used_count");
  if (nExpertsUsed > nExperts) {
    throw new GGUFError("qwen2moe.expert_used_count", meta.offsetOf("qwen2moe.expert_used_count") ?? 0,
      `${nExpertsUsed} experts per token is more than expert_count ${nExperts}`);
  }
  const dense = meta.has("qwen2moe.feed_forward_length") ? positiveInt(meta, "qwen2moe.feed_forward_length") : undefined;
  const width = (key: string, fallback: number | undefined, fallbackText: string): number => {
    if (meta.has(key)) return positiveInt(meta, key);
    if (fallback === undefined || fallback < 1) {
      throw new QwasmError("MODEL_INVALID",
        `qwen2moe: ${key} is missing and there is no fallback (${fallbackText}); a qwen2moe file needs ${key} or qwen2moe.feed_forward_length`);
    }
    return fallback;
  };
  return {
    nExperts,
    nExpertsUsed,
    expertFfn: width("qwen2moe.expert_feed_forward_length", dense === undefined ? undefined : Math.floor(dense / nExpertsUsed),
      "feed_forward_length / expert_used_count"),
    sharedFfn: width("qwen2moe.expert_shared_feed_forward_length", dense, "feed_forward_length"),
  };
}

/** Finds every tensor of the forward pass, checks its shape and type, and returns them by role. */
export function mapQwen2Tensors<T extends TensorDesc>(config: Qwen2Config, tensors: readonly T[]): Qwen2Tensors<T> {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const { hidden, nHeads, nKVHeads, headDim, headDimV, ffn, vocabSize } = config;

  /** `matrix`: a weight matrix of any supported type; else F32 (norms, biases, the MoE gates).
   *  `alternative`: a second accepted shape (ffn_gate_inp_shexp is {H} or {H, 1}). */
  function get(name: string, dims: number[], matrix: boolean, alternative?: number[]): T {
    const shapes = alternative ? [dims, alternative] : [dims];
    const expected = shapes.map((d) => `[${d.join(", ")}]`).join(" or ");
    const t = byName.get(name);
    if (!t) throw new QwasmError("MODEL_INVALID", `tensor ${name} is missing (expected shape ${expected})`);
    const same = shapes.some((d) => t.dims.length === d.length && t.dims.every((n, i) => n === d[i]));
    if (!same) {
      throw new QwasmError("MODEL_INVALID",
        `tensor ${name} has shape [${t.dims.join(", ")}], expected ${expected} for this config`);
    }
    if (matrix) checkSupportedWeightType(name, t.type);
    else if (t.type !== 0) {
      throw new QwasmError("MODEL_UNSUPPORTED",
        `tensor ${name} has ${typeName(t.type)}; norms, biases and the MoE router/gate must be F32`);
    }
    return t;
  }

  /** A qwen2moe FFN: the shared expert in gate/up/down, the routed experts as 3-D tensors (slice e = expert e). */
  function moeLayer(p: string, m: MoEConfig): Pick<Qwen2LayerTensors<T>, "gate" | "up" | "down" | "moe"> {
    const { nExperts: E, expertFfn: fe, sharedFfn: fs } = m;
    return {
      gate: get(p + "ffn_gate_shexp.weight", [hidden, fs], true),
      up: get(p + "ffn_up_shexp.weight", [hidden, fs], true),
      down: get(p + "ffn_down_shexp.weight", [fs, hidden], true),
      moe: {
        router: get(p + "ffn_gate_inp.weight", [hidden, E], false),
        sharedGate: get(p + "ffn_gate_inp_shexp.weight", [hidden], false, [hidden, 1]),
        gateExps: get(p + "ffn_gate_exps.weight", [hidden, fe, E], true),
        upExps: get(p + "ffn_up_exps.weight", [hidden, fe, E], true),
        downExps: get(p + "ffn_down_exps.weight", [fe, hidden, E], true),
      },
    };
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
      ...(config.moe ? moeLayer(p, config.moe) : {
        gate: get(p + "ffn_gate.weight", [hidden, ffn], true),
        up: get(p + "ffn_up.weight", [hidden, ffn], true),
        down: get(p + "ffn_down.weight", [ffn, hidden], true),
      }),
    });
  }
  if (config.moe && config.tiedEmbeddings) {
    throw new QwasmError("MODEL_INVALID", "tensor output.weight is missing; a qwen2moe model needs its own LM head " +
      "(llama.cpp has no tied-embedding fallback for this architecture)");
  }
  return {
    tokenEmbd,
    outputNorm: get("output_norm.weight", [hidden], false),
    output: config.tiedEmbeddings ? tokenEmbd : get("output.weight", [hidden, vocabSize], true),
    layers,
  };
}
