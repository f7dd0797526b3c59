// qwasm quantize's per-tensor types (llama_tensor_get_type) on the real Qwen2 shapes, its options and
// errors, and its streaming; no fixtures needed (the fixture comparison is quantize-fixtures.test.ts).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { QwasmError } from "../../platform/errors";
import { kv, type GGUFEntry } from "../../weights/gguf/metadata";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { GGMLType, typeInfo } from "../../weights/gguf/types";
import { writeGGUF, writeGGUFBytes } from "../../weights/gguf/writer";
import {
  defaultQuantizeWorkerUrl, planQuantization, planSummary, quantizeGGUF, quantizeModel, type QuantizeOptions, type QuantizeSource,
  type TensorDescription,
} from "../../tools/quantize";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";

interface Shape { hidden: number; layers: number; heads: number; kvHeads: number; ffn: number; vocab: number; tied: boolean }

const QWEN2_0_5B: Shape = { hidden: 896, layers: 24, heads: 14, kvHeads: 2, ffn: 4864, vocab: 151936, tied: true };
const QWEN2_1_5B: Shape = { hidden: 1536, layers: 28, heads: 12, kvHeads: 2, ffn: 8960, vocab: 151936, tied: true };
const QWEN2_7B: Shape = { hidden: 3584, layers: 28, heads: 28, kvHeads: 4, ffn: 18944, vocab: 152064, tied: false };

/** The tensor table convert_hf_to_gguf writes for a Qwen2 checkpoint (F16 matrices). */
function qwen2(shape: Shape, type: number = GGMLType.F16): { metadata: [string, GGUFEntry][]; tensors: TensorDescription[] } {
  const { hidden: h, ffn, vocab } = shape;
  const kvDim = (h / shape.heads) * shape.kvHeads;
  const tensors: TensorDescription[] = [{ name: "token_embd.weight", dims: [h, vocab], type }];
  for (let l = 0; l < shape.layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, dims: [h], type: GGMLType.F32 },
      { name: `${p}attn_q.weight`, dims: [h, h], type }, { name: `${p}attn_q.bias`, dims: [h], type: GGMLType.F32 },
      { name: `${p}attn_k.weight`, dims: [h, kvDim], type }, { name: `${p}attn_k.bias`, dims: [kvDim], type: GGMLType.F32 },
      { name: `${p}attn_v.weight`, dims: [h, kvDim], type }, { name: `${p}attn_v.bias`, dims: [kvDim], type: GGMLType.F32 },
      { name: `${p}attn_output.weight`, dims: [h, h], type },
      { name: `${p}ffn_norm.weight`, dims: [h], type: GGMLType.F32 },
      { name: `${p}ffn_gate.weight`, dims: [h, ffn], type }, { name: `${p}ffn_up.weight`, dims: [h, ffn], type },
      { name: `${p}ffn_down.weight`, dims: [ffn, h], type },
    );
  }
  tensors.push({ name: "output_norm.weight", dims: [h], type: GGMLType.F32 });
  if (!shape.tied) tensors.push({ name: "output.weight", dims: [h, vocab], type });
  const metadata: [string, GGUFEntry][] = [
    ["general.architecture", kv.string("qwen2")],
    ["general.file_type", kv.u32(1)],
    ["qwen2.block_count", kv.u32(shape.layers)],
    ["qwen2.attention.head_count", kv.u32(shape.heads)],
    ["qwen2.attention.head_count_kv", kv.u32(shape.kvHeads)],
  ];
  return { metadata, tensors };
}

function counts(shape: Shape, options: QuantizeOptions): Record<string, number> {
  const { metadata, tensors } = qwen2(shape);
  const plan = planQuantization(metadata, tensors, options);
  const out: Record<string, number> = {};
  for (const t of plan.tensors) if (t.dims.length === 2) out[typeInfo(t.outType)!.name] = (out[typeInfo(t.outType)!.name] ?? 0) + 1;
  return out;
}

function typesOf(shape: Shape, options: QuantizeOptions): Map<string, string> {
  const { metadata, tensors } = qwen2(shape);
  return new Map(planQuantization(metadata, tensors, options).tensors.map((t) => [t.name, typeInfo(t.outType)!.name]));
}

function errorOf(f: () => unknown): QwasmError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(QwasmError);
    return e as QwasmError;
  }
  throw new Error("expected a QwasmError");
}

describe("per-tensor types of the mixes", () => {
  test("Qwen2-0.5B Q4_K_M: what llama-quantize makes of it (issue 14: 132 Q5_0, 13 Q8_0, 12 Q6_K, 12 Q4_K)", () => {
    expect(counts(QWEN2_0_5B, { type: "Q4_K_M" })).toEqual({ Q5_0: 132, Q8_0: 13, Q6_K: 12, Q4_K: 12 });
    const types = typesOf(QWEN2_0_5B, { type: "Q4_K_M" });
    expect(types.get("token_embd.weight")).toBe("Q8_0"); // tied: the output tensor's Q6_K, 896 falls back
    expect(types.get("blk.0.attn_v.weight")).toBe("Q8_0"); // more bits (Q6_K) in layer 0, falls back
    expect(types.get("blk.3.attn_v.weight")).toBe("Q5_0"); // Q4_K falls back
    expect(types.get("blk.0.ffn_down.weight")).toBe("Q6_K"); // 4864 = 19 x 256
    expect(types.get("blk.3.ffn_down.weight")).toBe("Q4_K");
    expect(types.get("blk.5.ffn_down.weight")).toBe("Q6_K"); // (5 - 3) % 3 == 2
    expect(types.get("blk.0.attn_norm.weight")).toBe("F32");
  });

  test("Qwen2-0.5B Q4_0: Q4_0 matrices, the tied embedding Q8_0 (Q6_K does not fit 896)", () => {
    expect(counts(QWEN2_0_5B, { type: "Q4_0" })).toEqual({ Q4_0: 168, Q8_0: 1 });
    expect(counts(QWEN2_0_5B, { type: "Q4_0", pure: true })).toEqual({ Q4_0: 169 });
  });

  test("Qwen2-1.5B and 7B Q4_K_M: K-quants throughout, Q6_K for attn_v and ffn_down in 14 of 28 layers", () => {
    // use_more_bits(i, 28): i < 3, i >= 24, or (i - 3) % 3 == 2 -> 14 layers
    // 7 matrices a layer; q, k, output, gate, up in Q4_K, attn_v and ffn_down Q6_K in 14 layers
    expect(counts(QWEN2_1_5B, { type: "Q4_K_M" })).toEqual({ Q4_K: 5 * 28 + 2 * 14, Q6_K: 2 * 14 + 1 });
    expect(counts(QWEN2_7B, { type: "Q4_K_M" })).toEqual({ Q4_K: 5 * 28 + 2 * 14 + 1, Q6_K: 2 * 14 + 1 });
    const types = typesOf(QWEN2_7B, { type: "Q4_K_M" });
    expect(types.get("token_embd.weight")).toBe("Q4_K"); // untied: token_embd keeps the default
    expect(types.get("output.weight")).toBe("Q6_K");
  });

  test("the other mixes' rules (1.5B shape)", () => {
    const q3m = typesOf(QWEN2_1_5B, { type: "Q3_K_M" });
    expect([0, 1, 2].map((l) => q3m.get(`blk.${l}.attn_v.weight`))).toEqual(["Q5_K", "Q5_K", "Q4_K"]);
    expect([0, 1, 2].map((l) => q3m.get(`blk.${l}.ffn_down.weight`))).toEqual(["Q5_K", "Q4_K", "Q4_K"]); // l < 28/16
    expect(q3m.get("blk.7.attn_output.weight")).toBe("Q4_K");
    expect(q3m.get("blk.7.attn_q.weight")).toBe("Q3_K");
    expect(typesOf(QWEN2_1_5B, { type: "Q3_K" })).toEqual(q3m); // the alias
    const q3l = typesOf(QWEN2_1_5B, { type: "Q3_K_L" });
    expect([q3l.get("blk.9.attn_v.weight"), q3l.get("blk.9.ffn_down.weight"), q3l.get("blk.9.attn_output.weight")]).toEqual(["Q5_K", "Q5_K", "Q5_K"]);
    const q3s = typesOf(QWEN2_1_5B, { type: "Q3_K_S" });
    expect(new Set([...q3s].filter(([n]) => n.startsWith("blk.")).map(([, t]) => t))).toEqual(new Set(["Q3_K", "F32"]));
    const q2 = typesOf(QWEN2_1_5B, { type: "Q2_K" });
    expect([q2.get("blk.4.attn_v.weight"), q2.get("blk.4.ffn_down.weight"), q2.get("blk.4.attn_output.weight"), q2.get("blk.4.ffn_up.weight")])
      .toEqual(["Q4_K", "Q3_K", "Q3_K", "Q2_K"]); // n_gqa 6 >= 4: attn_v Q4_K
    const q4s = typesOf(QWEN2_1_5B, { type: "Q4_K_S" });
    expect([3, 4].map((l) => q4s.get(`blk.${l}.attn_v.weight`))).toEqual(["Q5_K", "Q4_K"]);
    expect([2, 3].map((l) => q4s.get(`blk.${l}.ffn_down.weight`))).toEqual(["Q5_K", "Q4_K"]); // l < 28/8
    const q5m = typesOf(QWEN2_1_5B, { type: "Q5_K_M" });
    expect([0, 3].map((l) => q5m.get(`blk.${l}.ffn_down.weight`))).toEqual(["Q6_K", "Q5_K"]);
    const nl = typesOf(QWEN2_1_5B, { type: "IQ4_NL" });
    expect([nl.get("blk.0.attn_v.weight"), nl.get("blk.0.ffn_down.weight"), nl.get("blk.5.ffn_down.weight"), nl.get("token_embd.weight")])
      .toEqual(["Q5_K", "Q5_K", "IQ4_NL", "Q6_K"]);
    expect(counts(QWEN2_1_5B, { type: "Q6_K" })).toEqual({ Q6_K: 197 });
    expect(counts(QWEN2_1_5B, { type: "Q8_0" })).toEqual({ Q8_0: 197 }); // the output tensor stays Q8_0 in a Q8_0 file
  });

  test("Qwen2-72B (80 layers: llama.cpp's 70B type): attn_v gets Q5_K where the mix says Q3_K or Q4_K", () => {
    const shape: Shape = { hidden: 8192, layers: 80, heads: 64, kvHeads: 8, ffn: 29568, vocab: 152064, tied: false };
    const q4km = typesOf(shape, { type: "Q4_K_M" });
    // use_more_bits(i, 80): i < 10, i >= 70, or (i - 10) % 3 == 2
    expect([0, 10, 11, 12].map((l) => q4km.get(`blk.${l}.attn_v.weight`))).toEqual(["Q6_K", "Q5_K", "Q5_K", "Q6_K"]);
    expect(typesOf(shape, { type: "Q3_K_S" }).get("blk.40.attn_v.weight")).toBe("Q5_K");
    expect(q4km.get("blk.11.ffn_down.weight")).toBe("Q5_0"); // 29568 is not a multiple of 256: Q4_K falls back
    expect(typesOf({ ...shape, layers: 79 }, { type: "Q3_K_S" }).get("blk.40.attn_v.weight")).toBe("Q3_K");
  });

  test("--output-type and --token-embedding-type", () => {
    // tied: the output type is token_embd's, unless --pure
    expect(typesOf(QWEN2_1_5B, { type: "Q4_K_M", outputType: "Q8_0" }).get("token_embd.weight")).toBe("Q8_0");
    expect(typesOf(QWEN2_1_5B, { type: "Q4_K_M", pure: true, outputType: "Q8_0" }).get("token_embd.weight")).toBe("Q4_K");
    expect(typesOf(QWEN2_1_5B, { type: "Q4_K_M", tokenEmbeddingType: "f16" }).get("token_embd.weight")).toBe("F16");
    const untied = typesOf(QWEN2_7B, { type: "Q4_0", outputType: "Q5_K", tokenEmbeddingType: "Q8_0" });
    expect([untied.get("output.weight"), untied.get("token_embd.weight")]).toEqual(["Q5_K", "Q8_0"]);
  });

  test("F16, BF16 and F32 convert every matrix; metadata says the ftype last", () => {
    const { metadata, tensors } = qwen2(QWEN2_0_5B, GGMLType.BF16);
    const plan = planQuantization(metadata, tensors, { type: "F16" });
    expect(planSummary(plan)).toBe("121 F32, 169 F16");
    expect(plan.metadata.slice(-2)).toEqual([["general.quantization_version", kv.u32(2)], ["general.file_type", kv.u32(1)]]);
    expect(plan.metadata.filter(([k]) => k === "general.file_type")).toHaveLength(1);
    // llama.cpp's loader order: non-layer tensors by name, then by layer (numerically) and name
    expect(plan.tensors.slice(0, 4).map((t) => t.name)).toEqual(["output_norm.weight", "token_embd.weight", "blk.0.attn_k.bias", "blk.0.attn_k.weight"]);
    const layers = plan.tensors.map((t) => /^blk\.(\d+)\./.exec(t.name)?.[1]).filter((l) => l !== undefined).map(Number);
    expect(layers).toEqual([...layers].sort((a, b) => a - b));
  });
});

describe("errors", () => {
  const { metadata, tensors } = qwen2({ hidden: 256, layers: 2, heads: 4, kvHeads: 2, ffn: 512, vocab: 100, tied: true });

  test("imatrix types, types qwasm does not write, unknown names", () => {
    for (const type of ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "Q2_K_S"]) {
      const e = errorOf(() => planQuantization(metadata, tensors, { type }));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.message).toContain(`${type} needs an importance matrix`);
      expect(e.message).toContain("supported: Q4_0");
    }
    expect(errorOf(() => planQuantization(metadata, tensors, { type: "IQ4_XS" })).message).toMatch(/does not write IQ4_XS; supported/);
    expect(errorOf(() => planQuantization(metadata, tensors, { type: "Q4_K_X" })).message).toMatch(/unknown quantization type "Q4_K_X"; supported/);
    expect(errorOf(() => planQuantization(metadata, tensors, { type: "Q4_0", outputType: "IQ2_XXS" })).message)
      .toMatch(/--output-type IQ2_XXS: qwasm cannot write that tensor type \(it needs an importance matrix\)/);
    expect(errorOf(() => planQuantization(metadata, tensors, { type: "Q4_0", tokenEmbeddingType: "Q7" })).message)
      .toMatch(/--token-embedding-type Q7: .*types: F32/);
  });

  test("architectures other than qwen2/qwen2moe, requantizing, rows that fit no type", () => {
    const llama = metadata.map(([k, v]): [string, GGUFEntry] => (k === "general.architecture" ? [k, kv.string("llama")] : [k, v]));
    expect(errorOf(() => planQuantization(llama, tensors, { type: "Q4_0" })).code).toBe("MODEL_UNSUPPORTED");
    const quantized = tensors.map((t) => (t.dims.length === 2 ? { ...t, type: GGMLType.Q8_0 } : t));
    expect(errorOf(() => planQuantization(metadata, quantized, { type: "Q4_0" })).message).toMatch(/already Q8_0.*--allow-requantize/);
    expect(planSummary(planQuantization(metadata, quantized, { type: "Q4_0", allowRequantize: true }))).toBe("11 F32, 1 Q6_K, 14 Q4_0");
    // Q8_0 everywhere (the output tensor keeps Q8_0): the same type as the input, copied, no requantizing
    expect(planSummary(planQuantization(metadata, quantized, { type: "Q8_0" }))).toBe("11 F32, 15 Q8_0");
    // a row of 48 fits no 32- or 256-block: Q4_0 has no fallback, Q4_K falls back to Q5_0 and then F16
    const odd = [...tensors, { name: "blk.0.extra.weight", dims: [48, 4], type: GGMLType.F32 }];
    expect(errorOf(() => planQuantization(metadata, odd, { type: "Q4_0" })).message).toMatch(/rows of 48, not a multiple of the Q4_0 block size 32, and llama.cpp defines no fallback/);
    const extra = planQuantization(metadata, odd, { type: "Q4_K_M" }).tensors.find((t) => t.name === "blk.0.extra.weight")!;
    expect([typeInfo(extra.outType)!.name, extra.fallback]).toEqual(["F16", "rows of 48 are not a multiple of 256 (Q4_K): F16"]);
    // an explicit type that does not fit is refused (llama.cpp would write a broken file)
    const narrow = tensors.map((t) => (t.name === "token_embd.weight" ? { ...t, dims: [96, 100] } : t));
    expect(errorOf(() => planQuantization(metadata, narrow, { type: "Q4_0", tokenEmbeddingType: "Q4_K" })).message)
      .toBe("quantize: tensor token_embd.weight has rows of 96, not a multiple of the Q4_K block size 256");
  });
});

describe("the data", () => {
  test("a value that is not finite stops quantization with the tensor and row", async () => {
    const model = synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), seed: 3 });
    const bytes = await writeGGUFBytes(model);
    const file = parseGGUFBytes(bytes);
    const t = file.tensor("blk.1.ffn_up.weight")!;
    new DataView(bytes.buffer).setFloat32(file.dataOffset + t.offset + 4 * (t.dims[0] * 5 + 3), NaN, true);
    const e = await quantizeGGUF(bytes, () => {}, { type: "Q8_0" }).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(QwasmError);
    expect([(e as QwasmError).code, (e as QwasmError).message]).toEqual(["MODEL_INVALID",
      "quantize: tensor blk.1.ffn_up.weight has a non-finite value (NaN) in row 5; it cannot be quantized"]);
  });

  test("streams: big tensors are read and written a few MiB at a time", async () => {
    // Two 64 MiB F32 tensors whose bytes are produced on demand: reads stay <= 8 MiB and the sink
    // never gets a chunk above the writer's staging size.
    const reads: number[] = [];
    const matrix = (name: string): QuantizeSource["tensors"][number] => ({
      name, dims: [4096, 4096], type: GGMLType.F32,
      read: async (offset, length) => {
        reads.push(length);
        const x = new Float32Array(length / 4);
        for (let i = 0; i < x.length; i++) x[i] = Math.sin(offset / 4 + i);
        return new Uint8Array(x.buffer);
      },
    });
    const { metadata } = qwen2({ hidden: 4096, layers: 1, heads: 32, kvHeads: 8, ffn: 4096, vocab: 4096, tied: true });
    const source: QuantizeSource = { metadata, tensors: [matrix("token_embd.weight"), matrix("blk.0.ffn_up.weight")] };
    let largest = 0;
    let total = 0;
    const model = quantizeModel(source, { type: "Q8_0", outputType: "Q8_0" });
    await writeGGUF(model, (chunk) => { largest = Math.max(largest, chunk.length); total += chunk.length; });
    expect(model.plan.tensors.map((t) => [t.name, typeInfo(t.outType)!.name])).toEqual([["token_embd.weight", "Q8_0"], ["blk.0.ffn_up.weight", "Q8_0"]]);
    expect(reads.length).toBe(2 * 8); // 64 MiB each, 8 MiB per read
    expect(Math.max(...reads)).toBeLessThanOrEqual(8 * 2 ** 20);
    expect(largest).toBeLessThanOrEqual(8 * 2 ** 20);
    expect(total).toBeGreaterThan(2 * 4096 * 4096 * 0.8);
  });

  const workerBuilt = existsSync(fileURLToPath(defaultQuantizeWorkerUrl()));
  test.skipIf(!workerBuilt)("workers give the same bytes as one thread (needs dist/quantize-worker.js: node scripts/build.mjs)", async () => {
    const model = synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, hidden: 256, ffn: 512 }, vocabulary: await readQwen2Vocabulary(), seed: 8 });
    const bytes = await writeGGUFBytes(model);
    const run = async (threads: number) => {
      const chunks: Uint8Array[] = [];
      await quantizeGGUF(bytes, (c) => { chunks.push(c.slice()); }, { type: "Q4_K_M", threads });
      return Buffer.concat(chunks);
    };
    const one = await run(1);
    expect(one.length).toBeGreaterThan(100_000);
    expect((await run(2)).equals(one)).toBe(true);
    expect((await run(3)).equals(one)).toBe(true);
  });

  test("workers that cannot start are a WORKER_FAILED error, and threads must be 1..256", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), seed: 1 }));
    const missing = new URL("file:///nonexistent-qwasm/quantize-worker.js");
    const e = await quantizeGGUF(bytes, () => {}, { type: "Q8_0", threads: 2, workerUrl: missing }).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(QwasmError);
    expect((e as QwasmError).code).toBe("WORKER_FAILED");
    const bad = await quantizeGGUF(bytes, () => {}, { type: "Q8_0", threads: 0 }).then(() => undefined, (x: unknown) => x);
    expect((bad as QwasmError).message).toBe("quantize: threads must be an integer 1..256, got 0");
  });
});
