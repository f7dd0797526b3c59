// Conformance with llama.cpp: for every file and prompt of ../shared/fixtures/mini and
// ../shared/fixtures/yarn (Qwen2 with YaRN rope scaling, prompts past the original context), our
// logits agree with the references llama.cpp computed on the same file, within the tolerances of
// the fixtures README (section 5), on everything the fixture holds:
//   - full logit rows (max |Δ|/std and rms(Δ)/std): the last prompt position (last_logits), and every
//     position where the fixture has all_logits (mini p64; yarn p64 and p700);
//   - every prompt position's top-10 logits, mean and std (top10.json), and the top-1 wherever
//     llama.cpp's top-1/top-2 margin is >= 0.5;
//   - 32 greedy steps, teacher-forced: llama.cpp's token is fed at every step, so every step is
//     compared: the logit llama.cpp chose (chosen_logit) at every step, and our argmax equals
//     llama.cpp's token at every step whose margin is >= 0.5 (at least one per case);
//   - the prompt and generated tokens' bytes (pieces_hex) from the file's vocabulary.
// Runs in both vitest projects: with the SIMD128 build and with the relaxed-SIMD build
// (vitest.config.ts); the build is checked to be the project's.
import { describe, expect, it } from "vitest";
import { argmax } from "../../engine/sampler/sampler";
import { loadQwen2 } from "../../compute/model/model";
import { tokenizerFromMetadata } from "../../engine/tokenizer/from-model";
import { describeFixtures, fixturePath, readFixtureF32, readFixtureJSON } from "../fixtures";
import { checkedKernelBuild } from "../kernel-build";
import { checkTop10, meanStd, relDiff } from "./helpers";

interface Suite {
  dir: string;
  files: string[];
  prompts: string[];
  /** prompts whose references hold all_logits (every position's row) */
  allLogits: string[];
}

const SUITES: Suite[] = [
  {
    dir: "mini",
    files: [
      "F32", "F16", "BF16", "Q8_0-pure", "Q4_0-pure", "Q4_1-pure", "Q5_0-pure", "Q5_1-pure", "Q2_K-pure",
      "Q3_K-pure", "Q4_K-pure", "Q5_K-pure", "Q6_K-pure", "IQ4_NL-pure", "Q4_0", "Q4_K_M",
    ],
    prompts: ["p8", "p64", "p200"],
    allLogits: ["p64"],
  },
  // yarn/README.md: mini's tolerances and rules, all_logits for both prompts.
  { dir: "yarn", files: ["F32", "Q8_0-pure", "Q4_K_M"], prompts: ["p64", "p700"], allLogits: ["p64", "p700"] },
];

const N_VOCAB = 4099;
const N_GEN = 32;
const MARGIN = 0.5;

/** Fixtures README §5: max |Δ|/std and rms(Δ)/std per position. */
function tolerance(file: string): { max: number; rms: number } {
  if (file === "F32") return { max: 1e-4, rms: 2e-5 };
  if (file === "F16") return { max: 1e-2, rms: 3e-3 };
  if (file === "BF16") return { max: 5e-2, rms: 1.5e-2 };
  return { max: 0.25, rms: 0.05 };
}

interface Tokens { name: string; n_tokens: number; tokens: number[]; pieces_hex: string[] }
interface Top10 {
  n_vocab: number;
  positions: { pos: number; token: number; logits_mean: number; logits_std: number; top: [number, number][] }[];
}
interface Greedy { n_gen: number; tokens: number[]; chosen_logit: number[]; top1_minus_top2: number[]; pieces_hex: string[] }

it("runs on the kernel build its vitest project names", async () => {
  console.log(`conformance: kernels ${await checkedKernelBuild()}`);
});

for (const suite of SUITES) {
  describeFixtures(`llama.cpp conformance (fixtures/${suite.dir})`, () => {
    for (const file of suite.files) {
      describe(file, () => {
        const tol = tolerance(file);
        for (const prompt of suite.prompts) {
          const full = suite.allLogits.includes(prompt);
          it(`${prompt}: ${full ? "logits at every position" : "the last position's logits"}, every position's top-10 and top-1, ` +
            `${N_GEN} teacher-forced greedy steps`, async () => {
            const at = `${suite.dir}/${file} ${prompt}`;
            const tokens = readFixtureJSON<number[]>(suite.dir, "prompts", `${prompt}.json`);
            const refDir = ["ref", file];
            const n = tokens.length;
            const refTokens = readFixtureJSON<Tokens>(suite.dir, ...refDir, `${prompt}.tokens.json`);
            expect(refTokens.n_tokens, `${at}: tokens.json n_tokens`).toBe(n);
            expect(refTokens.tokens, `${at}: tokens.json is the prompt`).toEqual(tokens);
            const top10 = readFixtureJSON<Top10>(suite.dir, ...refDir, `${prompt}.top10.json`);
            const greedy = readFixtureJSON<Greedy>(suite.dir, ...refDir, `${prompt}.greedy.json`);
            const lastRef = readFixtureF32(N_VOCAB, suite.dir, ...refDir, `${prompt}.last_logits.f32`);
            const allRef = full ? readFixtureF32(n * N_VOCAB, suite.dir, ...refDir, `${prompt}.all_logits.f32`) : undefined;

            const model = await loadQwen2(fixturePath(suite.dir, `${file}.gguf`), { contextLength: n + N_GEN, maxTokens: n, threads: 1 });
            try {
              expect(model.config.vocabSize).toBe(N_VOCAB);
              // The tokens' bytes (llama_token_to_piece, specials rendered) from the file's vocabulary.
              const tokenizer = tokenizerFromMetadata(model.file.metadata);
              const hex = (id: number) => Buffer.from(tokenizer.tokenBytes(id)).toString("hex");
              expect(tokens.map(hex), `${at}: tokens.json pieces_hex`).toEqual(refTokens.pieces_hex);
              // The whole prompt in one step, as the references were made (one batch).
              const all = (await model.forward.step(tokens, 0, true)).slice();
              const row = (i: number) => all.subarray(i * N_VOCAB, (i + 1) * N_VOCAB);

              // Full rows: the last position, and every position where the fixture holds them.
              let worst = { rel: 0, rms: 0, pos: -1 };
              let rows = 0;
              const check = (pos: number, ref: Float32Array) => {
                const d = relDiff(row(pos), ref);
                if (d.rel > worst.rel) worst = { ...d, pos };
                expect(d.rel, `${at} position ${pos}: max |Δ|/std`).toBeLessThanOrEqual(tol.max);
                expect(d.rms, `${at} position ${pos}: rms(Δ)/std`).toBeLessThanOrEqual(tol.rms);
                rows++;
              };
              check(n - 1, lastRef);
              if (allRef) for (let i = 0; i < n; i++) check(i, allRef.subarray(i * N_VOCAB, (i + 1) * N_VOCAB));
              expect(rows, `${at}: full rows compared`).toBe(allRef ? n + 1 : 1);

              // Every position's top-10 logits, mean and std (implied by the row tolerances: |Δ| <=
              // max|Δ|, and |Δmean|, |Δstd| <= rms(Δ)), and top-1 where llama.cpp's margin is >= 0.5.
              expect(top10.n_vocab).toBe(N_VOCAB);
              expect(top10.positions.length, `${at}: top10.json positions`).toBe(n);
              let worstTop = 0;
              let top1 = 0;
              top10.positions.forEach((p, i) => {
                expect(p.pos, `${at}: top10.json position ${i}`).toBe(i);
                expect(p.token, `${at}: top10.json token at position ${i}`).toBe(tokens[i]);
                expect(p.top.length).toBe(10);
                const checked = checkTop10(at, i, p, row(i), tol, MARGIN);
                worstTop = Math.max(worstTop, checked.worst);
                if (checked.top1) top1++;
              });

              // Greedy, teacher-forced: step s's logits are those after feeding llama.cpp's tokens of
              // steps < s, so every step is compared whatever happened at earlier ones.
              expect(greedy.n_gen).toBe(N_GEN);
              for (const key of ["tokens", "chosen_logit", "top1_minus_top2", "pieces_hex"] as const) {
                expect(greedy[key].length, `${at}: greedy.json ${key}`).toBe(N_GEN);
              }
              expect(greedy.tokens.map(hex), `${at}: greedy.json pieces_hex`).toEqual(greedy.pieces_hex);
              let logits: Float32Array = row(n - 1);
              let steps = 0;
              let worstChosen = 0;
              for (let s = 0; s < N_GEN; s++) {
                if (s > 0) logits = await model.forward.step([greedy.tokens[s - 1]], n + s - 1);
                const token = greedy.tokens[s];
                // The fixture holds one logit per generated step, no std: |Δ| against our row's std.
                const rel = Math.abs(logits[token] - greedy.chosen_logit[s]) / meanStd(logits).std;
                worstChosen = Math.max(worstChosen, Number.isNaN(rel) ? Infinity : rel);
                expect(rel, `${at} greedy step ${s}: logit of llama.cpp's token ${token}, |Δ|/std`).toBeLessThanOrEqual(tol.max);
                if (greedy.top1_minus_top2[s] >= MARGIN) {
                  expect(argmax(logits), `${at} greedy step ${s} (llama.cpp margin ${greedy.top1_minus_top2[s]})`).toBe(token);
                  steps++;
                }
              }
              expect(steps, `${at}: greedy steps with margin >= ${MARGIN}`).toBeGreaterThan(0);
              console.log(`${at} (${await checkedKernelBuild()}): ${rows} full rows, worst max|Δ|/std ${worst.rel.toExponential(2)} ` +
                `(rms ${worst.rms.toExponential(2)}) at position ${worst.pos}; top-10 of ${n} positions, worst ${worstTop.toExponential(2)}; ` +
                `top-1 at ${top1}/${n}; greedy argmax at ${steps}/${N_GEN} steps, chosen logits worst ${worstChosen.toExponential(2)}`);
            } finally {
              await model.dispose();
            }
          });
        }
      });
    }
  });
}
