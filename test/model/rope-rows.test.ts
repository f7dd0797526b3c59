// The RoPE rows a step hands the kernels (state.cosSin: headDim floats per token) come from
// Qwen2Forward's cache of blocks of 256 positions, filled in whatever order steps reach them: they
// must be, bit for bit, what ropeCosSin computes for the step's own positions (the kernels' input
// before the cache), across block boundaries, for steps of several sequences, and for a model whose
// config has YaRN scaling.
import { describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { loadQwen2 } from "../../compute/model/model";
import { ropeCosSin, ropeYarnCorrDims } from "../../compute/model/rope";

const vocabulary = await readQwen2Vocabulary();
const bytes = await writeGGUFBytes(synthQwen2({
  shape: { ...QWEN2_PRESETS.tiny, hidden: 128, heads: 4, kvHeads: 2, ffn: 128, layers: 1 }, vocabulary, type: "F32", seed: 3,
}));

describe("the RoPE rows of a step", () => {
  it("are ropeCosSin's bits for the step's positions, whichever blocks earlier steps filled", async () => {
    const model = await loadQwen2(bytes, { threads: 1, contextLength: 1100, maxTokens: 64, maxSequences: 2 });
    try {
      const f = model.forward;
      const c = model.config;
      const hd = c.headDim;
      // pos0 first reaching block 3, then blocks 0/1 across their boundary, then single positions
      // at the edges of blocks, then one step of two sequences at unrelated positions
      const single: [number, number][] = [[770, 40], [230, 60], [255, 1], [256, 1], [511, 1], [512, 1], [1099, 1], [0, 1]];
      let compared = 0;
      const check = (positions: number[]) => {
        const got = new Float32Array(model.arena.memory.buffer, f.layout.state.cosSin, positions.length * hd).slice();
        const want = ropeCosSin(positions, hd, c.ropeBase, new Float32Array(positions.length * hd));
        expect(new Uint32Array(got.buffer)).toEqual(new Uint32Array(want.buffer));
        compared += positions.length;
      };
      for (const [pos0, n] of single) {
        await f.step(Array.from({ length: n }, (_, i) => 100 + i), pos0);
        check(Array.from({ length: n }, (_, i) => pos0 + i));
      }
      const pages = Math.ceil(1100 / f.pageSize);
      await f.run([1, 2, 3, 4, 5], [
        { tokenStart: 0, nTok: 3, pos0: 254, table: Array.from({ length: pages }, (_, p) => p) },
        { tokenStart: 3, nTok: 2, pos0: 900, table: Array.from({ length: pages }, (_, p) => p) },
      ], [2, 4]);
      check([254, 255, 256, 900, 901]);
      expect(compared).toBe(40 + 60 + 6 + 5);
    } finally {
      await model.dispose();
    }
  });

  it("with YaRN scaling: the scaled rows, bit for bit", () => {
    // the cache calls ropeCosSin per block of positions; a row depends only on its position, so a
    // block's rows are the per-position rows for any scaling: checked here for YaRN's full set
    const hd = 64, base = 1e6;
    const scaling = { freqScale: 0.25, extFactor: 1, attnFactor: 1, corrDims: ropeYarnCorrDims(hd, 32768, base, 32, 1) };
    const block = ropeCosSin(Int32Array.from({ length: 256 }, (_, i) => 512 + i), hd, base, new Float32Array(256 * hd), scaling);
    for (const p of [512, 600, 767]) {
      const one = ropeCosSin([p], hd, base, new Float32Array(hd), scaling);
      expect(new Uint32Array(block.buffer, 4 * (p - 512) * hd, hd)).toEqual(new Uint32Array(one.buffer));
    }
  });
});
