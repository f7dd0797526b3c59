// The sampler's partial ranking against straightforward references that sort every candidate:
// identical token ids over random logit rows (152k vocabulary included), parameter combinations
// and seeds; its exp against Math.exp; and the penalty window (prompt included) against a direct
// count over the last N tokens.
import { describe, expect, it } from "vitest";
import { Rng, Sampler, expNonPositive, tokenWeight, type SamplingOptions } from "../../engine/sampler/sampler";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine } from "../../engine/engine";
import { rng } from "../random";

type Filters = { temperature: number; topK: number; topP: number; minP: number; seed: number };

/** Every token sorted by logit, highest first, ties to the lowest id (kept per row: the references
 *  draw from the same rows many times). The candidates above a floor are a prefix of it. */
function sortAll(logits: Float32Array): number[] {
  let ids = sorted.get(logits);
  if (!ids) {
    ids = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
    sorted.set(logits, ids);
  }
  return ids;
}
const sorted = new WeakMap<Float32Array, number[]>();

/** What a draw may give: one token, or (ambiguous) any of a few; `tie` where top-p's cut is a tie. */
type Wanted = { ids: Set<number>; ambiguous: boolean; tie: boolean };

/** Running sums w[0] + ... + w[j], compensated (Neumaier): each within an ulp or so of the exact sum. */
function prefixSums(w: Float64Array): Float64Array {
  const out = new Float64Array(w.length);
  let sum = 0;
  let lost = 0;
  for (let j = 0; j < w.length; j++) {
    const t = sum + w[j];
    lost += Math.abs(sum) >= Math.abs(w[j]) ? (sum - t) + w[j] : (w[j] - t) + sum;
    sum = t;
    out[j] = sum + lost;
  }
  return out;
}

/** How far (relative) a draw or top-p's target must be from a boundary between two tokens for the
 *  answer not to depend on the order of summation: the sampler sums bucket by bucket, the reference
 *  exactly; both stay within ~1e-13 of the exact sums even over 152k weights. */
const TOLERANCE = 1e-10;

/**
 * The sampler's semantics written out, summed exactly: every candidate sorted, top-k, the normalizer
 * over the kept tokens, top-p, min-p, one draw at `u`. Weights from the sampler's tokenWeight, checked
 * against Math.exp below. Returns the token, or every token the draw may give where a boundary is
 * within TOLERANCE of the draw or of top-p's target (then `ambiguous`).
 */
function reference(logits: Float32Array, f: Filters): (u: number) => Wanted {
  let max = -Infinity;
  for (const l of logits) max = Math.max(max, l);
  const invT = 1 / f.temperature;
  let ids: number[];
  if (f.topK > 0 || f.topP < 1 || f.minP > 0) {
    const floor = max - 50 * f.temperature;
    const all = sortAll(logits);
    let candidates = 0;
    while (candidates < all.length && logits[all[candidates]] >= floor) candidates++;
    ids = all.slice(0, f.topK > 0 ? Math.min(f.topK, candidates) : candidates);
  } else {
    ids = Array.from(logits.keys());
  }
  const probs = Float64Array.from(ids, (id) => tokenWeight(logits[id], max, invT));
  const prefix = prefixSums(probs);
  const sum = prefix[ids.length - 1];
  // top-p: the first rank whose prefix reaches topP × sum; a prefix within the tolerance of the
  // target may fall on either side.
  const counts = new Set<number>();
  let tie = false; // the target is a prefix (to rounding): in exact sums, a tie between two cuts
  if (f.topP < 1) {
    const target = f.topP * sum;
    let count = ids.length;
    for (let j = 0; j < ids.length; j++) if (prefix[j] >= target) { count = j + 1; break; }
    counts.add(count);
    for (let j = 0; j < ids.length; j++) {
      if (Math.abs(prefix[j] - target) <= TOLERANCE * sum) { counts.add(j + 1); counts.add(Math.min(j + 2, ids.length)); }
      if (Math.abs(prefix[j] - target) <= 1e-15 * sum) tie = true;
    }
  } else {
    counts.add(ids.length);
  }
  const kept = [...counts].map((count) => {
    if (f.minP > 0) {
      let j = 1;
      while (j < count && probs[j] >= probs[0] * f.minP) j++;
      count = j;
    }
    return count;
  });
  return (u: number) => {
    const out = new Set<number>();
    for (const count of kept) {
      const total = prefix[count - 1];
      const r = u * total;
      let j = 0;
      while (j < count - 1 && !(prefix[j] > r)) j++;
      out.add(ids[j]);
      if (j + 1 < count && Math.abs(prefix[j] - r) <= TOLERANCE * total) out.add(ids[j + 1]);
      if (j > 0 && Math.abs(prefix[j - 1] - r) <= TOLERANCE * total) out.add(ids[j - 1]);
    }
    return { ids: out, ambiguous: out.size > 1, tie };
  };
}

/** The sampler before partial ranking (verbatim but for the names): Math.exp, a division by T,
 *  the normalizer summed in rank order. */
function previousSampler(logits: Float32Array, o: Filters, rng: Rng): number {
  const n = logits.length;
  let ids: Int32Array;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  if (o.topK > 0 || o.topP < 1 || o.minP > 0) {
    const floor = max - 50 * o.temperature;
    const keep = sortAll(logits).filter((id) => logits[id] >= floor);
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
 *  of ties, one dominant token, four values, flat (a random-weight model's), values at the edges of
 *  the sampler's buckets (for T 0.7; many ties). */
function logitRow(n: number, kind: number, seed: number): Float32Array {
  const rand = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const l = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (kind === 0) l[i] = 2.5 * gauss() + (rand() < 0.001 ? 12 + 4 * rand() : 0);
    else if (kind === 1) l[i] = Math.round(4 * gauss()) / 2;
    else if (kind === 2) l[i] = gauss() + (i === (seed % n) ? 25 : 0);
    else if (kind === 3) l[i] = 0.01 * Math.round(rand() * 3);
    else if (kind === 4) l[i] = 0.5 * gauss();
    else l[i] = -(Math.floor(600 * rand()) + 0.5) * (Math.LN2 / 128) * 0.7; // on the sampler's bucket edges at T 0.7
  }
  return l;
}

const KINDS = 6;

/** Checks draws against the reference; counts those where the summation order may decide. */
class Tally {
  compared = 0;
  /** Draws within TOLERANCE of a boundary; those where top-p's target is a prefix (exact ties). */
  ambiguous = 0;
  ties = 0;

  check(got: number, wanted: Wanted, label: string): void {
    expect(wanted.ids.has(got), `${label}: got ${got}, expected ${[...wanted.ids].join(" or ")}`).toBe(true);
    this.compared++;
    if (wanted.ambiguous && wanted.tie) this.ties++;
    else if (wanted.ambiguous) this.ambiguous++;
  }

  /** Every draw compared, and all but a few exactly: a boundary within 1e-10 of a draw (never
   *  seen), or top-p's target on a prefix of equal weights (rows of a few values). */
  report(what: string, expected: number): void {
    console.log(`${what}: ${this.compared} draws, ${this.ambiguous} within ${TOLERANCE} of a boundary, ` +
      `${this.ties} more where top-p's target ties`);
    expect(this.compared).toBe(expected);
    expect(this.ambiguous).toBeLessThanOrEqual(expected / 1000);
    expect(this.ties).toBeLessThanOrEqual(expected / 20);
  }
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
    const tally = new Tally();
    for (const n of [8, 300, 5000]) {
      for (const [g, params] of GRID.entries()) {
        const kind = g % KINDS;
        const seed = 1000 * n + g;
        const row = logitRow(n, kind, seed);
        const sampler = new Sampler({ ...params, seed });
        const want = reference(row, { ...params, seed });
        const rngRef = new Rng(seed);
        for (let draw = 0; draw < 16; draw++) {
          tally.check(sampler.sample(row.slice()), want(rngRef.next()), `n=${n} kind=${kind} ${JSON.stringify(params)} draw ${draw}`);
        }
      }
    }
    tally.report("small vocabularies", 3 * GRID.length * 16);
  });

  it("gives the token ids of a full sort, and of the previous sampler, on the 152k vocabulary", () => {
    const n = 152064;
    const cases: Omit<Filters, "seed">[] = [
      { temperature: 0.7, topK: 0, topP: 0.9, minP: 0 },
      { temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05 },
      { temperature: 0.7, topK: 0, topP: 0.9, minP: 0.05 },
      { temperature: 0.7, topK: 0, topP: 1, minP: 0.05 },
      { temperature: 1, topK: 0, topP: 0.95, minP: 0.05 },
      { temperature: 1.2, topK: 0, topP: 1, minP: 0.1 },
      { temperature: 0.8, topK: 20, topP: 1, minP: 0 },
      { temperature: 1, topK: 0, topP: 1, minP: 0 },
      { temperature: 0.6, topK: 0, topP: 0.999, minP: 0 },
      { temperature: 1.5, topK: 5000, topP: 0.5, minP: 0 },
      { temperature: 0.9, topK: 10000, topP: 0.95, minP: 0.02 },
    ];
    const tally = new Tally();
    let previousCompared = 0;
    for (const [c, params] of cases.entries()) {
      for (let kind = 0; kind < KINDS; kind++) {
        const seed = 77 + 10 * (c % 2) + kind; // two rows of each kind: their sorts are kept
        const row = logitRow(n, kind, seed);
        const sampler = new Sampler({ ...params, seed });
        const want = reference(row, { ...params, seed });
        const rngRef = new Rng(seed);
        const rngPrevious = new Rng(seed);
        for (let draw = 0; draw < 12; draw++) {
          const got = sampler.sample(row.slice());
          const label = `kind=${kind} ${JSON.stringify(params)} draw ${draw}`;
          const wanted = want(rngRef.next());
          tally.check(got, wanted, label);
          if (draw < 2) {
            const previous = previousSampler(row, { ...params, seed }, rngPrevious);
            if (!wanted.ambiguous) { expect(got, `previous sampler, ${label}`).toBe(previous); previousCompared++; }
          }
        }
      }
    }
    tally.report("152k vocabulary", cases.length * KINDS * 12);
    expect(previousCompared).toBeGreaterThanOrEqual(cases.length * KINDS * 2 - 2);
  });

  it("reuses its scratch across vocabularies and samplers: interleaved draws match the reference", () => {
    const tally = new Tally();
    const rows = [logitRow(152064, 4, 5), logitRow(50, 0, 6), logitRow(5000, 1, 7), logitRow(152064, 0, 8)];
    const params = [
      { temperature: 0.7, topK: 0, topP: 0.9, minP: 0 },
      { temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05 },
      { temperature: 1, topK: 0, topP: 1, minP: 0.05 },
      { temperature: 0.5, topK: 3000, topP: 0.8, minP: 0 },
    ];
    const samplers = rows.map((_, i) => new Sampler({ ...params[i], seed: i }));
    const wants = rows.map((row, i) => reference(row, { ...params[i], seed: i }));
    const rngs = rows.map((_, i) => new Rng(i));
    for (let draw = 0; draw < 20; draw++) {
      for (let i = 0; i < rows.length; i++) tally.check(samplers[i].sample(rows[i].slice()), wants[i](rngs[i].next()), `row ${i} draw ${draw}`);
    }
    tally.report("interleaved", 20 * rows.length);
  });

  it("keeps a token whose weight is exactly min-p's threshold, drops the next lower", () => {
    const row = logitRow(152064, 0, 99);
    const order = sortAll(row);
    let compared = 0;
    for (const rank of [1, 5, 37, 200]) {
      const id = order[rank];
      let max = -Infinity;
      for (const l of row) max = Math.max(max, l);
      const minP = tokenWeight(row[id], max, 1); // the top token weighs 1
      const kept = new Set<number>();
      const sampler = new Sampler({ temperature: 1, minP, seed: rank });
      const want = reference(row, { temperature: 1, topK: 0, topP: 1, minP, seed: rank });
      const rngRef = new Rng(rank);
      for (let draw = 0; draw < 400; draw++) {
        const got = sampler.sample(row.slice());
        const wanted = want(rngRef.next());
        expect(wanted.ambiguous).toBe(false);
        expect(wanted.ids.has(got), `rank ${rank} draw ${draw}`).toBe(true);
        kept.add(got);
        compared++;
      }
      const lowest = Math.max(...[...kept].map((t) => order.indexOf(t)));
      expect(lowest, `rank ${rank}`).toBeLessThanOrEqual(rank + [...Array(5).keys()].filter((k) => row[order[rank + k + 1]] === row[id]).length);
    }
    expect(compared).toBe(4 * 400);
  });

  it("draws the top token where all others are below the 50-nat floor (or T is tiny), ranks -0 with +0, survives non-finite rows", () => {
    const row = new Float32Array(1000).fill(-100);
    row[123] = 0;
    expect(new Sampler({ temperature: 1, topP: 0.9, seed: 3 }).sample(row.slice())).toBe(123);
    expect(new Sampler({ temperature: 1, topK: 5, seed: 3 }).sample(row.slice())).toBe(123);
    expect(new Sampler({ temperature: 1, topK: 1 }).sample(Float32Array.from([-1, -0, 0, -0, 0]))).toBe(1); // ties to the lowest id
    expect(new Sampler({ temperature: 1, topP: 0.9 }).sample(new Float32Array(10).fill(-Infinity))).toBe(0);
    const close = Float32Array.from([0.5, 2, 1, 2 - 2 ** -22, -3]);
    for (const temperature of [1e-300, 1e-306, 5e-324]) {
      expect(new Sampler({ temperature, topP: 0.9, seed: 1 }).sample(close.slice()), `T ${temperature}`).toBe(1);
      expect(new Sampler({ temperature, topK: 2, seed: 1 }).sample(close.slice()), `T ${temperature}`).toBe(1);
    }
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
