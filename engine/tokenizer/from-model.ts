// The tokenizer of a model file, from its GGUF metadata (the `tokenizer.ggml.*` keys that llama.cpp's
// converter writes).

import { QwasmError } from "../../platform/errors";
import { openGGUF } from "../../weights/gguf/reader";
import type { GGUFSource } from "../../weights/gguf/source";
import { Tokenizer } from "./tokenizer";

/** Anything that returns metadata values by key (a GGUF reader's metadata, a Map ...). */
export interface MetadataSource {
  get(key: string): unknown;
}

/**
 * Builds the tokenizer described by a model's metadata. Arrays may be plain arrays, typed arrays
 * or GGUF array values (`{ itemType, items }`); integers may be bigints.
 */
export function tokenizerFromMetadata(meta: MetadataSource): Tokenizer {
  const tokens = stringArray(meta, "tokenizer.ggml.tokens");
  if (tokens === undefined) invalid("tokenizer.ggml.tokens is missing: the file has no tokenizer");
  return Tokenizer.fromGGUF({
    model: optionalString(meta, "tokenizer.ggml.model"),
    // Files converted before llama.cpp recorded the pre-tokenizer (spring 2024) lack the key; a
    // qwen2 model's BPE is Qwen2's, so that is what they need (llama.cpp would fall back to GPT-2's
    // pattern and tokenize digits and CJK differently).
    pre: optionalString(meta, "tokenizer.ggml.pre") ??
      (optionalString(meta, "general.architecture") === "qwen2" ? "qwen2" : undefined),
    tokens,
    merges: stringArray(meta, "tokenizer.ggml.merges") ?? invalid("tokenizer.ggml.merges is missing"),
    tokenTypes: numberArray(meta, "tokenizer.ggml.token_type"),
    bosId: optionalId(meta, "tokenizer.ggml.bos_token_id"),
    eosId: optionalId(meta, "tokenizer.ggml.eos_token_id"),
    eotId: optionalId(meta, "tokenizer.ggml.eot_token_id"),
    padId: optionalId(meta, "tokenizer.ggml.padding_token_id"),
    addBos: optionalBool(meta, "tokenizer.ggml.add_bos_token"),
  });
}

/**
 * The tokenizer (and chat template) of a GGUF model: only the file's header is read, so this is
 * quick even for a large file or a URL.
 */
export async function loadTokenizerFromModel(source: GGUFSource): Promise<{ tokenizer: Tokenizer; chatTemplate?: string }> {
  const file = await openGGUF(source);
  try {
    return { tokenizer: tokenizerFromMetadata(file.metadata), chatTemplate: chatTemplateFromMetadata(file.metadata) };
  } finally {
    await file.close();
  }
}

/** The chat template a model file carries (`tokenizer.chat_template`), if any. */
export function chatTemplateFromMetadata(meta: MetadataSource): string | undefined {
  return optionalString(meta, "tokenizer.chat_template");
}

function items(value: unknown): unknown {
  if (value !== null && typeof value === "object" && "items" in value) return (value as { items: unknown }).items;
  return value;
}

function stringArray(meta: MetadataSource, key: string): string[] | undefined {
  const value = items(meta.get(key));
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((s) => typeof s === "string")) invalid(`${key} is not an array of strings`);
  return value as string[];
}

function numberArray(meta: MetadataSource, key: string): number[] | undefined {
  const value = items(meta.get(key));
  if (value === undefined) return undefined;
  if (!Array.isArray(value) && !ArrayBuffer.isView(value)) invalid(`${key} is not an array of integers`);
  return Array.from(value as ArrayLike<number | bigint>, (v) => Number(v));
}

function optionalString(meta: MetadataSource, key: string): string | undefined {
  const value = meta.get(key);
  if (value === undefined) return undefined;
  if (typeof value !== "string") invalid(`${key} is not a string`);
  return value;
}

function optionalId(meta: MetadataSource, key: string): number | undefined {
  const value = meta.get(key);
  if (value === undefined) return undefined;
  if (typeof value !== "number" && typeof value !== "bigint") invalid(`${key} is not an integer`);
  const id = Number(value);
  // llama.cpp writes -1 (as u32: 4294967295) for "none".
  return id < 0 || id === 0xffffffff ? undefined : id;
}

function optionalBool(meta: MetadataSource, key: string): boolean | undefined {
  const value = meta.get(key);
  if (value === undefined) return undefined;
  if (typeof value !== "boolean") invalid(`${key} is not a boolean`);
  return value;
}

function invalid(message: string): never {
  throw new QwasmError("TOKENIZER_INVALID", message);
}
