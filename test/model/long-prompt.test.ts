// A long prompt (1500 tokens, a small synthetic model with Qwen2-0.5B's GQA: query heads sharing KV
// heads) gives the same next-token logits prefilled in one chunk, in chunks of 512 (the flash
// kernel from pos0 > 0: bit for bit), and in chunks of 7 tokens (below FLASH_MIN_TOKENS, as a decode token: with
// an f32 cache the non-flash attention_paged_* kernel, within the f32 tolerance; with f16 and q8_0
// the flash kernel per run of query heads, whose rows depend on nothing but their query and the
// keys: bit for bit), for every KV cache type.
import { describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { FLASH_MIN_TOKENS } from "../../compute/model/forward";
import { loadQwen2, prefill } from "../../compute/model/model";
import { prompt, relDiff, tolerance } from "./helpers";

const vocabulary = await readQwen2Vocabulary();
// head size 32 (a q8_0 cache needs a multiple of 32), 8 query heads on 2 KV heads
const bytes = await writeGGUFBytes(synthQwen2({
  shape: { ...QWEN2_PRESETS.tiny, hidden: 256, heads: 8, kvHeads: 2, ffn: 256, layers: 2 }, vocabulary, type: "F32", seed: 11,
}));
const N = 1500;

describe("a long prompt in one chunk or in chunks", () => {
  for (const kvType of ["f32", "f16", "q8_0"] as const) {
    it(`${kvType} KV cache: ${N} tokens at once, in chunks of 512 and in chunks of 7: the same next-token logits`, async () => {
      expect(7).toBeLessThan(FLASH_MIN_TOKENS);
      const tokens = prompt(N, 5);
      const run = async (maxTokens: number) => {
        const model = await loadQwen2(bytes, { threads: 2, oversubscribe: true, contextLength: 1536, maxTokens, kvType });
        try {
          return await prefill(model.forward, tokens);
        } finally {
          await model.dispose();
        }
      };
      const whole = await run(N);
      const chunked = await run(512);
      const small = await run(7);
      expect(whole.length).toBe(chunked.length);
      const tol = tolerance("F32");
      expect(chunked, "chunks of 512 (flash) vs one chunk: bit for bit").toEqual(whole);
      if (kvType !== "f32") expect(small, "chunks of 7 (flash per head run) vs one chunk: bit for bit").toEqual(whole);
      for (const [what, other] of [["chunks of 512", chunked], [kvType === "f32" ? "chunks of 7 (non-flash)" : "chunks of 7", small]] as const) {
        const d = relDiff(other, whole);
        console.log(`${kvType}: ${what} vs one chunk: max|Δ|/std ${d.rel.toExponential(2)}, rms ${d.rms.toExponential(2)}`);
        expect(d.rel, `${what}: max |Δ|/std`).toBeLessThanOrEqual(tol.max);
        expect(d.rms, `${what}: rms(Δ)/std`).toBeLessThanOrEqual(tol.rms);
      }
    }, 120_000);
  }
});
