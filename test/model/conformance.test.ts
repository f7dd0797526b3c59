// Conformance with llama.cpp: for every file and prompt of ../shared/fixtures/mini, our logits agree
// with the references llama.cpp computed on the same file, within the tolerances of the fixtures
// README (section 5): max |Δ|/std and rms(Δ)/std per position, top-1 where llama.cpp's margin is
// >= 0.5, and greedy tokens up to the first low-margin step. Runs in both vitest projects: with the
// SIMD128 build and with the relaxed-SIMD build (vitest.config.ts).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { argmax } from "../../ts/sampler/sampler";
import { loadQwen2, type Qwen2Model } from "../../ts/model/model";
import { kernelBuild } from "../../ts/kernels/module";
import { FIXTURES_DIR, fixturesAvailable } from "../fixtures";

const MINI = join(FIXTURES_DIR, "mini");
const FILES = [
  "F32", "F16", "BF16", "Q8_0-pure", "Q4_0-pure", "Q4_1-pure", "Q5_0-pure", "Q5_1-pure", "Q2_K-pure",
  "Q3_K-pure", "Q4_K-pure", "Q5_K-pure", "Q6_K-pure", "IQ4_NL-pure", "Q4_0", "Q4_K_M",
];
const PROMPTS = ["p8", "p64", "p200"];

/** Fixtures README §5: max |Δ|/std and rms(Δ)/std per position. */
function tolerance(file: string): { max: number; rms: number } {
  if (file === "F32") return { max: 1e-4, rms: 2e-5 };
  if (file === "F16") return { max: 1e-2, rms: 3e-3 };
  if (file === "BF16") return { max: 5e-2, rms: 1.5e-2 };
  return { max: 0.25, rms: 0.05 };
}

function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function std(row: Float32Array): number {
  let mean = 0;
  for (const v of row) mean += v;
  mean /= row.length;
  let s = 0;
  for (const v of row) s += (v - mean) ** 2;
  return Math.sqrt(s / row.length);
}

function compareRow(ours: Float32Array, ref: Float32Array): { rel: number; rms: number } {
  const s = std(ref);
  let max = 0;
  let sq = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ours[i] - ref[i]);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
    sq += d * d;
  }
  return { rel: max / s, rms: Math.sqrt(sq / ref.length) / s };
}

interface Top10 { positions: { pos: number; top: [number, number][] }[] }
interface Greedy { tokens: number[]; top1_minus_top2: number[] }

describe.skipIf(!fixturesAvailable)("llama.cpp conformance (fixtures/mini)", () => {
  for (const file of FILES) {
    describe(file, () => {
      const tol = tolerance(file);
      for (const prompt of PROMPTS) {
        it(`${prompt}: logits at every position, top-1 and greedy`, async () => {
          const tokens: number[] = JSON.parse(readFileSync(join(MINI, "prompts", `${prompt}.json`), "utf8"));
          const refDir = join(MINI, "ref", file);
          const n = tokens.length;
          const model: Qwen2Model = await loadQwen2(join(MINI, `${file}.gguf`), {
            contextLength: n + 48, maxTokens: n, threads: 1,
          });
          const vocab = model.config.vocabSize;
          // The whole prompt in one step, as the references were made (one batch).
          const all = await model.forward.step(tokens, 0, true);
          const row = (i: number) => all.subarray(i * vocab, (i + 1) * vocab);

          let worst = { rel: 0, rms: 0, pos: -1 };
          const check = (pos: number, ref: Float32Array) => {
            const d = compareRow(row(pos), ref);
            if (d.rel > worst.rel) worst = { ...d, pos };
            expect(d.rel, `${file} ${prompt} position ${pos}: max |Δ|/std`).toBeLessThanOrEqual(tol.max);
            expect(d.rms, `${file} ${prompt} position ${pos}: rms(Δ)/std`).toBeLessThanOrEqual(tol.rms);
          };
          check(n - 1, readF32(join(refDir, `${prompt}.last_logits.f32`)));
          if (prompt === "p64") {
            const allRef = readF32(join(refDir, "p64.all_logits.f32"));
            for (let i = 0; i < n; i++) check(i, allRef.subarray(i * vocab, (i + 1) * vocab));
          }

          // Top-1 wherever llama.cpp's top-1/top-2 margin is at least 0.5.
          const top10: Top10 = JSON.parse(readFileSync(join(refDir, `${prompt}.top10.json`), "utf8"));
          for (const p of top10.positions) {
            const margin = p.top[0][1] - p.top[1][1];
            if (margin >= 0.5) expect(argmax(row(p.pos)), `${file} ${prompt} top-1 at position ${p.pos}`).toBe(p.top[0][0]);
          }

          // Greedy generation, compared up to the first step whose margin is below 0.5.
          const greedy: Greedy = JSON.parse(readFileSync(join(refDir, `${prompt}.greedy.json`), "utf8"));
          let logits = row(n - 1);
          for (let step = 0; step < greedy.tokens.length; step++) {
            if (greedy.top1_minus_top2[step] < 0.5) break;
            const next = argmax(logits);
            expect(next, `${file} ${prompt} greedy step ${step}`).toBe(greedy.tokens[step]);
            logits = await model.forward.step([next], n + step);
          }
          console.log(`${file} ${prompt} (${await kernelBuild()}): worst max|Δ|/std ${worst.rel.toExponential(2)} ` +
            `(rms ${worst.rms.toExponential(2)}) at position ${worst.pos}`);
          await model.dispose();
        });
      }
    });
  }
});

if (!fixturesAvailable) {
  describe("llama.cpp conformance (fixtures/mini)", () => {
    it.skip(`skipped: ${FIXTURES_DIR} is absent (see ../shared/fixtures/README.md)`, () => {});
  });
  console.warn(`conformance: skipped, ${FIXTURES_DIR} is absent`);
}
