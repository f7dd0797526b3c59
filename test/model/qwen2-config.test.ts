// The Qwen2 config and tensor map: values come from the file (never hard-coded), rope scaling is
// kept, other architectures are refused clearly, and every tensor's shape is checked.
import { describe, expect, it } from "vitest";
import { GGUFMetadata, kv } from "../../weights/gguf/metadata";
import { mapQwen2Tensors, parseQwen2Config, type TensorDesc } from "../../weights/qwen2";

/** Metadata and tensor descriptions of a small Qwen2, with overrides. */
function model(overrides: Record<string, ReturnType<typeof kv.u32> | undefined> = {}, tied = true) {
  const entries: Record<string, ReturnType<typeof kv.u32> | undefined> = {
    "general.architecture": kv.string("qwen2"),
    "general.name": kv.string("test"),
    "qwen2.block_count": kv.u32(2),
    "qwen2.context_length": kv.u32(32768),
    "qwen2.embedding_length": kv.u32(64),
    "qwen2.feed_forward_length": kv.u32(128),
    "qwen2.attention.head_count": kv.u32(4),
    "qwen2.attention.head_count_kv": kv.u32(2),
    "qwen2.rope.freq_base": kv.f32(1000000),
    "qwen2.attention.layer_norm_rms_epsilon": kv.f32(1e-5),
    ...overrides,
  };
  const meta = new GGUFMetadata(Object.entries(entries).filter(([, v]) => v !== undefined) as [string, ReturnType<typeof kv.u32>][]);
  const tensors: TensorDesc[] = [
    { name: "token_embd.weight", dims: [64, 300], type: 8 },
    { name: "output_norm.weight", dims: [64], type: 0 },
  ];
  if (!tied) tensors.push({ name: "output.weight", dims: [64, 300], type: 14 });
  for (let l = 0; l < 2; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: p + "attn_norm.weight", dims: [64], type: 0 },
      { name: p + "attn_q.weight", dims: [64, 64], type: 2 }, { name: p + "attn_q.bias", dims: [64], type: 0 },
      { name: p + "attn_k.weight", dims: [64, 32], type: 2 }, { name: p + "attn_k.bias", dims: [32], type: 0 },
      { name: p + "attn_v.weight", dims: [64, 32], type: 8 }, { name: p + "attn_v.bias", dims: [32], type: 0 },
      { name: p + "attn_output.weight", dims: [64, 64], type: 2 },
      { name: p + "ffn_norm.weight", dims: [64], type: 0 },
      { name: p + "ffn_gate.weight", dims: [64, 128], type: 2 },
      { name: p + "ffn_up.weight", dims: [64, 128], type: 2 },
      { name: p + "ffn_down.weight", dims: [128, 64], type: 8 },
    );
  }
  return { meta, tensors };
}

describe("Qwen2 config", () => {
  it("reads every value from the file", () => {
    const { meta, tensors } = model();
    const c = parseQwen2Config(meta, tensors);
    expect(c).toMatchObject({
      hidden: 64, nLayers: 2, nHeads: 4, nKVHeads: 2, headDim: 16, ffn: 128, vocabSize: 300,
      contextLength: 32768, ropeBase: 1000000, tiedEmbeddings: true, ropeScaling: { type: "none" },
    });
    expect(c.eps).toBeCloseTo(1e-5, 12); // Qwen2-72B's value, read from the file
  });

  it("keeps YaRN rope scaling", () => {
    const { meta, tensors } = model({
      "qwen2.rope.scaling.type": kv.string("yarn"),
      "qwen2.rope.scaling.factor": kv.f32(4),
      "qwen2.rope.scaling.original_context_length": kv.u32(32768),
    });
    expect(parseQwen2Config(meta, tensors).ropeScaling).toEqual({ type: "yarn", factor: 4, originalContextLength: 32768 });
  });

  it("refuses other architectures, naming the supported ones (qwen2moe: test/model/moe-config.test.ts)", () => {
    const llama = model({ "general.architecture": kv.string("llama") });
    expect(() => parseQwen2Config(llama.meta, llama.tensors)).toThrowError(expect.objectContaining({ code: "MODEL_UNSUPPORTED" }));
  });

  it("names a missing key", () => {
    const { meta, tensors } = model({ "qwen2.attention.layer_norm_rms_epsilon": undefined });
    expect(() => parseQwen2Config(meta, tensors)).toThrow(/layer_norm_rms_epsilon/);
  });

  it("maps tensors, per-tensor types, tied and untied heads", () => {
    const tied = model();
    const mapTied = mapQwen2Tensors(parseQwen2Config(tied.meta, tied.tensors), tied.tensors);
    expect(mapTied.output.name).toBe("token_embd.weight");
    expect(mapTied.layers[1].v.type).toBe(8);
    const untied = model({}, false);
    const mapUntied = mapQwen2Tensors(parseQwen2Config(untied.meta, untied.tensors), untied.tensors);
    expect(mapUntied.output.name).toBe("output.weight");
    expect(mapUntied.output.type).toBe(14);
  });

  it("names a wrong shape, a missing tensor and an unsupported type", () => {
    const bad = model();
    bad.tensors.find((t) => t.name === "blk.1.attn_k.weight")!.dims = [64, 64];
    expect(() => mapQwen2Tensors(parseQwen2Config(bad.meta, bad.tensors), bad.tensors))
      .toThrow(/blk\.1\.attn_k\.weight has shape \[64, 64\], expected \[64, 32\]/);
    const missing = model();
    missing.tensors.splice(missing.tensors.findIndex((t) => t.name === "blk.0.ffn_up.weight"), 1);
    expect(() => mapQwen2Tensors(parseQwen2Config(missing.meta, missing.tensors), missing.tensors))
      .toThrow(/blk\.0\.ffn_up\.weight is missing/);
    const iq = model();
    iq.tensors.find((t) => t.name === "blk.0.ffn_gate.weight")!.type = 21;
    expect(() => mapQwen2Tensors(parseQwen2Config(iq.meta, iq.tensors), iq.tensors)).toThrow(/IQ3_S.*supported/);
  });
});
