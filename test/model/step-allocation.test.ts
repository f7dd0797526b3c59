// A decode step allocates no JavaScript heap that grows with the layers. Every op of a step calls
// `parallel` with an item function; when those were fresh closures (and per-layer arrays, iterators,
// typed-array views and Sets), a 0.5B decode step allocated about 60 KB, a 10-layer MoE one about
// 94 KB, and V8's young-generation collections, which V8 runs as tasks in the engine's turn of the
// event loop, came every dozen steps (README, "The engine's own time"). The allocations are counted
// with V8's sampling heap profiler (every 32 bytes on average, objects a minor or major GC collected
// included): the same prompt and decode steps on the same model with 2 and with 10 layers, and the
// difference per added layer per step must stay under 200 bytes (the closures gave about 2.7 KB;
// what a step allocates once, its typed-array views and the attention item list, does not count).
import { Session } from "node:inspector/promises";
import { describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { loadQwen2 } from "../../compute/model/model";
import { argmax } from "../../engine/sampler/sampler";
import { prompt } from "./helpers";

const vocabulary = await readQwen2Vocabulary();

interface SampleNode { selfSize: number; children: SampleNode[] }

/** Bytes allocated per decode step (mean over `steps`), after `warm` steps for the JIT. */
async function bytesPerStep(bytes: Uint8Array, warm: number, steps: number): Promise<number> {
  const model = await loadQwen2(bytes, { contextLength: 512, maxTokens: 16, threads: 1 });
  const session = new Session();
  session.connect();
  try {
    const forward = model.forward;
    let token = argmax(await forward.step(prompt(8), 0));
    let pos = 8;
    for (let i = 0; i < warm; i++) token = argmax(await forward.step([token], pos++));
    await session.post("HeapProfiler.enable");
    await session.post("HeapProfiler.startSampling", {
      samplingInterval: 32, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true,
    });
    for (let i = 0; i < steps; i++) token = argmax(await forward.step([token], pos++));
    const { profile } = await session.post("HeapProfiler.stopSampling") as { profile: { head: SampleNode } };
    const total = (n: SampleNode): number => n.selfSize + n.children.reduce((s, c) => s + total(c), 0);
    return total(profile.head) / steps;
  } finally {
    session.disconnect();
    await model.dispose();
  }
}

describe("a decode step's JavaScript allocations", () => {
  it.for([
    ["qwen2, Q4_0", "tiny"],
    ["qwen2moe, Q8_0", "tiny-moe"],
  ] as const)("%s: under 200 bytes per added layer", async ([, preset]) => {
    const model = (layers: number) => writeGGUFBytes(synthQwen2({ shape: { ...QWEN2_PRESETS[preset], layers }, vocabulary,
      type: preset === "tiny" ? "Q4_0" : "Q8_0", seed: 5 }));
    const few = await bytesPerStep(await model(2), 300, 200);
    const many = await bytesPerStep(await model(10), 300, 200);
    const perLayer = (many - few) / 8;
    expect(few, "2 layers: some allocation is sampled (the profiler ran)").toBeGreaterThan(0);
    expect(perLayer, `bytes per step: 2 layers ${few.toFixed(0)}, 10 layers ${many.toFixed(0)}`).toBeLessThan(200);
  });
});
