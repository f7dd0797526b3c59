// A GGUF whose tokenizer lists a different number of tokens than token_embd has rows is refused at
// load, as llama.cpp refuses it (it builds token_embd as {n_embd, n_tokens}): with fewer tokens, the
// first sampled id past the tokenizer could not be turned into text; with more, a prompt token would
// have no embedding. Synthetic models (any --vocab) and files that agree still load.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2, type SynthModel } from "../../tools/synth";
import { createEngine } from "../../engine/engine";
import { loadQwen2 } from "../../compute/model/model";
import { FIXTURES_DIR, fixturesAvailable } from "../fixtures";

const vocabulary = await readQwen2Vocabulary();

/** The tiny synthetic model's weights (512 BPE tokens + 3 specials = 515 rows) with the tokenizer of another vocabulary size. */
async function withTokenizerOf(keep: number): Promise<Uint8Array> {
  const model: SynthModel = synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 2 });
  const other = synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, vocab: keep }, vocabulary, type: "Q8_0", seed: 2 });
  model.metadata = model.metadata.map(([key, entry]) =>
    [key, key.startsWith("tokenizer.ggml.") ? other.metadata.find(([k]) => k === key)![1] : entry]);
  return writeGGUFBytes(model);
}

describe("tokenizer size against the embedding rows", () => {
  it("refuses fewer tokens than rows, naming both counts", async () => {
    // A well-formed tokenizer of 509 + 3 tokens: ids 512..514 have rows but no text.
    const bytes = await withTokenizerOf(509);
    const error = await createEngine(bytes, { threads: 1, contextLength: 64 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "MODEL_INVALID" });
    expect((error as Error).message).toMatch(/tokenizer\.ggml\.tokens has 512 entries but token_embd\.weight has 515 rows/);
    // The lower-level loader refuses it too (every surface goes through it).
    await expect(loadQwen2(bytes, { threads: 1, contextLength: 64 })).rejects.toMatchObject({ code: "MODEL_INVALID" });
  });

  it("refuses more tokens than rows", async () => {
    await expect(createEngine(await withTokenizerOf(600), { threads: 1, contextLength: 64 }))
      .rejects.toThrow(/tokenizer\.ggml\.tokens has 603 entries but token_embd\.weight has 515 rows/);
  });

  it("loads synthetic models of any kept vocabulary, and the padded full one", async () => {
    for (const vocab of [256, 300, 512]) {
      const bytes = await writeGGUFBytes(synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, layers: 1, vocab }, vocabulary, type: "Q8_0", seed: 1 }));
      const engine = await createEngine(bytes, { threads: 1, contextLength: 64 });
      expect(engine.model.config.vocabSize, `--vocab ${vocab}`).toBe(vocab + 3);
      expect((await engine.generateTokens([1, 2, 3], { maxTokens: 2, ignoreEos: true })).tokens).toHaveLength(2);
      await engine.dispose();
    }
    // No kept subset: every BPE token, the specials, then [PAD{id}] up to the 151936 rows.
    const padded = synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, layers: 1, vocab: undefined, hidden: 32, heads: 2, kvHeads: 1, ffn: 32 }, vocabulary, type: "Q8_0" });
    expect(padded.nVocab).toBe(151936);
    const engine = await createEngine(await writeGGUFBytes(padded), { threads: 1, contextLength: 32, maxSequences: 1 });
    expect(engine.model.config.vocabSize).toBe(151936);
    await engine.dispose();
  });

  it.skipIf(!fixturesAvailable)("loads llama.cpp's fixtures (4099 tokens, 4099 rows; skipped without ../shared/fixtures)", async () => {
    const engine = await createEngine(join(FIXTURES_DIR, "mini/Q8_0-pure.gguf"), { threads: 1, contextLength: 64 });
    expect(engine.model.config.vocabSize).toBe(4099);
    await engine.dispose();
  });
});
