// The synthetic Qwen2 generator: what it writes reads back (metadata and tensors) exactly as
// generated, the same seed gives the same bytes, the presets have the real shapes, and the logits of a
// synthetic model spread like a real model's (measured with a plain f64 forward pass).
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openGGUF, parseGGUFBytes, type GGUFFile } from "../../weights/gguf/reader";
import { GGMLType } from "../../weights/gguf/types";
import { layoutGGUF, writeGGUFBytes } from "../../weights/gguf/writer";
import { dequantizeRow, quantizeRow } from "../../weights/quant/index";
import {
  QWEN2_PRESETS, SYNTH_TYPES, TokenType, readQwen2Vocabulary, sizeLabel, synthQwen2,
  type Qwen2Vocabulary, type SynthModel,
} from "../../tools/synth";
import { main as synthMain } from "../../cli/commands/synth";
import { QWEN2_CHATML_TEMPLATE } from "../../engine/chat-template";
import { dequantizedTensor, forward, meanStd, type F64Model } from "./forward";

let vocabulary: Qwen2Vocabulary;
const tmp = mkdtempSync(join(tmpdir(), "qwasm-synth-"));

beforeAll(async () => {
  vocabulary = await readQwen2Vocabulary();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function roundTrip(model: SynthModel): Promise<{ bytes: Uint8Array; file: GGUFFile }> {
  const bytes = await writeGGUFBytes(model);
  return { bytes, file: parseGGUFBytes(bytes) };
}

async function f64Model(file: GGUFFile, model: SynthModel): Promise<F64Model> {
  const weights = new Map<string, Float64Array>();
  for (const t of file.tensors) weights.set(t.name, dequantizedTensor(t.type, await file.readTensor(t), t.dims));
  const s = model.shape;
  return {
    hidden: s.hidden, layers: s.layers, heads: s.heads, kvHeads: s.kvHeads, ffn: s.ffn, nVocab: model.nVocab,
    ropeTheta: s.ropeTheta, rmsEps: s.rmsEps,
    weight(name) {
      const w = weights.get(name);
      if (!w) throw new Error(`no tensor ${name}`);
      return w;
    },
  };
}

describe("vocabulary", () => {
  test("the Qwen BPE vocabulary: 151643 tokens, merge k makes token 256 + k", () => {
    expect(vocabulary.tokens.length).toBe(151643);
    expect(vocabulary.merges.length).toBe(151387);
    expect(vocabulary.tokens.slice(0, 3)).toEqual(["!", "\"", "#"]);
    expect(vocabulary.merges[0]).toBe("Ġ Ġ");
    expect(vocabulary.tokens[256]).toBe("ĠĠ");
  });
});

describe("tiny preset", () => {
  test("metadata: the keys llama.cpp's converter writes for Qwen2-Instruct, 512 tokens + 3 specials", async () => {
    const model = synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 5 });
    const { file } = await roundTrip(model);
    const meta = file.metadata;
    expect([...meta.keys()]).toEqual([
      "general.architecture", "general.type", "general.name", "general.size_label", "qwen2.block_count",
      "qwen2.context_length", "qwen2.embedding_length", "qwen2.feed_forward_length", "qwen2.attention.head_count",
      "qwen2.attention.head_count_kv", "qwen2.rope.freq_base", "qwen2.attention.layer_norm_rms_epsilon",
      "general.file_type", "general.quantization_version", "tokenizer.ggml.model", "tokenizer.ggml.pre",
      "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.eos_token_id",
      "tokenizer.ggml.padding_token_id", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.add_bos_token",
      "tokenizer.chat_template",
    ]);
    expect(meta.getString("general.architecture")).toBe("qwen2");
    expect(meta.getString("general.name")).toBe("Qwen2 synthetic tiny");
    expect(meta.getU32("qwen2.block_count")).toBe(2);
    expect(meta.getU32("qwen2.embedding_length")).toBe(64);
    expect(meta.getU32("qwen2.feed_forward_length")).toBe(128);
    expect(meta.getU32("qwen2.attention.head_count")).toBe(4);
    expect(meta.getU32("qwen2.attention.head_count_kv")).toBe(2);
    expect(meta.getF32("qwen2.rope.freq_base")).toBe(1e6);
    expect(meta.getF32("qwen2.attention.layer_norm_rms_epsilon")).toBe(Math.fround(1e-6));
    expect(meta.getU32("general.file_type")).toBe(7);
    expect(meta.getU32("general.quantization_version")).toBe(2);
    const tokens = meta.getStringArray("tokenizer.ggml.tokens");
    expect(tokens.length).toBe(515);
    expect(tokens.slice(0, 512)).toEqual(vocabulary.tokens.slice(0, 512));
    expect(tokens.slice(512)).toEqual(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
    const types = Array.from(meta.getArray("tokenizer.ggml.token_type").items as Int32Array);
    expect(types).toEqual([...Array(512).fill(TokenType.NORMAL), 3, 3, 3]);
    expect(meta.getStringArray("tokenizer.ggml.merges")).toEqual(vocabulary.merges.slice(0, 256));
    expect(meta.getU32("tokenizer.ggml.eos_token_id")).toBe(514);
    expect(meta.getU32("tokenizer.ggml.padding_token_id")).toBe(512);
    expect(meta.getU32("tokenizer.ggml.bos_token_id")).toBe(512);
    expect(meta.getBool("tokenizer.ggml.add_bos_token")).toBe(false);
    expect(meta.getString("tokenizer.chat_template")).toBe(QWEN2_CHATML_TEMPLATE);
    expect(meta.getString("general.size_label")).toBe(sizeLabel(model.parameterCount));
  });

  test("tensors: names, dims and types as the converter writes them; norms and biases F32", () => {
    const model = synthQwen2({ shape: "tiny", vocabulary, type: "Q4_0", embeddingType: "F16" });
    const layer = (l: number) => [
      [`blk.${l}.attn_norm.weight`, [64], "F32"], [`blk.${l}.attn_q.weight`, [64, 64], "Q4_0"],
      [`blk.${l}.attn_q.bias`, [64], "F32"], [`blk.${l}.attn_k.weight`, [64, 32], "Q4_0"],
      [`blk.${l}.attn_k.bias`, [32], "F32"], [`blk.${l}.attn_v.weight`, [64, 32], "Q4_0"],
      [`blk.${l}.attn_v.bias`, [32], "F32"], [`blk.${l}.attn_output.weight`, [64, 64], "Q4_0"],
      [`blk.${l}.ffn_norm.weight`, [64], "F32"], [`blk.${l}.ffn_gate.weight`, [64, 128], "Q4_0"],
      [`blk.${l}.ffn_up.weight`, [64, 128], "Q4_0"], [`blk.${l}.ffn_down.weight`, [128, 64], "Q4_0"],
    ];
    const want = [["token_embd.weight", [64, 515], "F16"], ...layer(0), ...layer(1), ["output_norm.weight", [64], "F32"]];
    expect(model.tensors.map((t) => [t.name, t.dims, t.type])).toEqual(
      want.map(([name, dims, type]) => [name, dims, GGMLType[type as keyof typeof GGMLType]]));
  });

  for (const type of SYNTH_TYPES) {
    test(`${type}: every tensor reads back as quantize(generated values)`, async () => {
      const model = synthQwen2({ shape: "tiny", vocabulary, type, seed: 9 });
      const { file } = await roundTrip(model);
      expect(file.tensors.map((t) => t.name)).toEqual(model.tensors.map((t) => t.name));
      for (const t of model.tensors) {
        const info = file.tensor(t.name)!;
        expect(info.dims, t.name).toEqual(t.dims);
        expect(info.type, t.name).toBe(t.type);
        const bytes = await file.readTensor(info);
        const rowBytes = info.nbytes / t.rows;
        for (let r = 0; r < t.rows; r++) {
          const values = t.values(r);
          const row = bytes.subarray(r * rowBytes, (r + 1) * rowBytes);
          expect(row, `${t.name} row ${r}`).toEqual(quantizeRow(t.type, values));
          if (r === 0) {
            const back = dequantizeRow(t.type, row, values.length);
            expect(back, t.name).toEqual(dequantizeRow(t.type, quantizeRow(t.type, values), values.length));
          }
        }
      }
    });
  }

  test("the same seed gives the same file byte for byte; another seed does not", async () => {
    const a = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q5_1", seed: 42 }));
    const b = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q5_1", seed: 42 }));
    const c = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q5_1", seed: 43 }));
    expect(a.length).toBe(c.length);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
  });

  test("the generator is pinned: these draws must not change (files made earlier stay reproducible)", () => {
    const model = synthQwen2({ shape: "tiny", vocabulary, seed: 0 });
    const row = (name: string, r: number, from: number, to: number) =>
      Array.from(model.tensors.find((t) => t.name === name)!.values(r).subarray(from, to));
    expect(row("token_embd.weight", 0, 0, 4)).toEqual(
      [0.0011443761177361012, -0.28830477595329285, -0.5701632499694824, -0.20826493203639984]);
    expect(row("blk.0.attn_norm.weight", 0, 0, 3)).toEqual([0.8366795778274536, 1.1080461740493774, 0.9900319576263428]);
    expect(row("blk.1.attn_v.weight", 31, 60, 64)).toEqual(
      [-0.04066118597984314, 0.09259552508592606, 0.1743011325597763, -0.20163331925868988]);
  });

  test("weights have the intended scales", () => {
    const model = synthQwen2({ shape: "tiny", vocabulary, seed: 1 });
    const stats = (name: string) => {
      const t = model.tensors.find((x) => x.name === name)!;
      const all: number[] = [];
      for (let r = 0; r < t.rows; r++) all.push(...t.values(r));
      return meanStd(all);
    };
    const embd = stats("token_embd.weight");
    expect(Math.abs(embd.mean)).toBeLessThan(0.02);
    expect(embd.std).toBeCloseTo(4 / 8, 1);
    expect(stats("blk.0.ffn_down.weight").std).toBeCloseTo(1 / Math.sqrt(128), 2);
    expect(stats("blk.1.attn_q.weight").std).toBeCloseTo(1 / 8, 2);
    const norm = stats("blk.0.attn_norm.weight");
    expect(norm.mean).toBeCloseTo(1, 1);
    expect(norm.std).toBeGreaterThan(0.05);
    expect(norm.std).toBeLessThan(0.15);
  });
});

describe("logits of a synthetic model", () => {
  // The fixtures' llama.cpp logits have a std of about 4 over the vocabulary; synthetic models should
  // spread alike (not collapse to ~0, not blow up), whatever the hidden size.
  const shapes = [
    ["tiny", QWEN2_PRESETS.tiny],
    ["hidden 256, 3 layers, untied", { ...QWEN2_PRESETS.tiny, hidden: 256, layers: 3, heads: 4, kvHeads: 2, ffn: 512, vocab: 1024, tied: false }],
  ] as const;
  for (const [label, shape] of shapes) {
    test(`${label}: logit std of a few units at every position`, async () => {
      const model = synthQwen2({ shape: { ...shape }, vocabulary, type: "F32", seed: 3 });
      const { file } = await roundTrip(model);
      const prompt = [model.nVocab - 2, 40, 300, 7, 100, 511, model.nVocab - 1, 20];
      const logits = forward(await f64Model(file, model), prompt);
      const stds = logits.map((l) => meanStd(l).std);
      console.log(`${label}: logit std per position ${stds.map((s) => s.toFixed(2)).join(" ")}`);
      for (const s of stds) {
        expect(s).toBeGreaterThan(2);
        expect(s).toBeLessThan(8);
      }
      // the model is not degenerate: different positions predict different tokens
      const argmax = logits.map((l) => l.indexOf(Math.max(...l)));
      expect(new Set(argmax).size).toBeGreaterThan(1);
    });
  }
});

describe("real shapes", () => {
  test("0.5b: Qwen2-0.5B-Instruct's tensors, vocabulary padded to 151936, ~494M parameters", () => {
    const model = synthQwen2({ shape: "0.5b", vocabulary, type: "F16" });
    expect(model.tensors.length).toBe(24 * 12 + 2);
    expect(model.nVocab).toBe(151936);
    expect(model.tensors[0].dims).toEqual([896, 151936]);
    expect(model.tensors.find((t) => t.name === "blk.23.attn_k.weight")!.dims).toEqual([896, 128]);
    expect(model.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!.dims).toEqual([4864, 896]);
    expect(model.tensors.some((t) => t.name === "output.weight")).toBe(false);
    const meta = new Map(model.metadata);
    expect(meta.get("general.size_label")!.value).toBe("494M");
    const tokens = (meta.get("tokenizer.ggml.tokens")!.value as { items: string[] }).items;
    const types = (meta.get("tokenizer.ggml.token_type")!.value as { items: Int32Array }).items;
    expect(tokens.slice(151643, 151647)).toEqual(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[PAD151646]"]);
    expect(tokens[151935]).toBe("[PAD151935]");
    expect([types[151642], types[151643], types[151645], types[151646], types[151935]]).toEqual([1, 3, 3, 5, 5]);
    expect(meta.get("tokenizer.ggml.eos_token_id")!.value).toBe(151645);
    expect(meta.get("tokenizer.ggml.bos_token_id")!.value).toBe(151643);
    expect(meta.get("tokenizer.ggml.merges")!.value).toMatchObject({ items: { length: 151387 } });
    // an F16 file of the real model is ~988 MB of weights; nothing has been generated yet
    const layout = layoutGGUF(model);
    expect(layout.fileSize).toBeGreaterThan(985e6);
    expect(layout.fileSize).toBeLessThan(1000e6);
  });

  test("1.5b and 7b: shapes, 7b untied with output.weight and 152064 tokens", () => {
    const m15 = synthQwen2({ shape: "1.5b", vocabulary, type: "Q8_0" });
    expect(m15.tensors.length).toBe(28 * 12 + 2);
    expect(new Map(m15.metadata).get("general.size_label")!.value).toBe("1.5B");
    const m7 = synthQwen2({ shape: "7b", vocabulary, type: "Q4_0" });
    expect(m7.nVocab).toBe(152064);
    expect(m7.tensors.length).toBe(28 * 12 + 3);
    expect(m7.tensors.at(-1)!.name).toBe("output.weight");
    expect(m7.tensors.at(-1)!.dims).toEqual([3584, 152064]);
    expect(m7.tensors.find((t) => t.name === "blk.0.attn_k.weight")!.dims).toEqual([3584, 512]);
    expect(new Map(m7.metadata).get("general.size_label")!.value).toBe("7.6B");
    expect(layoutGGUF(m7).fileSize).toBeGreaterThan(4e9); // > 4 GiB offsets are fine
  });

  test("bad shapes and types fail loudly", () => {
    expect(() => synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, hidden: 48 }, vocabulary, type: "Q4_0" })).toThrow(/hidden 48 is not a multiple of the Q4_0 block size 32/);
    expect(() => synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, heads: 3 }, vocabulary })).toThrow(/not a multiple of heads 3/);
    expect(() => synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, vocab: 100 }, vocabulary })).toThrow(/between 256/);
    expect(() => synthQwen2({ shape: "tiny", vocabulary, type: "Q4_K" as never })).toThrow(/cannot write type Q4_K/);
    expect(() => synthQwen2({ shape: "13b" as never, vocabulary })).toThrow(/unknown shape "13b"/);
  });
});

describe("qwasm synth", () => {
  test("writes a file that reads back, equal to the library's bytes", async () => {
    const out = join(tmp, "tiny-q8.gguf");
    expect(await synthMain([out, "--shape", "tiny", "--type", "q8_0", "--seed", "7", "--name", "t"])).toBe(0);
    const file = await openGGUF(out);
    expect(file.metadata.getU32("general.file_type")).toBe(7);
    await file.close();
    const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 7, name: "t" }));
    expect(Buffer.from(readFileSync(out)).equals(Buffer.from(bytes))).toBe(true);
  });

  test("custom dimensions, vocabulary size and untied head", async () => {
    const out = join(tmp, "custom.gguf");
    const argv = [out, "--hidden", "128", "--layers", "1", "--heads", "2", "--kv-heads", "1", "--ffn", "256",
      "--vocab", "300", "--untied", "--type", "bf16", "--embedding-type", "f16"];
    expect(await synthMain(argv)).toBe(0);
    const file = await openGGUF(out);
    expect(file.metadata.getU32("qwen2.embedding_length")).toBe(128);
    expect(file.metadata.getU32("qwen2.attention.head_count_kv")).toBe(1);
    expect(file.metadata.getStringArray("tokenizer.ggml.tokens").length).toBe(303);
    expect(file.metadata.getU32("general.file_type")).toBe(32);
    expect(file.tensor("output.weight")!.type).toBe(GGMLType.F16);
    expect(file.tensor("blk.0.ffn_up.weight")!.type).toBe(GGMLType.BF16);
    expect(file.tensor("blk.0.ffn_up.weight")!.dims).toEqual([128, 256]);
    await file.close();
  });

  test("usage errors exit 2, generation errors exit 1", async () => {
    expect(await synthMain([])).toBe(2);
    expect(await synthMain([join(tmp, "x.gguf"), "--shape", "3b"])).toBe(2);
    expect(await synthMain([join(tmp, "x.gguf"), "--type", "q7_k"])).toBe(2); // q4_k is a mix now (Q4_K_M)
    expect(await synthMain([join(tmp, "x.gguf"), "--hidden", "40", "--type", "q4_0"])).toBe(1);
    expect(await synthMain(["--help"])).toBe(0);
  });
});
