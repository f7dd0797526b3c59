// Conformance with llama.cpp on the qwen2moe fixtures (../shared/fixtures/moe, see its README), for
// every file and prompt, routing-aware (README section 5), on everything the fixture holds:
//   - routing: the experts qwasm selects per (layer, prompt position) against llama.cpp's router
//     logits (router.json): a different selection where llama.cpp's margin (K-th minus (K+1)-th
//     router logit) is >= 0.1 fails; one at a smaller margin is a legitimate flip, counted and
//     printed, and everything below is compared only at the positions before the first flip (later
//     ones see it through the KV cache);
//   - full logit rows (max |Δ|/std, rms(Δ)/std): the last position and, for p64, every position;
//   - every position's top-10 logits, mean and std, and the top-1 where llama.cpp's margin is >= 0.5;
//   - 32 greedy steps, teacher-forced (llama.cpp's token fed at every step), when the prompt had no
//     flip: the logit llama.cpp chose, and the argmax where its margin is >= 0.5; after a decode step
//     whose own routing was nearly tied a difference is excused and printed (router.json covers the
//     prompt only, so a flip there cannot be recognized otherwise);
//   - the prompt and generated tokens' bytes (pieces_hex) from the file's vocabulary;
//   - `qwasm logits --experts` prints the same routing.
import { describe, expect, it } from "vitest";
import { argmax } from "../../engine/sampler/sampler";
import { loadQwen2 } from "../../compute/model/model";
import { tokenizerFromMetadata } from "../../engine/tokenizer/from-model";
import { describeFixtures, fixturePath, readFixtureF32, readFixtureJSON } from "../fixtures";
import { checkedKernelBuild } from "../kernel-build";
import { checkTop10, meanStd, relDiff } from "./helpers";

const FILES = ["F32", "F16", "Q8_0-pure", "Q4_0-pure", "Q4_K_M", "Q6_K-pure"];
const PROMPTS = ["p8", "p64", "p200"];
const ALL_LOGITS = ["p64"];
const N_VOCAB = 4099;
const N_GEN = 32;
const MARGIN = 0.5;

/** A different selection at a router margin at least this large is a bug, not a flip. */
const FLIP_MARGIN = 0.1;

/**
 * README §5: max |Δ|/std and rms(Δ)/std; and `nearTie`, the router margin under which a decode
 * step's selection may differ from llama.cpp's (a few times the router-logit difference measured
 * on the prompts: F32 ~4e-6, F16 ~1.5e-3, quantized ~2.5e-2).
 */
function tolerance(file: string): { max: number; rms: number; nearTie: number } {
  if (file === "F32") return { max: 1e-4, rms: 2e-5, nearTie: 1e-4 };
  if (file === "F16") return { max: 1e-2, rms: 3e-3, nearTie: 1e-2 };
  return { max: 0.25, rms: 0.05, nearTie: 0.05 };
}

interface Tokens { n_tokens: number; tokens: number[]; pieces_hex: string[] }
interface Top10 {
  n_vocab: number;
  positions: { pos: number; token: number; logits_mean: number; logits_std: number; top: [number, number][] }[];
}
interface Greedy { n_gen: number; tokens: number[]; chosen_logit: number[]; top1_minus_top2: number[]; pieces_hex: string[] }
interface Router { layers: { layer: number; n_expert: number; positions: [number, number][][] }[] }

/** The smallest K-th minus (K+1)-th router logit over the layers, for token row t of lastExperts(). */
function ownMargin(router: Float32Array, nLayers: number, nTok: number, t: number, E: number, K: number): number {
  let margin = Infinity;
  for (let l = 0; l < nLayers; l++) {
    const row = Array.from(router.subarray((l * nTok + t) * E, (l * nTok + t + 1) * E)).sort((a, b) => b - a);
    margin = Math.min(margin, row[K - 1] - row[K]);
  }
  return margin;
}

describeFixtures("llama.cpp conformance (fixtures/moe, qwen2moe)", () => {
  for (const file of FILES) {
    describe(file, () => {
      const tol = tolerance(file);
      for (const prompt of PROMPTS) {
        const full = ALL_LOGITS.includes(prompt);
        it(`${prompt}: selected experts, ${full ? "logits at every position" : "the last position's logits"}, top-10 and ` +
          `top-1, ${N_GEN} teacher-forced greedy steps (routing-aware)`, async () => {
          const at = `moe/${file} ${prompt}`;
          const tokens = readFixtureJSON<number[]>("moe", "prompts", `${prompt}.json`);
          const refDir = ["moe", "ref", file];
          const n = tokens.length;
          const refTokens = readFixtureJSON<Tokens>(...refDir, `${prompt}.tokens.json`);
          expect(refTokens.n_tokens, `${at}: tokens.json n_tokens`).toBe(n);
          expect(refTokens.tokens, `${at}: tokens.json is the prompt`).toEqual(tokens);
          const router = readFixtureJSON<Router>(...refDir, `${prompt}.router.json`);
          const top10 = readFixtureJSON<Top10>(...refDir, `${prompt}.top10.json`);
          const greedy = readFixtureJSON<Greedy>(...refDir, `${prompt}.greedy.json`);
          const lastRef = readFixtureF32(N_VOCAB, ...refDir, `${prompt}.last_logits.f32`);
          const allRef = full ? readFixtureF32(n * N_VOCAB, ...refDir, `${prompt}.all_logits.f32`) : undefined;

          const model = await loadQwen2(fixturePath("moe", `${file}.gguf`), { contextLength: n + N_GEN, maxTokens: n, threads: 1 });
          try {
            const { vocabSize, nLayers } = model.config;
            expect(vocabSize).toBe(N_VOCAB);
            const { nExperts: E, nExpertsUsed: K } = model.config.moe!;
            const tokenizer = tokenizerFromMetadata(model.file.metadata);
            const hex = (id: number) => Buffer.from(tokenizer.tokenBytes(id)).toString("hex");
            expect(tokens.map(hex), `${at}: tokens.json pieces_hex`).toEqual(refTokens.pieces_hex);
            // The whole prompt in one step, as the references were made (one batch).
            const all = (await model.forward.step(tokens, 0, true)).slice();
            const row = (i: number) => all.subarray(i * N_VOCAB, (i + 1) * N_VOCAB);

            // Routing: ours against llama.cpp's, every (layer, position).
            const ours = model.forward.lastExperts()!;
            expect(ours.nTok).toBe(n);
            expect(router.layers.length).toBe(nLayers);
            const flips: string[] = [];
            let firstFlip = n;
            let decisions = 0;
            let routerDiff = 0;
            for (const { layer, n_expert, positions } of router.layers) {
              expect(n_expert).toBe(E);
              expect(positions.length, `${at}: router.json layer ${layer} positions`).toBe(n);
              positions.forEach((ranked, pos) => {
                const base = (layer * n + pos) * K;
                const theirs = ranked.slice(0, K).map(([e]) => e).sort((a, b) => a - b);
                const mine = Array.from(ours.experts.subarray(base, base + K)).sort((a, b) => a - b);
                for (const [e, logit] of ranked) {
                  routerDiff = Math.max(routerDiff, Math.abs(ours.router[(layer * n + pos) * E + e] - logit));
                }
                decisions++;
                if (mine.join() === theirs.join()) return;
                const margin = ranked[K - 1][1] - ranked[K][1];
                expect(margin, `${at} layer ${layer} position ${pos}: experts [${mine}], llama.cpp [${theirs}] ` +
                  `at router margin ${margin}`).toBeLessThan(FLIP_MARGIN);
                flips.push(`layer ${layer} position ${pos} (margin ${margin.toExponential(1)}: [${mine}] vs [${theirs}])`);
                firstFlip = Math.min(firstFlip, pos);
              });
            }
            expect(decisions).toBe(nLayers * n);
            // A flip at the first position would leave nothing to compare: that must fail, not pass.
            expect(firstFlip, `${at}: a routing flip at the first position`).toBeGreaterThan(0);

            // Full rows before the first flip.
            let worst = { rel: 0, rms: 0, pos: -1 };
            let rows = 0;
            const check = (pos: number, ref: Float32Array) => {
              if (pos >= firstFlip) return;
              const d = relDiff(row(pos), ref);
              if (d.rel > worst.rel) worst = { ...d, pos };
              expect(d.rel, `${at} position ${pos}: max |Δ|/std`).toBeLessThanOrEqual(tol.max);
              expect(d.rms, `${at} position ${pos}: rms(Δ)/std`).toBeLessThanOrEqual(tol.rms);
              rows++;
            };
            check(n - 1, lastRef);
            if (allRef) for (let i = 0; i < n; i++) check(i, allRef.subarray(i * N_VOCAB, (i + 1) * N_VOCAB));
            expect(rows, `${at}: full rows compared`).toBe(firstFlip < n ? (allRef ? firstFlip : 0) : (allRef ? n + 1 : 1));

            // Top-10 logits, mean and std, and top-1 where llama.cpp's margin is >= 0.5, before the first flip.
            expect(top10.n_vocab).toBe(N_VOCAB);
            expect(top10.positions.length, `${at}: top10.json positions`).toBe(n);
            let top1 = 0;
            let worstTop = 0;
            let topRows = 0;
            top10.positions.forEach((p, i) => {
              expect(p.pos).toBe(i);
              expect(p.token, `${at}: top10.json token at position ${i}`).toBe(tokens[i]);
              if (i >= firstFlip) return;
              topRows++;
              const checked = checkTop10(at, i, p, row(i), tol, MARGIN);
              worstTop = Math.max(worstTop, checked.worst);
              if (checked.top1) top1++;
            });
            expect(topRows).toBe(firstFlip);

            // Greedy, teacher-forced, after a prompt without flips.
            expect(greedy.n_gen).toBe(N_GEN);
            for (const key of ["tokens", "chosen_logit", "top1_minus_top2", "pieces_hex"] as const) {
              expect(greedy[key].length, `${at}: greedy.json ${key}`).toBe(N_GEN);
            }
            expect(greedy.tokens.map(hex), `${at}: greedy.json pieces_hex`).toEqual(greedy.pieces_hex);
            let chosen = 0;
            let argmaxSteps = 0;
            let worstChosen = 0;
            let nearTieAt = -1; // the first step after a decode step whose own routing was nearly tied
            const excused: string[] = [];
            let logits: Float32Array = row(n - 1);
            for (let s = 0; s < N_GEN && firstFlip === n; s++) {
              if (s > 0) {
                logits = await model.forward.step([greedy.tokens[s - 1]], n + s - 1);
                const routed = model.forward.lastExperts()!;
                if (nearTieAt < 0 && ownMargin(routed.router, nLayers, 1, 0, E, K) < tol.nearTie) nearTieAt = s;
              }
              const token = greedy.tokens[s];
              const rel = Math.abs(logits[token] - greedy.chosen_logit[s]) / meanStd(logits).std;
              const wrongArgmax = greedy.top1_minus_top2[s] >= MARGIN && argmax(logits) !== token;
              // After a near tie llama.cpp may have routed that token differently (a legitimate flip,
              // which router.json cannot show for generated tokens): a difference there is excused,
              // counted and printed; everything else is compared.
              if (nearTieAt >= 0 && (!(rel <= tol.max) || wrongArgmax)) {
                excused.push(`step ${s} (|Δ|/std ${rel.toExponential(1)}${wrongArgmax ? ", argmax differs" : ""})`);
                continue;
              }
              worstChosen = Math.max(worstChosen, Number.isNaN(rel) ? Infinity : rel);
              expect(rel, `${at} greedy step ${s}: logit of llama.cpp's token ${token}, |Δ|/std`).toBeLessThanOrEqual(tol.max);
              chosen++;
              if (greedy.top1_minus_top2[s] >= MARGIN) {
                expect(argmax(logits), `${at} greedy step ${s} (llama.cpp margin ${greedy.top1_minus_top2[s]})`).toBe(token);
                argmaxSteps++;
              }
            }
            // Step 0 is the prompt's last row: compared whenever the prompt had no flip.
            if (firstFlip === n) expect(chosen, `${at}: greedy steps compared`).toBeGreaterThan(0);
            const stopped = firstFlip < n ? "; greedy not compared: the prompt had a routing flip"
              : excused.length ? `; excused after a near tie at step ${nearTieAt}: ${excused.join(", ")}` : "";

            console.log(`${at} (${await checkedKernelBuild()}): routing flips ${flips.length}/${decisions}` +
              `${flips.length ? ": " + flips.join("; ") : ""}; max router-logit |Δ| ${routerDiff.toExponential(2)}; ` +
              `${rows} full rows${firstFlip < n ? ` (before the first flip at ${firstFlip})` : ""}, worst max|Δ|/std ` +
              `${worst.rel.toExponential(2)} (rms ${worst.rms.toExponential(2)}) at position ${worst.pos}; top-10 of ${topRows} ` +
              `positions, worst ${worstTop.toExponential(2)}; top-1 at ${top1}; greedy ${chosen}/${N_GEN} steps (argmax at ` +
              `${argmaxSteps}), chosen logits worst ${worstChosen.toExponential(2)}${stopped}`);
          } finally {
            await model.dispose();
          }
        });
      }
    });
  }
});

describeFixtures("qwasm logits --experts (fixtures/moe)", () => {
  it("prints the selected experts and router logits of every layer and position, as router.json has them", async () => {
    const { main } = await import("../../cli/commands/logits");
    const router = readFixtureJSON<Router>("moe", "ref", "Q8_0-pure", "p64.router.json");
    const written: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string) => { written.push(String(chunk)); return true; }) as typeof process.stdout.write;
    let rc;
    try {
      rc = await main([fixturePath("moe", "Q8_0-pure.gguf"), "--ids-file", fixturePath("moe", "prompts", "p64.json"), "--experts", "--threads", "1"]);
    } finally {
      process.stdout.write = write;
    }
    expect(rc).toBe(0);
    const printed = JSON.parse(written.join("")) as { experts: { layer: number; n_used: number; positions: { experts: number[]; router: [number, number][] }[] }[] };
    expect(printed.experts.length).toBe(router.layers.length);
    let compared = 0;
    for (const [l, layer] of printed.experts.entries()) {
      const K = layer.n_used;
      expect(layer.positions.length).toBe(64);
      layer.positions.forEach((p, pos) => {
        const ranked = router.layers[l].positions[pos];
        if (ranked[K - 1][1] - ranked[K][1] >= FLIP_MARGIN) {
          expect([...p.experts].sort(), `layer ${l} position ${pos}`).toEqual(ranked.slice(0, K).map(([e]) => e).sort());
        }
        expect(p.router.map(([e]) => e).slice(0, K).sort(), "the chosen experts lead the printed ranking").toEqual([...p.experts].sort());
        compared++;
      });
    }
    expect(compared).toBe(2 * 64);
  });
});
