// The sampler's partial ranking against straightforward references that sort every candidate:
// identical token ids over random logit rows (152k vocabulary included), parameter combinations
// and seeds; its exp against Math.exp; and the penalty window (prompt included) against a direct
// count over the last N tokens.
import { describe, expect, it } from "vitest";
import { Rng, Sampler, expNonPositive, tokenWeight, type SamplingOptions } from "../../ts/sampler/sampler";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../weights/synth";
import { createEngine } from "../../ts/engine/engine";
import { rng } from "../random";

type Filters = { temperature: number; topK: number; topP: number; minP: number; seed: number };

/** Candidates sorted in full by logit, highest first, ties to the lowest id (a row's sort is kept:
 *  the references draw from the same rows many times). */
function sortAll(logits: Float32Array, floor: number): number[] {
  const rowSorts = sorted.get(logits) ?? new Map<number, number[]>();
  sorted.set(logits, rowSorts);
  let keep = rowSorts.get(floor);
  if (!keep) {
    keep = [];
    for (let i = 0; i < logits.length; i++) if (logits[i] >= floor) keep.push(i);
    keep.sort((a, b) => logits[b] - logits[a] || a - b);
    rowSorts.set(floor, keep);
  }
  return keep.slice();
}
const sorted = new WeakMap<Float32Array, Map<number, number[]>>();

/** The sampler's semantics written out: every candidate sorted, top-k, the normalizer over the
 *  kept tokens (in rank order after top-k, else over every candidate in id order), top-p, min-p,
 *  one draw. Weights from the sampler's tokenWeight, which is checked against Math.exp below. */
function reference(logits: Float32Array, f: Filters, rng: Rng): number {
  let max = -Infinity;
  for (const l of logits) max = Math.max(max, l);
  const invT = 1 / f.temperature;
  const weight = (id: number) => tokenWeight(logits[id], max, invT);
  let ids: number[];
  let sum = 0;
  if (f.topK > 0 || f.topP < 1 || f.minP > 0) {
    const floor = max - 50 * f.temperature;
    const sorted = sortAll(logits, floor);
    if (f.topK > 0) {
      ids = sorted.slice(0, f.topK);
      for (const id of ids) sum += weight(id);
    } else {
      ids = sorted;
      for (let i = 0; i < logits.length; i++) if (logits[i] >= floor) sum += weight(i);
    }
  } else {
    ids = Array.from(logits.keys());
  }
  const probs = ids.map(weight);
  let count = ids.length;
  if (f.topP < 1) {
    let cumulative = 0;
    for (let j = 0; j < ids.length; j++) {
      cumulative += probs[j] / sum;
      if (cumulative >= f.topP) { count = j + 1; break; }
    }
  }
  if (f.minP > 0) {
    let j = 1;
    while (j < count && probs[j] >= probs[0] * f.minP) j++;
    count = j;
  }
  let total = 0;
  for (let j = 0; j < count; j++) total += probs[j];
  let r = rng.next() * total;
  for (let j = 0; j < count; j++) if ((r -= probs[j]) < 0) return ids[j];
  return ids[count - 1];
}

/** The sampler before partial ranking (verbatim but for the names): Math.exp, a division by T,
 *  the normalizer summed in rank order. */
function previousSampler(logits: Float32Array, o: Filters, rng: Rng): number {
  const n = logits.length;
  let ids: Int32Array;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  if (o.topK > 0 || o.topP < 1 || o.minP > 0) {
    const keep = sortAll(logits, max - 50 * o.temperature);
    ids = Int32Array.from(o.topK > 0 ? keep.slice(0, o.topK) : keep);
  } else {
    ids = new Int32Array(n);
    for (let i = 0; i < n; i++) ids[i] = i;
  }
  const probs = new Float64Array(ids.length);
  let sum = 0;
  for (let j = 0; j < ids.length; j++) {
    probs[j] = Math.exp((logits[ids[j]] - max) / o.temperature);
    sum += probs[j];
  }
  let count = ids.length;
  if (o.topP < 1) {
    let cumulative = 0;
    for (let j = 0; j < count; j++) {
      cumulative += probs[j] / sum;
      if (cumulative >= o.topP) { count = j + 1; break; }
    }
  }
  if (o.minP > 0) {
    const threshold = probs[0] * o.minP;
    let j = 1;
    while (j < count && probs[j] >= threshold) j++;
    count = j;
  }
  let total = 0;
  for (let j = 0; j < count; j++) total += probs[j];
  let r = rng.next() * total;
  for (let j = 0; j < count; j++) {
    r -= probs[j];
    if (r < 0) return ids[j];
  }
  return ids[count - 1];
}

/** Logit rows of several shapes: LLM-like (a bulk near 0, a few high tokens), coarse values full
 *  of ties, one dominant token, flat. */
function logitRow(n: number, kind: number, seed: number): Float32Array {
  const rand = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const l = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (kind === 0) l[i] = 2.5 * gauss() + (rand() < 0.001 ? 12 + 4 * rand() : 0);
    else if (kind === 1) l[i] = Math.round(4 * gauss()) / 2;
    else if (kind === 2) l[i] = gauss() + (i === (seed % n) ? 25 : 0);
    else l[i] = 0.01 * Math.round(rand() * 3);
  }
  return l;
}

const GRID: Omit<Filters, "seed">[] = [];
for (const temperature of [0.3, 0.7, 1.5]) {
  for (const topK of [0, 1, 7, 40, 2000]) {
    for (const topP of [1, 0.5, 0.9, 0.999]) {
      for (const minP of [0, 0.05, 0.5]) GRID.push({ temperature, topK, topP, minP });
    }
  }
}

describe("partial ranking", () => {
  it("expNonPositive is within 2 ulp of Math.exp on [-745, 0]", () => {
    const rand = rng(1);
    let worst = 0;
    let compared = 0;
    for (let i = 0; i < 200000; i++) {
      const x = i < 100000 ? -60 * rand() : -745 * rand();
      const want = Math.exp(x);
      if (want < 1e-300) continue; // subnormal results carry fewer bits
      worst = Math.max(worst, Math.abs(expNonPositive(x) - want) / want);
      compared++;
    }
    for (const x of [0, -0, -1e-300, -Math.LN2, -700, -Infinity]) {
      expect(Math.abs(expNonPositive(x) - Math.exp(x)), `x = ${x}`).toBeLessThanOrEqual(4.5e-16 * Math.exp(x));
    }
    expect(Number.isNaN(expNonPositive(NaN))).toBe(true);
    console.log(`expNonPositive: largest relative difference from Math.exp ${worst.toExponential(2)} over ${compared} values`);
    expect(compared).toBeGreaterThan(190000);
    expect(worst).toBeLessThanOrEqual(4.5e-16);
  });

  it("gives the token ids of a full sort over small vocabularies, every parameter combination", () => {
    let compared = 0;
    for (const n of [8, 300, 5000]) {
      for (const [g, params] of GRID.entries()) {
        const kind = g % 4;
        const seed = 1000 * n + g;
        const row = logitRow(n, kind, seed);
        const sampler = new Sampler({ ...params, seed });
        const rngRef = new Rng(seed);
        for (let draw = 0; draw < 8; draw++) {
          const want = reference(row, { ...params, seed }, rngRef);
          expect(sampler.sample(row.slice()), `n=${n} kind=${kind} ${JSON.stringify(params)} draw ${draw}`).toBe(want);
          compared++;
        }
      }
    }
    expect(compared).toBe(3 * GRID.length * 8);
  });

  it("gives the token ids of a full sort, and of the previous sampler, on the 152k vocabulary", () => {
    const n = 152064;
    const cases: Omit<Filters, "seed">[] = [
      { temperature: 0.7, topK: 0, topP: 0.9, minP: 0 },
      { temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05 },
      { temperature: 1, topK: 0, topP: 0.95, minP: 0.05 },
      { temperature: 1.2, topK: 0, topP: 1, minP: 0.1 },
      { temperature: 0.8, topK: 20, topP: 1, minP: 0 },
      { temperature: 1, topK: 0, topP: 1, minP: 0 },
      { temperature: 0.6, topK: 0, topP: 0.999, minP: 0 },
      { temperature: 1.5, topK: 5000, topP: 0.5, minP: 0 },
    ];
    let compared = 0;
    for (const [c, params] of cases.entries()) {
      for (const kind of [0, 1, 2, 3]) {
        const seed = 77 + 10 * c + kind;
        const row = logitRow(n, kind, seed);
        const sampler = new Sampler({ ...params, seed });
        const rngRef = new Rng(seed);
        const rngPrevious = new Rng(seed);
        for (let draw = 0; draw < 3; draw++) {
          const got = sampler.sample(row.slice());
          const label = `kind=${kind} ${JSON.stringify(params)} draw ${draw}`;
          expect(got, label).toBe(reference(row, { ...params, seed }, rngRef));
          expect(got, `previous sampler, ${label}`).toBe(previousSampler(row, { ...params, seed }, rngPrevious));
          compared++;
        }
      }
    }
    expect(compared).toBe(cases.length * 4 * 3);
  });

  it("draws the top token where all others are below the 50-nat floor, ranks -0 with +0, survives non-finite rows", () => {
    const row = new Float32Array(1000).fill(-100);
    row[123] = 0;
    expect(new Sampler({ temperature: 1, topP: 0.9, seed: 3 }).sample(row.slice())).toBe(123);
    expect(new Sampler({ temperature: 1, topK: 5, seed: 3 }).sample(row.slice())).toBe(123);
    expect(new Sampler({ temperature: 1, topK: 1 }).sample(Float32Array.from([-1, -0, 0, -0, 0]))).toBe(1); // ties to the lowest id
    expect(new Sampler({ temperature: 1, topP: 0.9 }).sample(new Float32Array(10).fill(-Infinity))).toBe(0);
    const nan = new Float32Array(10).fill(NaN);
    nan[4] = 1;
    expect(new Sampler({ temperature: 1, minP: 0.1 }).sample(nan)).toBe(4);
  });
});

/** The penalized row, from the definition: the last `lastN` tokens (all for -1, none for 0). */
function penalized(logits: Float32Array, history: number[], lastN: number, o: Required<Pick<SamplingOptions,
  "repetitionPenalty" | "presencePenalty" | "frequencyPenalty">>): Float32Array {
  const window = lastN < 0 ? history : lastN === 0 ? [] : history.slice(Math.max(0, history.length - lastN));
  const out = logits.slice();
  for (const token of new Set(window)) {
    const count = window.filter((t) => t === token).length;
    const l = logits[token];
    out[token] = (l > 0 ? l / o.repetitionPenalty : l * o.repetitionPenalty) - (o.presencePenalty + count * o.frequencyPenalty);
  }
  return out;
}

describe("penalty window", () => {
  it("covers the last penaltyLastN accepted tokens (default 64, -1 all, 0 none)", () => {
    const rand = rng(5);
    let compared = 0;
    for (const lastN of [undefined, 0, 1, 3, 64, 200, -1]) {
      for (const length of [0, 2, 63, 64, 65, 300]) {
        const history = Array.from({ length }, () => Math.floor(rand() * 50));
        const penalties = { repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: 0.15 };
        const sampler = new Sampler({ ...penalties, penaltyLastN: lastN });
        for (const t of history) sampler.accept(t);
        const row = Float32Array.from({ length: 60 }, () => 6 * rand() - 3);
        const got = row.slice();
        sampler.sample(got);
        expect(Array.from(got), `penaltyLastN ${lastN}, ${length} tokens`).toEqual(Array.from(penalized(row, history, lastN ?? 64, penalties)));
        compared++;
      }
    }
    expect(compared).toBe(42);
  });

  it("refuses a penaltyLastN below -1 or not an integer", () => {
    for (const penaltyLastN of [-2, 1.5, NaN]) {
      expect(() => new Sampler({ penaltyLastN }), String(penaltyLastN)).toThrowError(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
  });

  it("the engine puts the prompt in the window", async () => {
    const vocabulary = await readQwen2Vocabulary();
    const engine = await createEngine(await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 11 })),
      { threads: 1, contextLength: 64, maxSequences: 1, maxTokens: 32 });
    try {
      // A bias makes token 77 the greedy choice; a presence penalty larger than the bias must undo it
      // when 77 is in the prompt, and only then.
      const request = { maxTokens: 1, ignoreEos: true, logitBias: { 77: 1000 }, presencePenalty: 2000 };
      const without = await engine.generateTokens([5, 6, 7, 8], request);
      const withIt = await engine.generateTokens([5, 77, 7, 8], request);
      const outOfWindow = await engine.generateTokens([5, 77, 7, 8], { ...request, penaltyLastN: 2 });
      expect(without.tokens).toEqual([77]);
      expect(withIt.tokens).not.toEqual([77]);
      expect(outOfWindow.tokens).toEqual([77]);
    } finally {
      await engine.dispose();
    }
  });
});
