// A model whose every byte lies past 2 GiB in its WebAssembly memory computes the same logits, bit
// for bit, as the same model laid out from the bottom: no offset (state, weights, KV pages, logits,
// the MoE routing buffers) is ever read as a signed 32-bit integer (`x >> 2`, `x | 0`, an i32
// comparison in a kernel). A 3.3 GiB qwen2moe model once chose experts [0, 0, 0, 0] for every token
// because its routing buffers lay past 2 GiB and were indexed with `offset >> 2` (README, Mixture of
// experts); the fixtures and the small synthetic models all lie below 2 GiB, so only this test reaches
// those offsets. The memory is 2 GiB larger, untouched.
import { describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2, synthQwen2Mix } from "../../tools/synth";
import { loadQwen2, type LoadOptions } from "../../compute/model/model";
import { createEngine } from "../../engine/engine";
import { prompt } from "./helpers";

const vocabulary = await readQwen2Vocabulary();
const HIGH = 2 ** 31 + 65536;

/** Prefill of 11 tokens (every position's logits), then three decode steps: the logits of each step. */
async function run(bytes: Uint8Array, options: LoadOptions): Promise<{ logits: Float32Array[]; experts?: Int32Array; top: number }> {
  const model = await loadQwen2(bytes, { contextLength: 64, maxTokens: 16, ...options });
  try {
    const logits = [await model.forward.step(prompt(11), 0, true)];
    const experts = model.forward.lastExperts()?.experts.slice();
    for (let i = 0; i < 3; i++) logits.push(await model.forward.step([7 + 31 * i], 11 + i));
    return { logits: logits.map((l) => l.slice()), experts, top: model.forward.layout.state.logits };
  } finally {
    await model.dispose();
  }
}

describe("a model laid out past 2 GiB", () => {
  const mixShape = { ...QWEN2_PRESETS.tiny, hidden: 256, ffn: 512, heads: 4, kvHeads: 2, vocab: 513 };
  const cases: [string, () => Promise<Uint8Array>][] = [
    // x4 Q4_0 matrices, a tied Q4_0 head in the file's layout
    ["Q4_0", () => writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q4_0", seed: 11 }))],
    // packed Q8_0 (tied head packed with token_embd)
    ["Q8_0", () => writeGGUFBytes(synthQwen2({ shape: { ...mixShape, vocab: 512 + 1 }, vocabulary, type: "Q8_0", seed: 11 }))],
    // Q4_K, packed Q6_K (the tied head) and Q5_0 edges
    ["Q4_K_M", () => writeGGUFBytes(synthQwen2Mix({ shape: mixShape, vocabulary, mix: "Q4_K_M", seed: 11 }))],
    // qwen2moe: router, top-K, expert grouping, shared expert
    ["qwen2moe Q8_0", () => writeGGUFBytes(synthQwen2({ shape: "tiny-moe", vocabulary, type: "Q8_0", seed: 11 }))],
  ];
  for (const [name, make] of cases) {
    it.for([1, 2])(`${name}, %i thread(s): the logits of a prefill and three decode steps, bit for bit`, async (threads) => {
      const bytes = await make();
      const low = await run(bytes, { threads });
      const high = await run(bytes, { threads, arenaStart: HIGH });
      expect(low.top).toBeLessThan(2 ** 31);
      expect(high.top).toBeGreaterThan(2 ** 31);
      expect(high.experts).toEqual(low.experts);
      if (name.startsWith("qwen2moe")) expect(low.experts!.length).toBeGreaterThan(0);
      expect(high.logits.length).toBe(4);
      high.logits.forEach((l, i) => {
        expect(l.length, `step ${i}`).toBe(low.logits[i].length);
        expect(new Uint32Array(l.buffer), `step ${i}`).toEqual(new Uint32Array(low.logits[i].buffer));
      });
    });
  }

  it("several memories, each laid out past 2 GiB (a MoE model over shards): the same bits", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: { ...QWEN2_PRESETS["tiny-moe"], layers: 3 }, vocabulary, type: "Q4_0", seed: 12 }));
    const low = await run(bytes, { threads: 2 });
    // a shard limit of 60% of the one-memory layout splits it; the same limit, moved up by 2 GiB, past 2 GiB
    const one = await loadQwen2(bytes, { threads: 1, contextLength: 64, maxTokens: 16 });
    const limit = Math.ceil(0.6 * one.arenas[0].used);
    expect(one.arenas.length).toBe(1);
    await one.dispose();
    const high = await run(bytes, { threads: 2, arenaStart: HIGH, maxShardBytes: HIGH + limit });
    const shards = await loadQwen2(bytes, { threads: 1, contextLength: 64, maxTokens: 16, arenaStart: HIGH, maxShardBytes: HIGH + limit });
    expect(shards.arenas.length).toBeGreaterThan(1);
    await shards.dispose();
    expect(high.experts).toEqual(low.experts);
    high.logits.forEach((l, i) => expect(new Uint32Array(l.buffer), `step ${i}`).toEqual(new Uint32Array(low.logits[i].buffer)));
  });

  it("the engine past 2 GiB: eight requests batched, a repeated prefix, the same greedy tokens", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny-moe", vocabulary, type: "Q8_0", seed: 11 }));
    const outputs = async (arenaStart?: number) => {
      const e = await createEngine(bytes, { threads: 2, contextLength: 128, maxSequences: 8, maxTokens: 32, arenaStart });
      try {
        const prompts = Array.from({ length: 8 }, (_, i) => prompt(5 + 7 * i, 100 + i));
        const together = await Promise.all(prompts.map((p) => e.generateTokens(p, { maxTokens: 12, ignoreEos: true }).result));
        const again = await e.generateTokens(prompts[7], { maxTokens: 12, ignoreEos: true }).result;
        expect(e.kvStats()).toMatchObject({ inUse: 0, running: 0, waiting: 0 });
        return [...together.map((r) => r.tokens), again.tokens];
      } finally {
        await e.dispose();
      }
    };
    const low = await outputs();
    expect(low.length).toBe(9);
    expect(low[8]).toEqual(low[7]);
    expect(await outputs(HIGH)).toEqual(low);
  });

  it("refuses a start that is not a whole 64 KiB page below 4 GiB", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q4_0", seed: 11 }));
    for (const arenaStart of [1000, 0, 2 ** 32, 65536.5]) {
      await expect(loadQwen2(bytes, { threads: 1, arenaStart }), `${arenaStart}`).rejects.toThrow(/arena starts at a multiple of 65536 bytes/);
    }
  });
});
