// The memory a model takes is planned before anything is allocated (compute/model/model.ts planModel):
// the plan must be what the load then allocates, the default KV pool must fit the 4 GiB memory,
// and a KV pool smaller than one context is refused.
import { describe, expect, it } from "vitest";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { layoutGGUF, writeGGUFBytes } from "../../weights/gguf/writer";
import { parseQwen2Config, mapQwen2Tensors } from "../../weights/qwen2";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { loadQwen2, planModel, type LoadOptions } from "../../compute/model/model";
import { createEngine } from "../../engine/engine";
import { virtualFile } from "./helpers";

const vocabulary = await readQwen2Vocabulary();
const tiny = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 1 }));
// Head size 32, for a q8_0 KV cache.
const tiny32 = await writeGGUFBytes(synthQwen2({ shape: { ...QWEN2_PRESETS.tiny, heads: 2, kvHeads: 1 }, vocabulary, type: "Q4_0", seed: 2 }));

describe("memory plan", () => {
  const configs: LoadOptions[] = [
    { threads: 1, contextLength: 64 },
    { threads: 2, contextLength: 256, maxSequences: 4 },
    { threads: 3, contextLength: 512, maxSequences: 8, kvType: "f16" },
    { threads: 2, contextLength: 128, maxSequences: 2, kvType: "q8_0", maxTokens: 16 },
    { threads: 4, contextLength: 1000, maxSequences: 3, pageSize: 32, kvPages: 100, maxTokens: 100 },
    { threads: 1, contextLength: 48, maxSequences: 1, pageSize: 8, oversubscribe: true },
  ];
  it("is exactly what loading allocates, for a spread of threads, contexts, sequences and KV types", async () => {
    let compared = 0;
    for (const options of configs) {
      const opts = { ...options, oversubscribe: true };
      const bytes = options.kvType === "q8_0" ? tiny32 : tiny;
      const file = parseGGUFBytes(bytes);
      const config = parseQwen2Config(file.metadata, file.tensors);
      const plan = await planModel(file, config, mapQwen2Tensors(config, file.tensors), opts);
      const model = await loadQwen2(bytes, opts);
      try {
        expect(plan.bytes, JSON.stringify(options)).toBe(model.arena.used);
        expect(plan.kvPages).toBe(model.forward.kvPages);
        expect(plan.weightBytes + plan.kvBytes + plan.otherBytes).toBe(plan.bytes);
        // The memory is created at its final size: nothing grows during the load.
        expect(model.arena.memory.buffer.byteLength).toBe(Math.ceil(plan.bytes / 65536) * 65536);
        compared++;
      } finally {
        await model.dispose();
      }
    }
    expect(compared).toBe(configs.length);
  });

  it("refuses a KV pool smaller than one sequence's context, saying how many pages it needs", async () => {
    await expect(loadQwen2(tiny, { threads: 1, contextLength: 64, pageSize: 16, kvPages: 3 }))
      .rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/kvPages 3 .*needs 4 pages/) });
    const model = await loadQwen2(tiny, { threads: 1, contextLength: 64, pageSize: 16, kvPages: 4 });
    // Positions 48..63 live in page 3 (no aliasing onto an earlier page).
    const logits = await model.forward.step([1, 2, 3], 61);
    expect(logits.length).toBe(model.config.vocabSize);
    await model.dispose();
  });

  it("refuses a model bigger than the host's RAM before reading its weights, with the numbers", async () => {
    // 7B-shape Q8_0 (over several memories) on a host with 6 GiB free: refused from the header (no
    // tensor byte is read, no memory allocated).
    const layout = layoutGGUF(synthQwen2({ shape: "7b", vocabulary, type: "Q8_0" }));
    let tensorReads = 0;
    const hostMemory = { available: 6 * 2 ** 30, total: 8 * 2 ** 30, source: "test" };
    await expect(loadQwen2(virtualFile(layout.header, layout.fileSize, layout.dataOffset, () => tensorReads++), { threads: 1, hostMemory }))
      .rejects.toMatchObject({ code: "INSUFFICIENT_MEMORY", message: expect.stringMatching(/weights 7\.\d\d GiB.*6\.00 GiB free of 8\.00 GiB/) });
    expect(tensorReads).toBe(0);
  });

  it("loads the 1.5B shape in F16 with createEngine's defaults (the KV pool shrinks to what fits)", async () => {
    // A virtual file: the real header of a 1.5B-shape F16 model, zeros for the 3.1 GB of weights.
    const layout = layoutGGUF(synthQwen2({ shape: "1.5b", vocabulary, type: "F16" }));
    const engine = await createEngine(virtualFile(layout.header, layout.fileSize, layout.dataOffset));
    try {
      const f = engine.model.forward;
      const shape = QWEN2_PRESETS["1.5b"];
      expect(f.contextLength).toBe(4096);
      expect(f.kvPages).toBeGreaterThanOrEqual(f.contextLength / f.pageSize);
      expect(f.kvPages).toBeLessThan(8 * (f.contextLength / f.pageSize)); // the full default (8 contexts) does not fit
      expect(engine.model.arena.used).toBeLessThanOrEqual(4 * 2 ** 30);
      expect(engine.model.config.nLayers).toBe(shape.layers);
      const { tokens } = await engine.generateTokens([1, 2, 3], { maxTokens: 2, ignoreEos: true });
      expect(tokens.length).toBe(2);
    } finally {
      await engine.dispose();
    }
  });
});

