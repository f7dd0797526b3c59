// The tokenizer's own behaviour: the mini fixture's truncated vocabulary, special tokens only when
// asked, decoding, the streaming decoder, the two BPE merge loops, and errors.
import { TokenizerLoader } from "@lenml/tokenizers";
import { describe, expect, it } from "vitest";
import { QwasmError } from "../../platform/errors";
import { StreamDecoder, Tokenizer, preTokenize, toWellFormed, tokenizerFromMetadata } from "../../engine/tokenizer";
import { MergeTable, mergeWordHeap, mergeWordScan } from "../../engine/tokenizer/bpe";
import { preTokenizeWithRegex } from "../../engine/tokenizer/pretokenize";
import { mulberry32 } from "../../engine/tokenizer/sample-text";
import { generateStrings } from "./generate";
import { miniTokenizer, qwen2Tokenizer, qwen2TokenizerJSON } from "./qwen-vocab";

describe("the mini fixture's vocabulary (first 4096 tokens, 3840 merges, 3 specials)", () => {
  const tokenizer = miniTokenizer();

  it("tokenizes as llama.cpp does", () => {
    expect(tokenizer.vocabSize).toBe(4099);
    expect(tokenizer.encode("Hello world, this is a test.")).toEqual([39, 301, 385, 1879, 11, 419, 374, 264, 1273, 13]);
    expect(tokenizer.encode("<|im_start|>user\nhi<|im_end|>", { special: true })).toEqual([4097, 872, 198, 71, 72, 4098]);
  });

  it("encodes any text, falling back to byte tokens", () => {
    for (const s of ["私は🦙が好き", "\u0000\u00ff\uffff", "\uD800x"]) {
      const ids = tokenizer.encode(s);
      expect(ids.every((id) => id >= 0 && id < 4096)).toBe(true);
      expect(tokenizer.decode(ids)).toBe(toWellFormed(s).normalize("NFC"));
    }
  });

  it("has the ids from the file", () => {
    expect(tokenizer.bosId).toBe(4096);
    expect(tokenizer.eosId).toBe(4098);
    expect(tokenizer.padId).toBe(4096);
    expect(tokenizer.addBos).toBe(false);
    expect([...tokenizer.endOfGenerationIds].sort()).toEqual([4096, 4098]);
  });
});

describe("special tokens", () => {
  const tokenizer = qwen2Tokenizer();

  it("are parsed only when asked", () => {
    const text = "<|im_start|>user\nhi<|im_end|>";
    expect(tokenizer.encode(text, { special: true })).toEqual([151644, 872, 198, 6023, 151645]);
    const plain = tokenizer.encode(text);
    expect(plain.some((id) => id >= 151643)).toBe(false);
    expect(plain.slice(0, 5)).toEqual([27, 91, 318, 4906, 91]); // "<", "|", "im", "_start", "|"
    expect(tokenizer.decode(plain)).toBe(text);
  });

  it("are rendered as their text, or skipped", () => {
    const ids = [151644, 872, 198, 6023, 151645];
    expect(tokenizer.decode(ids)).toBe("<|im_start|>user\nhi<|im_end|>");
    expect(tokenizer.decode(ids, { skipSpecial: true })).toBe("user\nhi");
    expect(tokenizer.isControl(151645)).toBe(true);
    expect(tokenizer.tokenToId("<|im_end|>")).toBe(151645);
    expect(tokenizer.eosId).toBe(151645);
    expect([...tokenizer.endOfGenerationIds].sort()).toEqual([151643, 151645]);
  });

  it("split leftmost first", () => {
    expect(tokenizer.splitSpecial("a<|im_end|><|im_start|>b<|im_end")).toEqual(["a", 151645, 151644, "b<|im_end"]);
    expect(tokenizer.splitSpecial("")).toEqual([]);
  });
});

describe("decoding", () => {
  const tokenizer = qwen2Tokenizer();

  it("keeps a leading byte-order mark and invalid bytes become U+FFFD", () => {
    expect(tokenizer.decode(tokenizer.encode("\uFEFFhi"))).toBe("\uFEFFhi");
    const e4 = tokenizer.tokenToId("ä")!; // byte 0xE4 alone: the start of a 3-byte character
    expect(tokenizer.decode([e4, tokenizer.tokenToId("a")!])).toBe("\uFFFDa");
  });

  it("rejects ids outside the vocabulary", () => {
    expect(() => tokenizer.decode([tokenizer.vocabSize])).toThrow(QwasmError);
    expect(() => tokenizer.decode([-1])).toThrow(/outside the vocabulary/);
  });
});

describe("StreamDecoder", () => {
  const tokenizer = qwen2Tokenizer();

  it("never emits half a character", () => {
    let held = 0;
    for (const text of ["我想在apple工作", "😶‍🌫️ emoji 👨‍👩‍👧‍👦", "Cửa Việt", "ကမ္ဘာ", "\uFEFF😀", "កាន់តែពិសេស"]) {
      const ids = tokenizer.encode(text);
      const stream = new StreamDecoder(tokenizer);
      const chunks = ids.map((id) => stream.push(id));
      held += chunks.filter((c) => c === "").length;
      chunks.push(stream.flush());
      expect(chunks.join("")).toBe(text);
      for (const chunk of chunks) expect(toWellFormed(chunk)).toBe(chunk);
      expect(chunks.join("")).toBe(tokenizer.decode(ids));
    }
    expect(held, "tokens that ended inside a character").toBeGreaterThan(3);
  });

  it("holds the bytes of a split character until it is complete", () => {
    // "😀" is F0 9F 98 80: feed it one byte token at a time.
    const bytes = [0xf0, 0x9f, 0x98, 0x80].map((b) => tokenizer.tokenToId(byteChar(b))!);
    const stream = new StreamDecoder(tokenizer);
    expect(bytes.map((id) => stream.push(id))).toEqual(["", "", "", "😀"]);
    expect(stream.flush()).toBe("");
  });

  it("flushes leftovers as U+FFFD and can be reused", () => {
    const stream = new StreamDecoder(tokenizer);
    expect(stream.push(tokenizer.tokenToId(byteChar(0xe4))!)).toBe("");
    expect(stream.flush()).toBe("\uFFFD");
    expect(stream.push(tokenizer.tokenToId("hi")!)).toBe("hi");
  });

  it("renders or skips specials", () => {
    const a = new StreamDecoder(tokenizer), b = new StreamDecoder(tokenizer, { skipSpecial: true });
    expect(a.push(151645)).toBe("<|im_end|>");
    expect(b.push(151645)).toBe("");
  });
});

describe("pre-tokenization", () => {
  it("uses Unicode White_Space for \\s, as Hugging Face tokenizers and llama.cpp do", () => {
    // JavaScript's \s would also take U+FEFF and not U+0085.
    expect(preTokenize("x\u0085\u0085y")).toEqual(["x", "\u0085", "\u0085y"]);
    expect(preTokenize("x \uFEFF\uFEFFy")).toEqual(["x", " \uFEFF\uFEFF", "y"]);
    expect(preTokenize("a  \n\n  b")).toEqual(["a", "  \n\n", " ", " b"]);
  });

  it("classifies every code point as the regex does", () => {
    const mismatches: string[] = [];
    for (let cp = 0; cp < 0x110000; cp += cp < 0x10000 ? 1 : 61) {
      const ch = String.fromCodePoint(cp);
      const s = `x${ch}${ch} ${ch}1\n${ch}`;
      if (JSON.stringify(preTokenize(s)) !== JSON.stringify(preTokenizeWithRegex(s))) mismatches.push(cp.toString(16));
    }
    expect(mismatches.slice(0, 20)).toEqual([]);
  });

  it("expands the case-insensitive contractions", () => {
    expect(preTokenize("I'M HE'LL we'Ve")).toEqual(["I", "'M", " HE", "'LL", " we", "'Ve"]);
  });

  it("the hand-written matcher cuts exactly where the regex does", () => {
    const random = mulberry32(13);
    const alphabet = ["'", "s", "S", "l", "L", "e", "r", "v", "m", "d", "t", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00A0",
      "\u3000", "\u0085", "\uFEFF", "\v", "!", "..", "1", "٣", "²", "a", "é", "中", "🦙", "𝐀", "𝟙", "\uD800", "\uDC00", "\u200D", "\u0301"];
    const strings = generateStrings(2000, 7).concat(Array.from({ length: 3000 }, () =>
      Array.from({ length: 1 + Math.floor(random() * 12) }, () => alphabet[Math.floor(random() * alphabet.length)]).join("")));
    for (const s of strings) {
      const pieces = preTokenize(s);
      expect(pieces.join("")).toBe(s);
      expect(pieces).toEqual(preTokenizeWithRegex(s));
    }
  });
});

describe("BPE merge loops", () => {
  it("the scan and the heap agree", () => {
    const tokenizer = qwen2Tokenizer();
    const json = qwen2TokenizerJSON();
    const triples: number[] = [];
    for (const m of json.model.merges) {
      const [l, r] = typeof m === "string" ? m.split(" ") : m;
      triples.push(json.model.vocab[l], json.model.vocab[r], json.model.vocab[l + r]);
    }
    const table = new MergeTable(Int32Array.from(triples));
    const random = mulberry32(5);
    const texts = generateStrings(500, 11).concat(Array.from({ length: 50 }, () =>
      Array.from({ length: 50 + Math.floor(random() * 400) }, () => String.fromCharCode(0x4e00 + Math.floor(random() * 2000))).join("")));
    let long = 0;
    for (const text of texts) {
      const bytes = new TextEncoder().encode(toWellFormed(text));
      const ids = Int32Array.from(bytes, (b) => tokenizer.tokenToId(byteChar(b))!);
      const a = ids.slice(), b = ids.slice();
      const na = mergeWordScan(table, a, a.length, new Int32Array(a.length));
      const nb = mergeWordHeap(table, b, b.length);
      expect(Array.from(b.subarray(0, nb))).toEqual(Array.from(a.subarray(0, na)));
      if (ids.length > 96) long++;
    }
    expect(long).toBeGreaterThan(50);
  });

  it("long pieces (CJK without punctuation) match the reference", () => {
    const random = mulberry32(9);
    const config = { tokenizer_class: "Qwen2Tokenizer" };
    const ref = TokenizerLoader.fromPreTrained({ tokenizerJSON: { ...qwen2TokenizerJSON(), added_tokens: [] } as never, tokenizerConfig: config }) as unknown as
      { encode(s: string, o: object): number[] };
    const tokenizer = qwen2Tokenizer();
    for (let i = 0; i < 20; i++) {
      const text = Array.from({ length: 200 + Math.floor(random() * 3000) }, () => String.fromCharCode(0x4e00 + Math.floor(random() * 500))).join("");
      expect(tokenizer.encode(text)).toEqual(ref.encode(text, { add_special_tokens: false }));
    }
  });
});

describe("building", () => {
  const spec = () => {
    const tokens = Array.from({ length: 256 }, (_, b) => byteChar(b));
    return { model: "gpt2", pre: "qwen2", tokens: [...tokens, "ab", "<|x|>"], tokenTypes: [...new Array(257).fill(1), 3], merges: ["a b"] };
  };

  it("from GGUF metadata values", () => {
    const t = Tokenizer.fromGGUF(spec());
    expect(t.encode("ab<|x|>")).toEqual([256, 60, 124, 120, 124, 62]);
    expect(t.encode("ab<|x|>", { special: true })).toEqual([256, 257]);
  });

  it("from GGUF values and from tokenizer.json alike (full vocabulary)", () => {
    const json = qwen2TokenizerJSON();
    const tokens: string[] = [];
    for (const [text, id] of Object.entries(json.model.vocab)) tokens[id] = text;
    const fromGGUF = Tokenizer.fromGGUF({
      model: "gpt2", pre: "qwen2", tokens: [...tokens, "<|endoftext|>", "<|im_start|>", "<|im_end|>"],
      tokenTypes: [...new Array(tokens.length).fill(1), 3, 3, 3],
      merges: json.model.merges.map((m) => (typeof m === "string" ? m : m.join(" "))),
      eosId: 151645,
    });
    const fromJSON = qwen2Tokenizer();
    for (const s of generateStrings(500, 3)) {
      expect(fromGGUF.encode(s, { special: true })).toEqual(fromJSON.encode(s, { special: true }));
    }
  });

  it("from a metadata getter, with GGUF array values and bigints", () => {
    const s = spec();
    const meta = new Map<string, unknown>([
      ["tokenizer.ggml.model", "gpt2"], ["tokenizer.ggml.pre", "qwen2"],
      ["tokenizer.ggml.tokens", { itemType: 8, items: s.tokens }],
      ["tokenizer.ggml.merges", { itemType: 8, items: s.merges }],
      ["tokenizer.ggml.token_type", { itemType: 5, items: Int32Array.from(s.tokenTypes) }],
      ["tokenizer.ggml.eos_token_id", 257n], ["tokenizer.ggml.add_bos_token", false],
    ]);
    const t = tokenizerFromMetadata(meta);
    expect(t.eosId).toBe(257);
    expect(t.encode("<|x|>ab", { special: true })).toEqual([257, 256]);

    // A qwen2 file from before llama.cpp recorded the pre-tokenizer gets Qwen2's; another
    // architecture without the key is still refused.
    const old = new Map(meta);
    old.delete("tokenizer.ggml.pre");
    old.set("general.architecture", "qwen2");
    expect(tokenizerFromMetadata(old).pre).toBe("qwen2");
    old.set("general.architecture", "llama");
    expect(() => tokenizerFromMetadata(old)).toThrow(/tokenizer.ggml.pre is missing/);
  });

  it("refuses other pre-tokenizers and models, saying what is supported", () => {
    const err = (f: () => unknown) => { try { f(); } catch (e) { return e as QwasmError; } throw new Error("no error"); };
    const e = err(() => Tokenizer.fromGGUF({ ...spec(), pre: "llama-bpe" }));
    expect(e).toBeInstanceOf(QwasmError);
    expect(e.code).toBe("TOKENIZER_INVALID");
    expect(e.message).toMatch(/"llama-bpe".*supported: qwen2/);
    expect(err(() => Tokenizer.fromGGUF({ ...spec(), pre: undefined })).message).toMatch(/missing.*qwen2/);
    expect(err(() => Tokenizer.fromGGUF({ ...spec(), model: "llama" })).code).toBe("TOKENIZER_INVALID");
    expect(err(() => tokenizerFromMetadata(new Map())).message).toMatch(/tokenizer.ggml.tokens is missing/);
    const noBytes = spec();
    noBytes.tokens[0x41] = "A?";
    expect(err(() => Tokenizer.fromGGUF(noBytes)).message).toMatch(/byte 0x41/);
    expect(err(() => Tokenizer.fromTokenizerJSON({ ...qwen2TokenizerJSON(), pre_tokenizer: { type: "Whitespace" } })).code).toBe("TOKENIZER_INVALID");
  });
});

function byteChar(b: number): string {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  if (printable) return String.fromCharCode(b);
  let n = 0;
  for (let c = 0; c < b; c++) if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff))) n++;
  return String.fromCharCode(0x100 + n);
}
