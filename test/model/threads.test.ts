// How many compute threads a model gets: by default the cores this process may use (Node 20 has no
// navigator.hardwareConcurrency: os.availableParallelism()), and never more than the cores unless
// asked to oversubscribe.
import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { defaultThreads, loadQwen2 } from "../../compute/model/model";

const vocabulary = await readQwen2Vocabulary();
const tiny = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 1 }));
const cores = availableParallelism();

describe("threads", () => {
  it("default to the cores available (os.availableParallelism in Node)", async () => {
    expect(await defaultThreads()).toBe(Math.min(16, cores));
    const model = await loadQwen2(tiny, { contextLength: 32 });
    try {
      expect(model.forward.threads).toBe(Math.min(16, cores));
    } finally {
      await model.dispose();
    }
  });

  it("asked for beyond the cores are capped at the cores, with a warning", async () => {
    const warnings: string[] = [];
    const model = await loadQwen2(tiny, { contextLength: 32, threads: cores + 3, onWarning: (m) => warnings.push(m) });
    try {
      expect(model.forward.threads).toBe(cores);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(new RegExp(`${cores + 3} threads asked for.*${cores} core`));
    } finally {
      await model.dispose();
    }
  });

  it("beyond the cores run when oversubscribe is set, with the same logits", async () => {
    const one = await loadQwen2(tiny, { contextLength: 32, threads: 1 });
    const many = await loadQwen2(tiny, { contextLength: 32, threads: cores + 2, oversubscribe: true, onWarning: () => { throw new Error("no warning expected"); } });
    try {
      expect(many.forward.threads).toBe(cores + 2);
      const ids = [5, 9, 200, 7, 31, 2, 64];
      expect(await many.forward.step(ids, 0, true)).toEqual(await one.forward.step(ids, 0, true));
    } finally {
      await one.dispose();
      await many.dispose();
    }
  });
});
