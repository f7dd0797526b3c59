// The pool's watchdog: a step that a stuck worker never finishes fails after stepTimeoutMs with
// WORKER_FAILED (instead of holding every request forever), and the stuck workers can be terminated.
import { describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { loadQwen2 } from "../../compute/model/model";
import { kernelModule } from "../../compute/kernels/module";
import { WorkerPool } from "../../compute/workers/pool";
import { CONTROL_WORDS } from "../../compute/workers/protocol";

describe("step watchdog", () => {
  it("fails a step that stuck workers never finish, within the deadline, and terminates them", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 1 }));
    const model = await loadQwen2(bytes, { threads: 1, contextLength: 32 });
    try {
      const control = model.arena.alloc(4 * CONTROL_WORDS);
      const pool = await WorkerPool.start(2, model.arena.memory, await kernelModule(), model.forward.layout, control,
        new URL("./hang-worker.mjs", import.meta.url), 300);
      const t0 = performance.now();
      await expect(pool.run(1)).rejects.toMatchObject({ code: "WORKER_FAILED", message: expect.stringMatching(/did not finish within 300 ms/) });
      const waited = performance.now() - t0;
      expect(waited).toBeGreaterThanOrEqual(300);
      expect(waited).toBeLessThan(10_000);
      await pool.dispose(); // terminates workers stuck in a loop
    } finally {
      await model.dispose();
    }
  });

  it("refuses a stepTimeoutMs that is not a positive number", async () => {
    const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 1 }));
    await expect(loadQwen2(bytes, { threads: 2, contextLength: 32, stepTimeoutMs: 0 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});
