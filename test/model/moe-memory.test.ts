// The memory plan of a qwen2moe model (compute/model/model.ts planModel, the MoE scratch laid out by
// planForward through compute/model/moe.ts): exactly what loading allocates; the real shapes refused from
// the header, with the numbers, when they pass the host's memory; moe-a2.7b fits with --layers.
import { describe, expect, it } from "vitest";
import { openGGUF, parseGGUFBytes, type GGUFFile } from "../../weights/gguf/reader";
import { layoutGGUF, writeGGUFBytes } from "../../weights/gguf/writer";
import { mapQwen2Tensors, parseQwen2Config } from "../../weights/qwen2";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { loadQwen2, planModel, type LoadOptions } from "../../compute/model/model";
import { virtualFile } from "./helpers";

const vocabulary = await readQwen2Vocabulary();

async function plan(file: GGUFFile, options: LoadOptions) {
  const config = parseQwen2Config(file.metadata, file.tensors);
  return planModel(file, config, mapQwen2Tensors(config, file.tensors), options);
}

/** The header of a synthetic model of `shape` (no weight is generated), as an open file of zeros. */
async function headerOnly(shape: Parameters<typeof synthQwen2>[0]["shape"], onTensorRead?: () => void): Promise<GGUFFile> {
  const layout = layoutGGUF(synthQwen2({ shape, vocabulary, type: "Q4_0" }));
  return openGGUF(virtualFile(layout.header, layout.fileSize, layout.dataOffset, onTensorRead));
}

describe("qwen2moe memory plan", () => {
  it("is exactly what loading allocates (threads, step sizes, sequences)", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny-moe", vocabulary, type: "Q8_0", seed: 1 }));
    const configs: LoadOptions[] = [
      { threads: 1, contextLength: 64 },
      { threads: 2, contextLength: 128, maxSequences: 4, maxTokens: 16 },
      { threads: 3, contextLength: 256, maxSequences: 2, maxTokens: 100, kvType: "f16" },
    ];
    let compared = 0;
    for (const options of configs) {
      const opts = { ...options, oversubscribe: true };
      const p = await plan(parseGGUFBytes(bytes), opts);
      const model = await loadQwen2(bytes, opts);
      try {
        expect(p.bytes, JSON.stringify(options)).toBe(model.arena.used);
        expect(model.arena.memory.buffer.byteLength).toBe(Math.ceil(p.bytes / 65536) * 65536);
        compared++;
      } finally {
        await model.dispose();
      }
    }
    expect(compared).toBe(configs.length);
  });

  it("refuses 57b-a14b and a full moe-a2.7b in Q4_0 from the header on a host with 4 GiB free, before reading a weight", async () => {
    for (const [shape, weights] of [["57b-a14b", /weights 3\d\.\d\d GiB/], ["moe-a2.7b", /weights 7\.\d\d GiB/]] as const) {
      let tensorReads = 0;
      const file = await headerOnly(shape, () => tensorReads++);
      await expect(loadQwen2(file, { threads: 1, hostMemory: { available: 4 * 2 ** 30, source: "test" } }), shape).rejects.toMatchObject({
        code: "INSUFFICIENT_MEMORY", message: expect.stringMatching(weights),
      });
      expect(tensorReads, shape).toBe(0);
    }
  });

  it("moe-a2.7b with --layers 8 fits one memory; its MoE scratch is part of the plan", async () => {
    const shape = { ...QWEN2_PRESETS["moe-a2.7b"], layers: 8 };
    const small = await plan(await headerOnly(shape), { threads: 2, contextLength: 1024, maxTokens: 64, oversubscribe: true });
    const big = await plan(await headerOnly(shape), { threads: 2, contextLength: 1024, maxTokens: 128, oversubscribe: true });
    expect(small.bytes).toBeLessThanOrEqual(4 * 2 ** 30);
    expect(small.weightBytes).toBeGreaterThan(2.5 * 2 ** 30);
    // 64 more tokens a step: at least the grouped expert rows (64 × 4 slots × (2 × 1408 + 2048) f32)
    expect(big.otherBytes - small.otherBytes).toBeGreaterThan(64 * 4 * (2 * 1408 + 2048) * 4);
  });
});

