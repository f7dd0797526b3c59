// qwen2moe on the project's own synthetic models (no fixtures needed): logits against the float64
// reference (test/reference) for every weight type synth writes, routing-aware like the llama.cpp
// conformance; bit-identical logits for 1, 2 and 3 workers with tokens routed unevenly; decode vs
// prefill; and a layout of the real shapes (57b-a14b, moe-a2.7b) that reads only what it must.
import { describe, expect, it } from "vitest";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2, SYNTH_TYPES, type Qwen2SynthShape, type SynthType } from "../../tools/synth";
import { loadQwen2, prefill } from "../../compute/model/model";
import { ReferenceQwen2 } from "../reference/qwen2-reference";
import { differingBits, relDiff, tolerance, prompt } from "./helpers";

const vocabulary = await readQwen2Vocabulary();

async function tinyMoE(type: SynthType, seed = 7, shape: Partial<Qwen2SynthShape> = {}): Promise<Uint8Array> {
  return writeGGUFBytes(synthQwen2({ shape: { ...synthQwen2Shape("tiny-moe"), ...shape }, vocabulary, type, seed }));
}

function synthQwen2Shape(name: "tiny-moe"): Qwen2SynthShape {
  return synthQwen2({ shape: name, vocabulary }).shape;
}

describe("synthetic qwen2moe models vs the scalar float64 reference", () => {
  for (const type of SYNTH_TYPES) {
    it(`${type}: selected experts and logits at every position (routing-aware)`, async () => {
      const bytes = await tinyMoE(type);
      const tokens = prompt(24);
      const reference = await ReferenceQwen2.load(parseGGUFBytes(bytes));
      const expected = reference.logits(tokens);
      const model = await loadQwen2(bytes, { threads: 1, contextLength: 64, maxTokens: 32 });
      const { vocabSize: vocab, nLayers } = model.config;
      const K = model.config.moe!.nExpertsUsed;
      const all = await model.forward.step(tokens, 0, true);
      const ours = model.forward.lastExperts()!;

      // Routing: a different choice where the reference's margin is >= 0.1 is a bug; below, a flip.
      let firstFlip = tokens.length;
      let decisions = 0;
      const flips: string[] = [];
      for (let l = 0; l < nLayers; l++) {
        reference.routing[l].forEach((ranked, pos) => {
          decisions++;
          const theirs = ranked.slice(0, K).map(([e]) => e).sort();
          const mine = Array.from(ours.experts.subarray((l * tokens.length + pos) * K, (l * tokens.length + pos + 1) * K)).sort();
          if (mine.join() === theirs.join()) return;
          const margin = ranked[K - 1][1] - ranked[K][1];
          expect(margin, `${type} layer ${l} position ${pos}: experts [${mine}] vs reference [${theirs}]`).toBeLessThan(0.1);
          flips.push(`layer ${l} position ${pos} (margin ${margin.toExponential(1)})`);
          firstFlip = Math.min(firstFlip, pos);
        });
      }
      expect(decisions).toBe(nLayers * tokens.length);

      const tol = tolerance(type);
      let worst = { rel: 0, rms: 0, pos: 0 };
      for (let pos = 0; pos < firstFlip; pos++) {
        const d = relDiff(all.subarray(pos * vocab, (pos + 1) * vocab), expected[pos]);
        if (d.rel > worst.rel) worst = { ...d, pos };
        expect(d.rel, `${type} position ${pos}: max |Δ|/std`).toBeLessThanOrEqual(tol.max);
        expect(d.rms, `${type} position ${pos}: rms(Δ)/std`).toBeLessThanOrEqual(tol.rms);
      }
      console.log(`synthetic qwen2moe ${type}: routing flips ${flips.length}/${decisions}${flips.length ? " " + flips.join("; ") : ""}; ` +
        `logits compared at ${firstFlip} positions, worst max|Δ|/std ${worst.rel.toExponential(2)} at position ${worst.pos}`);
      expect(firstFlip, `${type}: positions before the first flip`).toBeGreaterThan(tokens.length / 2);
      await model.dispose();
    });
  }

  it("refuses a qwen2moe file without output.weight", async () => {
    const model = synthQwen2({ shape: "tiny-moe", vocabulary, type: "Q8_0" });
    const headless = { ...model, tensors: model.tensors.filter((t) => t.name !== "output.weight") };
    await expect(loadQwen2(await writeGGUFBytes(headless), { threads: 1, contextLength: 16 }))
      .rejects.toMatchObject({ code: "MODEL_INVALID", message: expect.stringMatching(/output\.weight is missing/) });
  });
});

/**
 * Runs `tokens` after `prefix` on two copies of the model; in the second, before that step, every
 * expert the first copy's step did not select (per layer) has its gate, up and down slabs overwritten
 * with NaN. The step's logits must be bit-identical: no unselected expert is read into the result.
 */
async function poisonUnselected(bytes: Uint8Array, prefix: number[], tokens: number[], threads: number) {
  const clean = await loadQwen2(bytes, { threads, oversubscribe: true, contextLength: 64, maxTokens: 32 });
  const poisoned = await loadQwen2(bytes, { threads, oversubscribe: true, contextLength: 64, maxTokens: 32 });
  const { nExperts: E, nExpertsUsed: K } = clean.config.moe!;
  await clean.forward.step(prefix, 0);
  await poisoned.forward.step(prefix, 0);
  const expected = await clean.forward.step(tokens, prefix.length, true);
  const routed = clean.forward.lastExperts()!;
  let poisonedSlabs = 0;
  poisoned.tensors.layers.forEach((l, layer) => {
    const chosen = new Set(routed.experts.subarray(layer * tokens.length * K, (layer + 1) * tokens.length * K));
    for (const t of [l.moe!.gateExps, l.moe!.upExps, l.moe!.downExps]) {
      const slab = t.nbytes / E;
      for (let e = 0; e < E; e++) {
        if (chosen.has(e)) continue;
        poisoned.arena.u8(t.offset + e * slab, slab).fill(0xff); // F32 NaN
        poisonedSlabs++;
      }
    }
  });
  const logits = await poisoned.forward.step(tokens, prefix.length, true);
  await clean.dispose();
  await poisoned.dispose();
  return { expected, logits, poisonedSlabs };
}

describe("qwen2moe reads only the selected experts", () => {
  for (const [what, prefix, tokens, threads] of [
    ["a decode step (one token)", prompt(9), [17], 1],
    ["a prefill step of 6 tokens, 2 workers", prompt(5), prompt(6, 8), 2],
  ] as const) {
    it(`${what}: the other experts' weights, set to NaN, change nothing`, async () => {
      const bytes = await tinyMoE("F32", 9, { moe: { experts: 16, expertsUsed: 2, expertFfn: 64, sharedFfn: 96 } });
      const { expected, logits, poisonedSlabs } = await poisonUnselected(bytes, [...prefix], [...tokens], threads);
      expect(poisonedSlabs, "slabs poisoned").toBeGreaterThanOrEqual(3 * 2 * (16 - 2 * tokens.length));
      expect(logits.every(Number.isFinite)).toBe(true);
      expect(Buffer.from(logits.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
    });
  }

  it("a router that outputs NaN still selects K valid, distinct experts (and nothing crashes)", async () => {
    const model = synthQwen2({ shape: "tiny-moe", vocabulary, type: "F32", seed: 4 });
    const router = model.tensors.find((t) => t.name === "blk.1.ffn_gate_inp.weight")!;
    router.data = function* () { yield new Uint8Array(4 * router.dims[0] * router.dims[1]).fill(0xff); };
    const loaded = await loadQwen2(await writeGGUFBytes(model), { threads: 1, contextLength: 16, maxTokens: 8 });
    await loaded.forward.step([1, 2, 3], 0);
    const { experts } = loaded.forward.lastExperts()!;
    const { nExperts: E, nExpertsUsed: K } = loaded.config.moe!;
    for (let row = 0; row < 2 * 3; row++) {
      const chosen = Array.from(experts.subarray(row * K, (row + 1) * K));
      expect(chosen.every((e) => Number.isInteger(e) && e >= 0 && e < E)).toBe(true);
      expect(new Set(chosen).size).toBe(K);
    }
    await loaded.dispose();
  });
});

describe("qwen2moe with more workers than cores (workers descheduled mid-step)", () => {
  it("6 workers give the logits of 1, bit for bit, over a prefill and 40 decode steps", async () => {
    // Items are claimed: a descheduled worker may find the others layers ahead when it wakes, and must
    // still see its own layer's routing (the expert groups decide how many items an op has). When the
    // grouping was one buffer for all layers, the 2-thread batching test of moe-engine.test.ts failed
    // about 3 runs in 10 on a busy machine; this test did not catch it, and is kept for the property.
    const bytes = await tinyMoE("Q8_0", 21, { layers: 4, moe: { experts: 16, expertsUsed: 4, expertFfn: 64, sharedFfn: 96 } });
    const tokens = prompt(24, 5);
    const run = async (threads: number) => {
      const model = await loadQwen2(bytes, { threads, oversubscribe: true, contextLength: 80, maxTokens: 32 });
      const out: Float32Array[] = [await model.forward.step(tokens, 0, true)];
      for (let i = 0; i < 40; i++) out.push(await model.forward.step([(7 * i + 3) % 512], tokens.length + i));
      await model.dispose();
      return out;
    };
    const one = await run(1);
    const six = await run(6);
    expect(six.length).toBe(41);
    six.forEach((logits, step) => {
      expect(Buffer.from(logits.buffer).equals(Buffer.from(one[step].buffer)), `step ${step}`).toBe(true);
    });
  });
});

describe("qwen2moe steps", () => {
  it("decoding token by token gives the logits of a one-shot prefill; chunked prefill too", async () => {
    const bytes = await tinyMoE("Q8_0");
    const tokens = prompt(20);
    const oneShot = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 32 });
    const all = await oneShot.forward.step(tokens, 0, true);
    const vocab = oneShot.config.vocabSize;
    const stepwise = await loadQwen2(bytes, { threads: 1, contextLength: 32, maxTokens: 5 });
    await prefill(stepwise.forward, tokens.slice(0, 12));
    let compared = 0;
    for (let pos = 12; pos < tokens.length; pos++) {
      const logits = await stepwise.forward.step([tokens[pos]], pos);
      expect(relDiff(logits, all.subarray(pos * vocab, (pos + 1) * vocab)).rel, `position ${pos}`).toBeLessThan(1e-5);
      compared++;
    }
    expect(compared).toBe(8);
    await oneShot.dispose();
    await stepwise.dispose();
  });

  it("logits are bit-identical for 1, 2 and 3 workers, with the step's tokens routed unevenly", async () => {
    // 16 experts, 2 used: 19 tokens give each expert between 0 and many of the 38 (token, slot) rows.
    // Expert and shared FFN widths past one row chunk (MOE_ROW_CHUNK) so that an expert's rows are
    // split between items too.
    const bytes = await tinyMoE("Q4_1", 5, { moe: { experts: 16, expertsUsed: 2, expertFfn: 320, sharedFfn: 288 } });
    const tokens = prompt(19);
    const results: Float32Array[] = [];
    const loads: number[][] = [];
    for (const threads of [1, 2, 3]) {
      const model = await loadQwen2(bytes, { threads, oversubscribe: true, contextLength: 32, maxTokens: 32 });
      expect(model.forward.threads).toBe(threads);
      const all = await model.forward.step(tokens, 0, true);
      const routed = model.forward.lastExperts()!;
      const counts = new Array(16).fill(0);
      for (let i = 0; i < tokens.length * 2; i++) counts[routed.experts[i]]++; // layer 0
      loads.push(counts);
      const next = await model.forward.step([5], tokens.length);
      const joined = new Float32Array(all.length + next.length);
      joined.set(all);
      joined.set(next, all.length);
      results.push(joined);
      await model.dispose();
    }
    console.log(`layer-0 tokens per expert in the prefill step: ${loads[0].join(" ")}`);
    expect(Math.max(...loads[0]) - Math.min(...loads[0]), "the tokens route unevenly").toBeGreaterThanOrEqual(4);
    expect(loads[0].includes(0) || Math.min(...loads[0]) <= 1, "some expert gets (almost) nothing").toBe(true);
    for (let i = 1; i < results.length; i++) {
      expect(loads[i]).toEqual(loads[0]);
      expect(results[i].length).toBe(results[0].length);
      expect(differingBits(results[0], results[i]), `${i + 1} workers vs 1: differing logits`).toBe(0);
    }
  });
});
