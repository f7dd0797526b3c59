// A compute worker that dies must not hang a step: the step fails with WORKER_FAILED within a
// bound, the pool is rebuilt over the same memory, and the next step gives the right logits.
import { describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { loadQwen2 } from "../../compute/model/model";

const vocabulary = await readQwen2Vocabulary();
// Big enough that a 128-token step takes a while, small enough to build quickly.
const bytes = await writeGGUFBytes(synthQwen2({
  shape: { ...QWEN2_PRESETS.tiny, hidden: 256, layers: 4, ffn: 1024 }, vocabulary, type: "Q8_0", seed: 2,
}));
const prompt = Array.from({ length: 128 }, (_, i) => (i * 37) % 500);

describe("dead workers", () => {
  it("a worker terminated before or during a step fails that step quickly; the pool is rebuilt", async () => {
    const reference = await loadQwen2(bytes, { threads: 1, contextLength: 256, maxTokens: 128 });
    const expected = await reference.forward.step(prompt, 0);
    await reference.dispose();

    const model = await loadQwen2(bytes, { threads: 2, contextLength: 256, maxTokens: 128 });
    for (const when of ["before", "during"] as const) {
      const pool = model.forward.workerPool!;
      const t0 = performance.now();
      if (when === "before") await pool.workers[1].terminate();
      const step = model.forward.step(prompt, 0);
      let killed: Promise<unknown> = Promise.resolve();
      if (when === "during") killed = new Promise((resolve) => setTimeout(() => resolve(pool.workers[1].terminate()), 5));
      const outcome = await step.then(() => "finished", (e) => e);
      await killed;
      const elapsed = performance.now() - t0;
      console.log(`worker killed ${when} the step: ${outcome === "finished" ? "the step finished first" : outcome.message} (${elapsed.toFixed(0)} ms)`);
      if (when === "before" || outcome !== "finished") {
        expect(outcome).toMatchObject({ code: "WORKER_FAILED" });
        expect(elapsed).toBeLessThan(5000);
      }
      // The pool was rebuilt: the next step is right. When the step finished before the kill (the
      // timer waits for the main thread, which computes too), the pool meets the dead worker at the
      // next step, which fails as above; the one after it is right.
      let logits: Float32Array;
      if (outcome === "finished") {
        const next = await model.forward.step(prompt, 0).then((l) => l, (e) => e);
        if (!(next instanceof Float32Array)) expect(next).toMatchObject({ code: "WORKER_FAILED" });
        logits = next instanceof Float32Array ? next : await model.forward.step(prompt, 0);
      } else {
        logits = await model.forward.step(prompt, 0);
      }
      expect(model.forward.threads).toBe(2);
      expect(Array.from(logits)).toEqual(Array.from(expected));
    }
    await model.dispose();
  });
});
