// Qwen2's tokenizer: byte-level BPE (GPT-2 style) with Qwen2's pre-tokenizer regex and an NFC
// normalizer. Built from GGUF metadata values (tokenizer.ggml.*) or from a Hugging Face
// tokenizer.json; encodes text to ids and decodes ids back to text, exactly as Hugging Face
// tokenizers and llama.cpp do.
//
// encode: [split out added tokens, only when asked] -> lone surrogates to U+FFFD -> NFC -> pieces
// (Qwen2's split pattern) -> UTF-8 bytes -> byte symbols -> merges by rank (cached per piece).
// decode: ids -> bytes -> UTF-8.

import { QwasmError } from "../../platform/errors";
import { BYTE_TO_CHAR, writeByteLevel } from "./byte-level";
import { MergeTable, mergeWord } from "./bpe";
import { QWEN2_SPLIT_PATTERN, SUPPORTED_PRE_TYPES, pieceEnd, type PreTokenizerType } from "./pretokenize";

/** llama.cpp's token types (tokenizer.ggml.token_type). */
export const TokenType = {
  Normal: 1,
  Unknown: 2,
  Control: 3,       // special tokens such as <|im_start|>: parsed only with { special: true }
  UserDefined: 4,   // added tokens that are not special (e.g. <tool_call> in Qwen2.5)
  Unused: 5,
  Byte: 6,
} as const;

/** What a tokenizer is built from: the GGUF `tokenizer.ggml.*` values, as plain data. */
export interface TokenizerSpec {
  /** tokenizer.ggml.model; must be "gpt2" (byte-level BPE). */
  model?: string;
  /** tokenizer.ggml.pre: the pre-tokenizer; must be one of SUPPORTED_PRE_TYPES. */
  pre?: string;
  /** tokenizer.ggml.tokens: the token strings, index = id (byte-level form for regular tokens). */
  tokens: readonly string[];
  /** tokenizer.ggml.merges: "left right" strings (or pairs), in rank order. */
  merges: readonly (string | readonly [string, string])[];
  /** tokenizer.ggml.token_type: TokenType per token; all Normal when absent. */
  tokenTypes?: ArrayLike<number>;
  bosId?: number;
  eosId?: number;
  /** tokenizer.ggml.eot_token_id (end of turn), when the file has one. */
  eotId?: number;
  padId?: number;
  /** tokenizer.ggml.add_bos_token: whether a prompt starts with BOS (false for Qwen2). */
  addBos?: boolean;
  /** Unicode normalization before pre-tokenization. Default NFC, as Qwen2's tokenizer.json says
   * (llama.cpp does not normalize, so it differs from Hugging Face on text that is not NFC). */
  normalizer?: "NFC" | "none";
  /** Hugging Face BPE `ignore_merges`: a piece that is itself in the vocabulary is one token. */
  ignoreMerges?: boolean;
}

export interface EncodeOptions {
  /** Parse added/special token text (e.g. "<|im_start|>") into its id. Off by default: user text
   * never turns into special tokens. */
  special?: boolean;
}

export interface DecodeOptions {
  /** Leave out control tokens (<|im_end|> ...) instead of rendering their text. */
  skipSpecial?: boolean;
}

// A subset of Hugging Face's tokenizer.json that this tokenizer reads.
export interface TokenizerJSON {
  model: {
    type?: string;
    vocab: Record<string, number>;
    merges: (string | [string, string])[];
    byte_fallback?: boolean;
    ignore_merges?: boolean;
    continuing_subword_prefix?: string | null;
    end_of_word_suffix?: string | null;
    dropout?: number | null;
  };
  added_tokens?: { id: number; content: string; special?: boolean }[];
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  decoder?: unknown;
}

/** tokenizer_config.json fields used for the BOS/EOS/PAD ids (strings or {content}). */
export interface TokenizerConfigJSON {
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
  pad_token?: string | { content: string } | null;
  add_bos_token?: boolean;
}

// Texts of end-of-generation tokens, as llama.cpp's vocabulary loader recognizes them.
const END_OF_GENERATION_TEXTS = new Set([
  "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<EOT>",
  "<|return|>", "<|call|>",
]);

// Word -> ids cache size; past it the cache starts over (text rarely has more distinct words).
const CACHE_LIMIT = 1 << 17;
// Longer pieces are not cached: they rarely repeat.
const CACHE_MAX_PIECE = 128;
// A cached piece has at most 3 * CACHE_MAX_PIECE ids.
const POOL_LENGTH_LIMIT = 1024;

export class Tokenizer {
  /** Number of ids (the embedding rows the vocabulary needs). */
  readonly vocabSize: number;
  readonly pre: PreTokenizerType;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly eotId: number | undefined;
  readonly padId: number | undefined;
  readonly addBos: boolean;
  /** Ids that end generation: EOS, EOT and control tokens such as <|im_end|> and <|endoftext|>. */
  readonly endOfGenerationIds: ReadonlySet<number>;

  private readonly tokens: readonly string[];
  private readonly types: Uint8Array;
  private readonly idByText = new Map<string, number>();     // regular tokens, byte-level text
  private readonly addedIdByText = new Map<string, number>(); // control and user-defined tokens
  private readonly byteToId = new Int32Array(256);
  private readonly merges: MergeTable;
  private readonly bytes: Uint8Array;        // every token's bytes, back to back
  private readonly byteOffsets: Int32Array;  // token i's bytes: bytes[byteOffsets[i] .. byteOffsets[i+1])
  private readonly addedRegex: RegExp | null;
  private readonly nfc: boolean;
  private readonly ignoreMerges: boolean;
  // Word cache: piece -> offset * POOL_LENGTH_LIMIT + count of its ids in `pool`.
  private readonly cache = new Map<string, number>();
  private pool = new Int32Array(1 << 16);
  private poolUsed = 0;
  private scratchIds = new Int32Array(1024);
  private scratchRanks = new Int32Array(1024);

  private constructor(spec: TokenizerSpec, pre: PreTokenizerType) {
    const { tokens } = spec;
    const n = tokens.length;
    if (n === 0) invalid("tokenizer.ggml.tokens is empty");
    if (spec.tokenTypes && spec.tokenTypes.length !== n) {
      invalid(`tokenizer.ggml.token_type has ${spec.tokenTypes.length} entries but there are ${n} tokens`);
    }
    this.vocabSize = n;
    this.pre = pre;
    this.tokens = tokens;
    this.types = new Uint8Array(n).fill(TokenType.Normal);
    if (spec.tokenTypes) this.types.set(Array.from(spec.tokenTypes));
    this.nfc = (spec.normalizer ?? "NFC") === "NFC";
    this.ignoreMerges = spec.ignoreMerges ?? false;

    // Token bytes, back to back; regular tokens are byte-level strings, added tokens plain text
    // (then, or for a regular token outside the byte alphabet, the bytes are its UTF-8).
    const encoder = new TextEncoder();
    let capacity = 0, longest = 0;
    for (let id = 0; id < n; id++) {
      if (typeof tokens[id] !== "string") invalid(`token ${id} is not a string`);
      capacity += tokens[id].length;
      longest = Math.max(longest, tokens[id].length);
    }
    let bytes = new Uint8Array(capacity + 3 * longest);
    const offsets = new Int32Array(n + 1);
    let at = 0;
    for (let id = 0; id < n; id++) {
      const text = tokens[id];
      const added = this.types[id] === TokenType.Control || this.types[id] === TokenType.UserDefined;
      if (added) {
        if (text.length > 0 && !this.addedIdByText.has(text)) this.addedIdByText.set(text, id);
      } else if (this.types[id] !== TokenType.Unused && !this.idByText.has(text)) {
        this.idByText.set(text, id);
      }
      if (at + 3 * text.length > bytes.length) {
        const grown = new Uint8Array(Math.max(2 * bytes.length, at + 3 * text.length));
        grown.set(bytes.subarray(0, at));
        bytes = grown;
      }
      let written = added ? -1 : writeByteLevel(text, bytes, at);
      if (written < 0) written = encoder.encodeInto(text, bytes.subarray(at)).written;
      at += written;
      offsets[id + 1] = at;
    }
    this.bytes = bytes.subarray(0, at);
    this.byteOffsets = offsets;

    for (let b = 0; b < 256; b++) {
      const id = this.idByText.get(BYTE_TO_CHAR[b]);
      if (id === undefined) {
        invalid(`the vocabulary has no token for byte 0x${b.toString(16).padStart(2, "0")} ` +
          `("${BYTE_TO_CHAR[b]}"); a byte-level BPE vocabulary must hold all 256 byte symbols`);
      }
      this.byteToId[b] = id;
    }

    // Merges whose parts or result are missing (a truncated vocabulary) can never apply: dropped.
    const triples = new Int32Array(spec.merges.length * 3);
    let kept = 0;
    for (let r = 0; r < spec.merges.length; r++) {
      const merge = spec.merges[r];
      let left: string, right: string;
      if (typeof merge === "string") {
        const space = merge.indexOf(" ", 1);
        if (space < 0) invalid(`merge ${r} ("${merge}") is not "left right"`);
        left = merge.slice(0, space);
        right = merge.slice(space + 1);
      } else {
        [left, right] = merge;
      }
      const a = this.idByText.get(left), b = this.idByText.get(right), m = this.idByText.get(left + right);
      if (a === undefined || b === undefined || m === undefined) continue;
      triples[3 * kept] = a;
      triples[3 * kept + 1] = b;
      triples[3 * kept + 2] = m;
      kept++;
    }
    this.merges = new MergeTable(triples.subarray(0, 3 * kept));

    // Longest first, so that the regex alternation picks the longest added token at a position.
    const added = [...this.addedIdByText.keys()].sort((x, y) => y.length - x.length);
    this.addedRegex = added.length === 0 ? null
      : new RegExp(added.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g");

    const checkId = (name: string, id: number | undefined) => {
      if (id === undefined || id === null) return undefined;
      if (!Number.isInteger(id) || id < 0 || id >= n) invalid(`${name} ${id} is not a token id (vocabulary of ${n})`);
      return id;
    };
    this.bosId = checkId("bos_token_id", spec.bosId);
    this.eosId = checkId("eos_token_id", spec.eosId);
    this.eotId = checkId("eot_token_id", spec.eotId);
    this.padId = checkId("padding_token_id", spec.padId);
    this.addBos = (spec.addBos ?? false) && this.bosId !== undefined;
    const eog = new Set<number>();
    if (this.eosId !== undefined) eog.add(this.eosId);
    if (this.eotId !== undefined) eog.add(this.eotId);
    for (const [text, id] of this.addedIdByText) {
      if (this.types[id] === TokenType.Control && END_OF_GENERATION_TEXTS.has(text)) eog.add(id);
    }
    this.endOfGenerationIds = eog;
  }

  /** Builds a tokenizer from GGUF metadata values (tokenizer.ggml.*). */
  static fromGGUF(spec: TokenizerSpec): Tokenizer {
    if (spec.model !== undefined && spec.model !== "gpt2") {
      invalid(`tokenizer.ggml.model is "${spec.model}"; qwasm supports only "gpt2" (byte-level BPE, as Qwen2 uses)`);
    }
    if (spec.pre === undefined) {
      invalid(`tokenizer.ggml.pre is missing; supported: ${SUPPORTED_PRE_TYPES.join(", ")}`);
    }
    if (!(SUPPORTED_PRE_TYPES as readonly string[]).includes(spec.pre)) {
      invalid(`tokenizer.ggml.pre is "${spec.pre}", which qwasm does not support; supported: ${SUPPORTED_PRE_TYPES.join(", ")}`);
    }
    if (!Array.isArray(spec.tokens)) invalid("tokenizer.ggml.tokens is missing");
    if (!Array.isArray(spec.merges)) invalid("tokenizer.ggml.merges is missing");
    return new Tokenizer(spec, spec.pre as PreTokenizerType);
  }

  /**
   * Builds a tokenizer from a Hugging Face tokenizer.json object (and optionally the
   * tokenizer_config.json object, for the BOS/EOS/PAD tokens). Regular vocabulary entries become
   * Normal tokens, special added tokens Control, other added tokens UserDefined.
   */
  static fromTokenizerJSON(json: TokenizerJSON, config: TokenizerConfigJSON = {}): Tokenizer {
    const model = json.model;
    if (!model || (model.type !== undefined && model.type !== "BPE")) {
      invalid(`tokenizer.json model type is "${model?.type}"; qwasm supports only "BPE"`);
    }
    if (model.byte_fallback) invalid("tokenizer.json BPE uses byte_fallback, which byte-level BPE does not");
    if (model.continuing_subword_prefix || model.end_of_word_suffix) {
      invalid("tokenizer.json BPE uses continuing_subword_prefix/end_of_word_suffix, which qwasm does not support");
    }
    if (model.dropout) invalid("tokenizer.json BPE uses dropout; qwasm supports deterministic BPE only");
    const normalizer = checkNormalizer(json.normalizer);
    checkPreTokenizer(json.pre_tokenizer);

    const tokens: string[] = [];
    const types: number[] = [];
    for (const [text, id] of Object.entries(model.vocab)) { tokens[id] = text; types[id] = TokenType.Normal; }
    for (const t of json.added_tokens ?? []) {
      tokens[t.id] = t.content;
      types[t.id] = t.special ? TokenType.Control : TokenType.UserDefined;
    }
    for (let id = 0; id < tokens.length; id++) {
      if (tokens[id] === undefined) { tokens[id] = `[PAD${id}]`; types[id] = TokenType.Unused; }
    }
    const idOf = (token: TokenizerConfigJSON["bos_token"]) => {
      const text = typeof token === "string" ? token : token?.content;
      if (text === undefined) return undefined;
      const id = tokens.indexOf(text);
      return id < 0 ? undefined : id;
    };
    return new Tokenizer({
      model: "gpt2", pre: "qwen2", tokens, merges: model.merges, tokenTypes: types, normalizer,
      ignoreMerges: model.ignore_merges ?? false,
      bosId: idOf(config.bos_token), eosId: idOf(config.eos_token), padId: idOf(config.pad_token),
      addBos: config.add_bos_token ?? false,
    }, "qwen2");
  }

  /** Text to ids. Added/special token text is parsed only with `{ special: true }`. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if (!options.special || this.addedRegex === null) {
      this.encodeOrdinary(text, out);
      return out;
    }
    for (const part of this.splitSpecial(text)) {
      if (typeof part === "number") out.push(part);
      else this.encodeOrdinary(part, out);
    }
    return out;
  }

  /**
   * Cuts text at added-token occurrences (leftmost, longest first): strings are ordinary text,
   * numbers the ids of the added tokens found. Empty strings are left out.
   */
  splitSpecial(text: string): (string | number)[] {
    const parts: (string | number)[] = [];
    const re = this.addedRegex;
    if (re === null) return text.length > 0 ? [text] : [];
    let last = 0;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m.index > last) parts.push(text.slice(last, m.index));
      parts.push(this.addedIdByText.get(m[0])!);
      last = m.index + m[0].length;
    }
    if (last < text.length) parts.push(text.slice(last));
    return parts;
  }

  /** Appends the ids of `text` to `out`, with no added-token parsing. */
  encodeOrdinary(text: string, out: number[] = []): number[] {
    if (text.length === 0) return out;
    text = toWellFormed(text);
    if (this.nfc) text = text.normalize("NFC");
    const cache = this.cache;
    for (let pos = 0; pos < text.length;) {
      const end = pieceEnd(this.pre, text, pos);
      if (end === pos + 1 && text.charCodeAt(pos) < 0x80) {
        // One ASCII character (a digit, a space, a punctuation mark): its byte token.
        out.push(this.byteToId[text.charCodeAt(pos)]);
        pos = end;
        continue;
      }
      const piece = text.slice(pos, end);
      pos = end;
      let entry = cache.get(piece);
      if (entry === undefined) {
        const n = this.encodePiece(piece);
        if (piece.length > CACHE_MAX_PIECE) {
          for (let i = 0; i < n; i++) out.push(this.scratchIds[i]);
          continue;
        }
        entry = this.remember(piece, n);
      }
      const pool = this.pool;
      for (let i = Math.floor(entry / POOL_LENGTH_LIMIT), stop = i + (entry % POOL_LENGTH_LIMIT); i < stop; i++) out.push(pool[i]);
    }
    return out;
  }

  /** Caches the `n` ids in scratchIds as the encoding of `piece`; returns the cache entry. */
  private remember(piece: string, n: number): number {
    if (this.cache.size >= CACHE_LIMIT) { this.cache.clear(); this.poolUsed = 0; }
    if (this.poolUsed + n > this.pool.length) {
      const grown = new Int32Array(Math.max(this.pool.length * 2, this.poolUsed + n));
      grown.set(this.pool.subarray(0, this.poolUsed));
      this.pool = grown;
    }
    this.pool.set(this.scratchIds.subarray(0, n), this.poolUsed);
    const entry = this.poolUsed * POOL_LENGTH_LIMIT + n;
    this.poolUsed += n;
    this.cache.set(piece, entry);
    return entry;
  }

  /** BPE of one pre-tokenized piece (well-formed, normalized) into scratchIds; returns the count. */
  private encodePiece(piece: string): number {
    if (this.scratchIds.length < piece.length * 3) {
      this.scratchIds = new Int32Array(piece.length * 3);
      this.scratchRanks = new Int32Array(piece.length * 3);
    }
    const ids = this.scratchIds;
    const b2id = this.byteToId;
    let n = 0;
    // UTF-8 by hand: pieces are short and this avoids a TextEncoder call per piece.
    for (let i = 0; i < piece.length; i++) {
      let c = piece.charCodeAt(i);
      if (c < 0x80) {
        ids[n++] = b2id[c];
      } else if (c < 0x800) {
        ids[n++] = b2id[0xc0 | (c >> 6)];
        ids[n++] = b2id[0x80 | (c & 63)];
      } else if (c >= 0xd800 && c < 0xdc00) {
        // The text is well-formed, so a low surrogate follows.
        c = 0x10000 + ((c - 0xd800) << 10) + (piece.charCodeAt(++i) - 0xdc00);
        ids[n++] = b2id[0xf0 | (c >> 18)];
        ids[n++] = b2id[0x80 | ((c >> 12) & 63)];
        ids[n++] = b2id[0x80 | ((c >> 6) & 63)];
        ids[n++] = b2id[0x80 | (c & 63)];
      } else {
        ids[n++] = b2id[0xe0 | (c >> 12)];
        ids[n++] = b2id[0x80 | ((c >> 6) & 63)];
        ids[n++] = b2id[0x80 | (c & 63)];
      }
    }
    if (this.ignoreMerges && n > 1) {
      let byteLevel = "";
      for (let i = 0; i < n; i++) byteLevel += this.tokens[ids[i]];
      const whole = this.idByText.get(byteLevel);
      if (whole !== undefined) { ids[0] = whole; return 1; }
    }
    return mergeWord(this.merges, ids, n, this.scratchRanks);
  }

  /** Ids to text: every token's bytes back to back, decoded as UTF-8 (invalid bytes → U+FFFD). */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecial ?? false;
    const offsets = this.byteOffsets, types = this.types, bytes = this.bytes;
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = this.checkId(ids[i]);
      if (!(skip && types[id] === TokenType.Control)) total += offsets[id + 1] - offsets[id];
    }
    const buffer = new Uint8Array(total);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (skip && types[id] === TokenType.Control) continue;
      for (let j = offsets[id], end = offsets[id + 1]; j < end; j++) buffer[at++] = bytes[j];
    }
    return utf8Decoder().decode(buffer);
  }

  /** The bytes token `id` stands for (a view: do not modify). */
  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    return this.bytes.subarray(this.byteOffsets[id], this.byteOffsets[id + 1]);
  }

  /** The vocabulary string of token `id` (byte-level form for regular tokens). */
  tokenText(id: number): string {
    return this.tokens[this.checkId(id)];
  }

  tokenType(id: number): number {
    return this.types[this.checkId(id)];
  }

  /** Whether `id` is a control token (<|im_start|>, <|endoftext|> ...). */
  isControl(id: number): boolean {
    return this.types[this.checkId(id)] === TokenType.Control;
  }

  /** The id of a vocabulary string (byte-level form) or of an added token's text. */
  tokenToId(text: string): number | undefined {
    return this.addedIdByText.get(text) ?? this.idByText.get(text);
  }

  /** Empties the word cache (it also empties itself when full). */
  clearCache(): void {
    this.cache.clear();
    this.poolUsed = 0;
  }

  /** The added (control and user-defined) tokens: text -> id. */
  addedTokens(): ReadonlyMap<string, number> {
    return this.addedIdByText;
  }

  private checkId(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new QwasmError("INVALID_ARGUMENT", `token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
    return id;
  }
}

/**
 * Lone surrogates cannot be written as UTF-8: like TextEncoder (and llama.cpp for invalid UTF-8),
 * they become U+FFFD.
 */
export function toWellFormed(text: string): string {
  const s = text as string & { isWellFormed?: () => boolean; toWellFormed?: () => string };
  if (s.isWellFormed) return s.isWellFormed() ? text : s.toWellFormed!();
  return text.replace(/[\uD800-\uDFFF]/gu, "\uFFFD");
}

let decoder: TextDecoder | undefined;
/** A UTF-8 decoder that keeps a leading BOM (the default TextDecoder would drop it). */
function utf8Decoder(): TextDecoder {
  return (decoder ??= new TextDecoder("utf-8", { ignoreBOM: true }));
}

function invalid(message: string): never {
  throw new QwasmError("TOKENIZER_INVALID", message);
}

function checkNormalizer(normalizer: unknown): "NFC" | "none" {
  if (normalizer === null || normalizer === undefined) return "none";
  const type = (normalizer as { type?: string }).type;
  if (type === "NFC") return "NFC";
  invalid(`tokenizer.json normalizer ${JSON.stringify(normalizer)} is not supported; supported: NFC or none`);
}

function checkPreTokenizer(pre: unknown): void {
  const expected = "Sequence[Split(Qwen2 pattern, Isolated), ByteLevel(add_prefix_space=false, use_regex=false)]";
  const p = pre as { type?: string; pretokenizers?: unknown[] } | null | undefined;
  const steps = p?.type === "Sequence" ? p.pretokenizers ?? [] : [];
  const split = steps[0] as { type?: string; pattern?: { Regex?: string }; behavior?: string; invert?: boolean } | undefined;
  const byteLevel = steps[1] as { type?: string; add_prefix_space?: boolean; use_regex?: boolean } | undefined;
  const ok = steps.length === 2 &&
    split?.type === "Split" && split.pattern?.Regex === QWEN2_SPLIT_PATTERN &&
    split.behavior === "Isolated" && !split.invert &&
    byteLevel?.type === "ByteLevel" && !byteLevel.add_prefix_space && byteLevel.use_regex === false;
  if (!ok) invalid(`tokenizer.json pre_tokenizer ${JSON.stringify(pre)} is not supported; supported: ${expected}`);
}
