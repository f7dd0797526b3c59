// The forward pass on the project's own synthetic models, against an independent scalar float64
// implementation (test/reference), with no fixtures needed: every weight type synth writes, the KV
// cache (decode vs one-shot prefill), chunked prefill, and bit-identical logits for 1-4 workers.
import { describe, expect, it } from "vitest";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2, synthQwen2Mix, SYNTH_TYPES, type SynthType } from "../../tools/synth";
import { loadQwen2, prefill } from "../../compute/model/model";
import { ReferenceQwen2 } from "../reference/qwen2-reference";
import { differingBits, relDiff, tolerance, prompt } from "./helpers";

const vocabulary = await readQwen2Vocabulary();

async function tinyModel(type: SynthType, seed = 7): Promise<Uint8Array> {
  return writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type, seed }));
}

describe("synthetic models vs the scalar float64 reference", () => {
  for (const type of SYNTH_TYPES) {
    it(`${type}: logits at every position`, async () => {
      const bytes = await tinyModel(type);
      const tokens = prompt(24);
      const reference = await ReferenceQwen2.load(parseGGUFBytes(bytes));
      const expected = reference.logits(tokens);
      const model = await loadQwen2(bytes, { threads: 1, contextLength: 64, maxTokens: 32 });
      const vocab = model.config.vocabSize;
      const all = await model.forward.step(tokens, 0, true);
      const tol = tolerance(type);
      let worst = { rel: 0, rms: 0, pos: 0 };
      for (let pos = 0; pos < tokens.length; pos++) {
        const d = relDiff(all.subarray(pos * vocab, (pos + 1) * vocab), expected[pos]);
        if (d.rel > worst.rel) worst = { ...d, pos };
        expect(d.rel, `${type} position ${pos}: max |Δ|/std`).toBeLessThanOrEqual(tol.max);
        expect(d.rms, `${type} position ${pos}: rms(Δ)/std`).toBeLessThanOrEqual(tol.rms);
      }
      console.log(`synthetic ${type}: worst max|Δ|/std ${worst.rel.toExponential(2)} at position ${worst.pos}`);
      await model.dispose();
    });
  }

  it("logits spread like a real model's (std of a few units)", async () => {
    const model = await loadQwen2(await tinyModel("F32"), { threads: 1, contextLength: 32, maxTokens: 16 });
    const logits = await model.forward.step(prompt(8), 0);
    const { rel } = relDiff(new Float32Array(logits.length), logits); // max|logit - 0| / std, not used
    const mean = logits.reduce((a, b) => a + b, 0) / logits.length;
    const std = Math.sqrt(logits.reduce((a, b) => a + (b - mean) ** 2, 0) / logits.length);
    console.log(`synthetic F32 logits: std ${std.toFixed(2)}, max/std ${rel.toFixed(1)}`);
    expect(std).toBeGreaterThan(1);
    expect(std).toBeLessThan(20);
    await model.dispose();
  });
});

describe("the KV cache and prefill chunks", () => {
  it("decoding token by token gives the logits of a one-shot prefill", async () => {
    const bytes = await tinyModel("Q8_0");
    const tokens = prompt(20);
    const oneShot = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 32 });
    const all = await oneShot.forward.step(tokens, 0, true);
    const vocab = oneShot.config.vocabSize;
    const stepwise = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 32 });
    await prefill(stepwise.forward, tokens.slice(0, 12));
    for (let pos = 12; pos < tokens.length; pos++) {
      const logits = await stepwise.forward.step([tokens[pos]], pos);
      const d = relDiff(logits, all.subarray(pos * vocab, (pos + 1) * vocab));
      expect(d.rel, `position ${pos}`).toBeLessThan(1e-5);
    }
    await oneShot.dispose();
    await stepwise.dispose();
  });

  it("chunked prefill equals one-shot prefill", async () => {
    const bytes = await tinyModel("Q4_0");
    const tokens = prompt(23);
    const a = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 32 });
    const b = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 5 });
    const whole = await a.forward.step(tokens, 0, true);
    const chunked = await prefill(b.forward, tokens, 0, true);
    expect(relDiff(chunked, whole).rel).toBeLessThan(1e-5);
    await a.dispose();
    await b.dispose();
  });

  it("refuses positions past the context and token ids outside the vocabulary", async () => {
    const model = await loadQwen2(await tinyModel("F16"), { threads: 1, contextLength: 8, maxTokens: 8 });
    await expect(model.forward.step([1, 2, 3], 6)).rejects.toMatchObject({ code: "CONTEXT_OVERFLOW" });
    await expect(model.forward.step([100000], 0)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await model.dispose();
  });
});

describe("worker pool", () => {
  // A decode token is cut into ranges of its rows when there are fewer tokens than workers, and the
  // q/k/v, gate/up items carry the bias, RoPE, KV store, SwiGLU and conversions of their rows: Q4_1
  // (q8_1 inputs, 32-value blocks; o converted inside the attention items), and a K-quant mix at
  // hidden 256 with 64-wide heads (q8_K inputs in 256-value blocks: a run of two heads is not whole
  // blocks, so o's conversion is an op of its own).
  const models: [string, () => Promise<Uint8Array>][] = [
    ["tiny Q4_1", () => tinyModel("Q4_1")],
    ["Q4_K_M, hidden 256, 4 heads of 64", () => writeGGUFBytes(synthQwen2Mix({
      shape: { ...QWEN2_PRESETS.tiny, hidden: 256, ffn: 512, heads: 4, kvHeads: 2 }, vocabulary, mix: "Q4_K_M", seed: 3,
    }))],
  ];
  for (const [name, make] of models) {
    it(`${name}: logits are bit-identical for 1, 2, 3 and 4 workers (prefill, decode, two sequences in a step)`, async () => {
      const bytes = await make();
      const tokens = prompt(19);
      const results: Float32Array[] = [];
      for (const threads of [1, 2, 3, 4]) {
        const model = await loadQwen2(bytes, { threads, oversubscribe: true, contextLength: 32, maxTokens: 32, maxSequences: 2 });
        expect(model.forward.threads).toBe(threads);
        const f = model.forward;
        const all = await f.step(tokens, 0, true);
        const next = await f.step([5], tokens.length);
        // A second sequence on the pool's last pages, decoded beside the first in one step.
        const table = Array.from({ length: f.layout.pagesPerSequence }, (_, i) => f.layout.kvPages - 1 - i);
        await f.run([7, 8, 9], [{ tokenStart: 0, nTok: 3, pos0: 0, table }], [2]);
        const both = await f.run([6, 10], [{ tokenStart: 0, nTok: 1, pos0: tokens.length + 1, table: Array.from({ length: f.layout.pagesPerSequence }, (_, i) => i) },
          { tokenStart: 1, nTok: 1, pos0: 3, table }], [0, 1]);
        const joined = new Float32Array(all.length + next.length + both.length);
        joined.set(all);
        joined.set(next, all.length);
        joined.set(both, all.length + next.length);
        results.push(joined);
        await model.dispose();
      }
      expect(results).toHaveLength(4);
      for (let i = 1; i < results.length; i++) {
        expect(results[i].length).toBe(results[0].length);
        expect(differingBits(results[0], results[i]), `${i + 1} workers vs 1: differing logits`).toBe(0);
      }
    });
  }
});

describe("memory", () => {
  it("refuses a layout past 4 GiB before allocating, with the numbers", async () => {
    const bytes = await tinyModel("Q4_0");
    await expect(loadQwen2(bytes, { threads: 1, contextLength: 32768, maxSequences: 512, kvPages: 512 * 2048 }))
      .rejects.toMatchObject({ code: "OUT_OF_MEMORY", message: expect.stringMatching(/needs .* GiB .*KV cache .* GiB/) });
  });
});
