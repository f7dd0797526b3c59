// The qwen2moe synth presets have the exact Qwen config shapes (config.json of
// Qwen/Qwen2-57B-A14B-Instruct and Qwen/Qwen1.5-MoE-A2.7B-Chat), write the keys and tensors llama.cpp's
// converter writes, and `qwasm synth --shape ... --layers N` makes a file qwasm loads and runs;
// `qwasm inspect` and `qwasm logits --experts` show the expert layout and the routing.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GGUFMetadata } from "../../weights/gguf/metadata";
import { openGGUF, parseGGUFBytes } from "../../weights/gguf/reader";
import { layerTensorList, mapQwen2Tensors, parseQwen2Config } from "../../weights/qwen2";
import { QWEN2_PRESETS, readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { main as synthMain } from "../../cli/commands/synth";
import { main as inspectMain } from "../../cli/commands/inspect-model";
import { loadQwen2 } from "../../compute/model/model";
import { tokenReadBytes } from "../../compute/model/moe";
import { ReferenceQwen2 } from "../reference/qwen2-reference";

const vocabulary = await readQwen2Vocabulary();
const tmp = mkdtempSync(join(tmpdir(), "qwasm-moe-synth-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("qwen2moe synth presets", () => {
  const cases = [
    ["57b-a14b", { hidden: 3584, layers: 28, heads: 28, kvHeads: 4, ffn: 18944, vocabSize: 151936, tied: false,
      moe: { experts: 64, expertsUsed: 8, expertFfn: 2560, sharedFfn: 20480 } }],
    ["moe-a2.7b", { hidden: 2048, layers: 24, heads: 16, kvHeads: 16, ffn: 5632, vocabSize: 151936, tied: false,
      moe: { experts: 60, expertsUsed: 4, expertFfn: 1408, sharedFfn: 5632 } }],
  ] as const;
  for (const [name, expected] of cases) {
    it(`${name}: the Qwen config shape, as keys and tensors qwasm maps`, () => {
      expect(QWEN2_PRESETS[name]).toMatchObject({ ...expected, ropeTheta: 1e6, rmsEps: 1e-6 });
      const model = synthQwen2({ shape: name, vocabulary, type: "Q4_0" }); // described only: nothing is generated
      const meta = new GGUFMetadata(model.metadata);
      const config = parseQwen2Config(meta, model.tensors);
      expect(config).toMatchObject({
        architecture: "qwen2moe", hidden: expected.hidden, nLayers: expected.layers, nHeads: expected.heads,
        nKVHeads: expected.kvHeads, vocabSize: expected.vocabSize, tiedEmbeddings: false,
        moe: { nExperts: expected.moe.experts, nExpertsUsed: expected.moe.expertsUsed, expertFfn: expected.moe.expertFfn,
          sharedFfn: expected.moe.sharedFfn },
      });
      expect(meta.getU32("qwen2moe.feed_forward_length")).toBe(expected.ffn);
      const tensors = mapQwen2Tensors(config, model.tensors);
      const { hidden: H, moe: { experts: E, expertFfn: F, sharedFfn: S } } = expected;
      expect(tensors.layers[0].moe!.gateExps.dims).toEqual([H, F, E]);
      expect(tensors.layers[0].moe!.downExps.dims).toEqual([F, H, E]);
      expect(tensors.layers[0].moe!.sharedGate.dims).toEqual([H, 1]);
      expect(tensors.layers[0].gate.dims).toEqual([H, S]);
      const used = [tensors.tokenEmbd, tensors.outputNorm, tensors.output, ...tensors.layers.flatMap(layerTensorList)];
      expect(used.length).toBe(model.tensors.length);
    });
  }

  it("refuses inconsistent MoE shapes", () => {
    const tiny = QWEN2_PRESETS["tiny-moe"];
    expect(() => synthQwen2({ shape: { ...tiny, moe: { ...tiny.moe!, expertsUsed: 9 } }, vocabulary }))
      .toThrow(/9 experts per token is more than the 8 experts/);
    expect(() => synthQwen2({ shape: { ...tiny, tied: true }, vocabulary })).toThrow(/cannot be tied/);
    expect(() => synthQwen2({ shape: { ...tiny, moe: { ...tiny.moe!, expertFfn: 48 } }, vocabulary, type: "Q4_0" }))
      .toThrow(/expert ffn 48 is not a multiple of the Q4_0 block size 32/);
  });
});

describe("qwasm synth / inspect / logits --experts on a qwen2moe shape", () => {
  it("synth --shape moe-a2.7b --layers 1 (narrowed) writes a model that loads, runs and reads K experts per token, the float64 reference's top 4 of 60", async () => {
    const out = join(tmp, "a27.gguf");
    // The real layer layout of Qwen1.5-MoE-A2.7B (60 experts, 4 used, FFN 1408, shared 5632), one layer,
    // a narrower hidden size and vocabulary so that the test stays small.
    const argv = [out, "--shape", "moe-a2.7b", "--layers", "1", "--hidden", "256", "--heads", "4", "--kv-heads", "4",
      "--expert-ffn", "128", "--shared-ffn", "256", "--vocab", "300", "--type", "Q8_0", "--seed", "3"];
    expect(await synthMain(argv)).toBe(0);
    const file = await openGGUF(out);
    const config = parseQwen2Config(file.metadata, file.tensors);
    expect(config).toMatchObject({ nLayers: 1, hidden: 256, moe: { nExperts: 60, nExpertsUsed: 4, expertFfn: 128, sharedFfn: 256 } });
    const reads = tokenReadBytes(config, mapQwen2Tensors(config, file.tensors));
    expect(reads.experts * 60).toBe(reads.allExperts * 4);
    await file.close();

    const printed: string[] = [];
    expect(await inspectMainWith([out], printed)).toBe(0);
    expect(printed.join("\n")).toMatch(/experts +60 routed per layer, 4 used per token/);
    expect(printed.join("\n")).toMatch(/blk\.0 gate +Q8_0 \[256, 128, 60\]: 60 slabs of 34816 bytes/);

    const model = await loadQwen2(out, { threads: 1, contextLength: 16, maxTokens: 8 });
    const logits = await model.forward.step([1, 2, 3, 4, 5], 0, true);
    expect(logits.length).toBe(5 * model.config.vocabSize);
    expect(logits.every(Number.isFinite)).toBe(true);
    const routed = model.forward.lastExperts()!;
    expect(routed.nTok).toBe(5);
    for (let t = 0; t < 5; t++) expect(new Set(routed.experts.subarray(t * 4, t * 4 + 4)).size).toBe(4);
    await model.dispose();

    // Top-4 of 60 against the float64 reference's ranking of the router logits (the fixtures have 8
    // experts): the same 4 experts in the same order, unless the reference's margin between two
    // neighbours in its ranking is below 1e-3 (f32 against f64 router logits may swap those).
    const reference = await ReferenceQwen2.load(parseGGUFBytes(new Uint8Array(readFileSync(out))));
    reference.logits([1, 2, 3, 4, 5]);
    let compared = 0;
    reference.routing[0].forEach((ranked, t) => {
      const mine = Array.from(routed.experts.subarray(t * 4, t * 4 + 4));
      const close = ranked.slice(0, 5).some(([, v], i) => i > 0 && ranked[i - 1][1] - v < 1e-3);
      if (close) return;
      expect(mine, `position ${t}: reference ranking ${ranked.slice(0, 6).map(([e, v]) => `${e}:${v.toFixed(4)}`).join(" ")}`)
        .toEqual(ranked.slice(0, 4).map(([e]) => e));
      compared++;
    });
    expect(compared).toBeGreaterThanOrEqual(4);
  });
});

/** Runs `qwasm inspect` collecting what it prints. */
async function inspectMainWith(argv: string[], printed: string[]): Promise<number> {
  const log = console.log;
  console.log = (text: string) => printed.push(String(text));
  try {
    return await inspectMain(argv);
  } finally {
    console.log = log;
  }
}

