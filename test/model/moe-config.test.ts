// The qwen2moe config and tensor map: the expert keys (with llama.cpp's fallbacks), the 3-D expert
// tensors, the F32 router and shared gate ({H} or {H, 1}), output.weight required; every missing or
// inconsistent piece is refused with a typed error that names it.
import { describe, expect, it } from "vitest";
import { GGUFMetadata, kv, type GGUFEntry } from "../../weights/gguf/metadata";
import { layerTensorList, mapQwen2Tensors, parseQwen2Config, type TensorDesc } from "../../weights/qwen2";

const H = 64, E = 4, K = 2, FE = 32, FS = 96, V = 300;

/** A small qwen2moe: metadata and tensor descriptions, with key overrides (undefined removes). */
function moeModel(overrides: Record<string, GGUFEntry | undefined> = {}) {
  const entries: Record<string, GGUFEntry | undefined> = {
    "general.architecture": kv.string("qwen2moe"),
    "general.name": kv.string("moe test"),
    "qwen2moe.block_count": kv.u32(2),
    "qwen2moe.context_length": kv.u32(4096),
    "qwen2moe.embedding_length": kv.u32(H),
    "qwen2moe.feed_forward_length": kv.u32(160),
    "qwen2moe.attention.head_count": kv.u32(4),
    "qwen2moe.attention.head_count_kv": kv.u32(2),
    "qwen2moe.rope.freq_base": kv.f32(1000000),
    "qwen2moe.attention.layer_norm_rms_epsilon": kv.f32(1e-6),
    "qwen2moe.expert_count": kv.u32(E),
    "qwen2moe.expert_used_count": kv.u32(K),
    "qwen2moe.expert_feed_forward_length": kv.u32(FE),
    "qwen2moe.expert_shared_feed_forward_length": kv.u32(FS),
    ...overrides,
  };
  const meta = new GGUFMetadata(Object.entries(entries).filter(([, v]) => v !== undefined) as [string, GGUFEntry][]);
  const tensors: TensorDesc[] = [
    { name: "token_embd.weight", dims: [H, V], type: 8 },
    { name: "output_norm.weight", dims: [H], type: 0 },
    { name: "output.weight", dims: [H, V], type: 14 },
  ];
  for (let l = 0; l < 2; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      { name: p + "attn_norm.weight", dims: [H], type: 0 },
      { name: p + "attn_q.weight", dims: [H, H], type: 2 }, { name: p + "attn_q.bias", dims: [H], type: 0 },
      { name: p + "attn_k.weight", dims: [H, 32], type: 2 }, { name: p + "attn_k.bias", dims: [32], type: 0 },
      { name: p + "attn_v.weight", dims: [H, 32], type: 8 }, { name: p + "attn_v.bias", dims: [32], type: 0 },
      { name: p + "attn_output.weight", dims: [H, H], type: 2 },
      { name: p + "ffn_norm.weight", dims: [H], type: 0 },
      { name: p + "ffn_gate_inp.weight", dims: [H, E], type: 0 },
      { name: p + "ffn_gate_exps.weight", dims: [H, FE, E], type: 2 },
      { name: p + "ffn_up_exps.weight", dims: [H, FE, E], type: 2 },
      { name: p + "ffn_down_exps.weight", dims: [FE, H, E], type: 8 },
      { name: p + "ffn_gate_inp_shexp.weight", dims: l === 0 ? [H, 1] : [H], type: 0 },
      { name: p + "ffn_gate_shexp.weight", dims: [H, FS], type: 2 },
      { name: p + "ffn_up_shexp.weight", dims: [H, FS], type: 2 },
      { name: p + "ffn_down_shexp.weight", dims: [FS, H], type: 8 },
    );
  }
  return { meta, tensors };
}

/** The tensors with one replaced (or removed, with `undefined`). */
function withTensor(tensors: TensorDesc[], name: string, replacement: Partial<TensorDesc> | undefined): TensorDesc[] {
  expect(tensors.some((t) => t.name === name), `${name} is in the test model`).toBe(true);
  return tensors.flatMap((t) => t.name !== name ? [t] : replacement === undefined ? [] : [{ ...t, ...replacement }]);
}

function load(meta: GGUFMetadata, tensors: TensorDesc[]) {
  return mapQwen2Tensors(parseQwen2Config(meta, tensors), tensors);
}

describe("qwen2moe config", () => {
  it("reads the expert layout and the qwen2 keys under the qwen2moe prefix", () => {
    const { meta, tensors } = moeModel();
    const c = parseQwen2Config(meta, tensors);
    expect(c).toMatchObject({
      architecture: "qwen2moe", hidden: H, nLayers: 2, nHeads: 4, nKVHeads: 2, headDim: 16, vocabSize: V,
      ffn: FS, tiedEmbeddings: false, moe: { nExperts: E, nExpertsUsed: K, expertFfn: FE, sharedFfn: FS },
    });
  });

  it("falls back to feed_forward_length / K and feed_forward_length, as llama.cpp does", () => {
    const { meta, tensors } = moeModel({
      "qwen2moe.expert_feed_forward_length": undefined, "qwen2moe.expert_shared_feed_forward_length": undefined,
    });
    expect(parseQwen2Config(meta, tensors).moe).toEqual({ nExperts: E, nExpertsUsed: K, expertFfn: 80, sharedFfn: 160 });
  });

  it("names what is missing or inconsistent", () => {
    const cases: [Record<string, GGUFEntry | undefined>, RegExp][] = [
      [{ "qwen2moe.expert_count": undefined }, /qwen2moe\.expert_count/],
      [{ "qwen2moe.expert_used_count": undefined }, /qwen2moe\.expert_used_count/],
      [{ "qwen2moe.expert_used_count": kv.u32(5) }, /5 experts per token is more than expert_count 4/],
      [{ "qwen2moe.expert_count": kv.u32(0) }, /expert_count.*positive integer/],
      [{ "qwen2moe.feed_forward_length": undefined, "qwen2moe.expert_feed_forward_length": undefined },
        /qwen2moe\.expert_feed_forward_length is missing/],
      [{ "qwen2moe.feed_forward_length": undefined, "qwen2moe.expert_shared_feed_forward_length": undefined },
        /qwen2moe\.expert_shared_feed_forward_length is missing/],
      // The qwen2 keys must be under the qwen2moe prefix.
      [{ "qwen2moe.embedding_length": undefined, "qwen2.embedding_length": kv.u32(H) }, /qwen2moe\.embedding_length/],
    ];
    for (const [overrides, message] of cases) {
      const { meta, tensors } = moeModel(overrides);
      expect(() => parseQwen2Config(meta, tensors), String(message)).toThrow(message);
      try { parseQwen2Config(meta, tensors); } catch (e) {
        expect(["GGUF_INVALID", "MODEL_INVALID"], String(message)).toContain((e as { code: string }).code);
      }
    }
    expect(cases.length).toBe(7);
  });
});

describe("qwen2moe tensors", () => {
  it("maps the router, the shared expert and the 3-D experts; the shared gate is {H} or {H, 1}", () => {
    const { meta, tensors } = moeModel();
    const t = load(meta, tensors);
    expect(t.output.name).toBe("output.weight");
    expect(t.layers[0].gate.name).toBe("blk.0.ffn_gate_shexp.weight");
    expect(t.layers[0].moe?.sharedGate.dims).toEqual([H, 1]);
    expect(t.layers[1].moe?.sharedGate.dims).toEqual([H]);
    expect(t.layers[1].moe?.downExps.dims).toEqual([FE, H, E]);
    // every tensor of the file is used, the experts included
    const used = new Set([t.tokenEmbd, t.outputNorm, t.output, ...t.layers.flatMap(layerTensorList)].map((x) => x.name));
    expect(used.size).toBe(tensors.length);
  });

  it("refuses missing and misshapen tensors with their name and shapes", () => {
    const { meta, tensors } = moeModel();
    const cases: [string, Partial<TensorDesc> | undefined, string, RegExp][] = [
      ["output.weight", undefined, "MODEL_INVALID", /output\.weight is missing.*qwen2moe/],
      ["blk.1.ffn_gate_exps.weight", undefined, "MODEL_INVALID", /blk\.1\.ffn_gate_exps\.weight is missing \(expected shape \[64, 32, 4\]\)/],
      ["blk.0.ffn_gate_inp.weight", undefined, "MODEL_INVALID", /ffn_gate_inp\.weight is missing/],
      ["blk.0.ffn_gate_inp_shexp.weight", undefined, "MODEL_INVALID", /ffn_gate_inp_shexp\.weight is missing \(expected shape \[64\] or \[64, 1\]\)/],
      ["blk.0.ffn_down_shexp.weight", undefined, "MODEL_INVALID", /ffn_down_shexp\.weight is missing/],
      ["blk.0.ffn_up_exps.weight", { dims: [H, FE, E - 1] }, "MODEL_INVALID", /ffn_up_exps\.weight has shape \[64, 32, 3\], expected \[64, 32, 4\]/],
      ["blk.0.ffn_up_exps.weight", { dims: [H, FE * E] }, "MODEL_INVALID", /has shape \[64, 128\], expected \[64, 32, 4\]/],
      ["blk.1.ffn_down_exps.weight", { dims: [H, FE, E] }, "MODEL_INVALID", /ffn_down_exps\.weight has shape \[64, 32, 4\], expected \[32, 64, 4\]/],
      ["blk.0.ffn_gate_inp.weight", { dims: [H, E + 1] }, "MODEL_INVALID", /ffn_gate_inp\.weight has shape \[64, 5\], expected \[64, 4\]/],
      ["blk.0.ffn_gate_inp_shexp.weight", { dims: [H, 2] }, "MODEL_INVALID", /expected \[64\] or \[64, 1\]/],
      ["blk.0.ffn_gate_inp.weight", { type: 1 }, "MODEL_UNSUPPORTED", /ffn_gate_inp\.weight has type 1 \(F16\).*must be F32/],
      ["blk.0.ffn_gate_inp_shexp.weight", { type: 8 }, "MODEL_UNSUPPORTED", /ffn_gate_inp_shexp\.weight has type 8 \(Q8_0\).*must be F32/],
      ["blk.0.ffn_gate_exps.weight", { type: 23 }, "GGUF_UNSUPPORTED", /ffn_gate_exps\.weight/],
    ];
    for (const [name, replacement, code, message] of cases) {
      const what = `${name} ${JSON.stringify(replacement)}`;
      const changed = withTensor(tensors, name, replacement);
      expect(() => load(meta, changed), what).toThrow(message);
      expect(() => load(meta, changed), what).toThrowError(expect.objectContaining({ code }));
    }
    expect(cases.length).toBe(13);
  });

  it("with fewer experts in the metadata than in the tensors, names the inconsistency", () => {
    const { meta } = moeModel({ "qwen2moe.expert_count": kv.u32(3), "qwen2moe.expert_used_count": kv.u32(2) });
    const { tensors } = moeModel();
    expect(() => load(meta, tensors)).toThrow(/ffn_gate_inp\.weight has shape \[64, 4\], expected \[64, 3\]/);
  });
});
