// The sampler against independent computations: greedy ties, the filters (top-k, top-p, min-p)
// checked by drawing many times and comparing with the exact filtered distribution, penalties and
// logit bias by their formulas, and seeded determinism.
import { describe, expect, it } from "vitest";
import { Sampler, argmax, Rng } from "../../engine/sampler/sampler";
import { StopMatcher } from "../../engine/stop";

const logits = () => Float32Array.from([1, 3, 2, 3, -1, 0.5, 2.5, -4]);

/** Relative frequencies of `n` draws. */
function frequencies(make: () => Sampler, n: number, base = logits): number[] {
  const s = make();
  const counts = new Array(base().length).fill(0);
  for (let i = 0; i < n; i++) counts[s.sample(base())]++;
  return counts.map((c) => c / n);
}

/** Softmax over the kept ids with temperature t (independent of the sampler). */
function expected(ids: number[], t: number, l = logits()): number[] {
  const out = new Array(l.length).fill(0);
  const max = Math.max(...ids.map((i) => l[i]));
  const w = ids.map((i) => Math.exp((l[i] - max) / t));
  const z = w.reduce((a, b) => a + b, 0);
  ids.forEach((id, j) => { out[id] = w[j] / z; });
  return out;
}

function expectClose(got: number[], want: number[], tol = 0.012): void {
  got.forEach((g, i) => expect(Math.abs(g - want[i]), `token ${i}: got ${g}, expected ${want[i]}`).toBeLessThan(tol));
}

describe("sampler", () => {
  it("greedy picks the largest logit, ties to the lowest id", () => {
    expect(argmax(logits())).toBe(1);
    expect(new Sampler({ temperature: 0 }).sample(logits())).toBe(1);
  });

  it("temperature samples the softmax", () => {
    const all = [0, 1, 2, 3, 4, 5, 6, 7];
    expectClose(frequencies(() => new Sampler({ temperature: 1, seed: 1 }), 40000), expected(all, 1));
    expectClose(frequencies(() => new Sampler({ temperature: 0.5, seed: 2 }), 40000), expected(all, 0.5));
  });

  it("top-k keeps the k most likely", () => {
    expectClose(frequencies(() => new Sampler({ temperature: 1, topK: 3, seed: 3 }), 40000), expected([1, 3, 6], 1));
  });

  it("top-p keeps the smallest set reaching p", () => {
    // probabilities at t=1, sorted: ids 1 and 3 (0.28 each), 6 (0.17), 2 (0.10), ...
    const p = expected([0, 1, 2, 3, 4, 5, 6, 7], 1);
    const order = [1, 3, 6, 2, 0, 5, 4, 7];
    let cumulative = 0;
    const kept: number[] = [];
    for (const id of order) { kept.push(id); cumulative += p[id]; if (cumulative >= 0.8) break; }
    expectClose(frequencies(() => new Sampler({ temperature: 1, topP: 0.8, seed: 4 }), 40000), expected(kept, 1));
  });

  it("min-p drops tokens below p times the top probability", () => {
    const p = expected([0, 1, 2, 3, 4, 5, 6, 7], 1);
    const top = Math.max(...p);
    const kept = p.map((v, i) => [v, i]).filter(([v]) => v >= 0.3 * top).map(([, i]) => i);
    expectClose(frequencies(() => new Sampler({ temperature: 1, minP: 0.3, seed: 5 }), 40000), expected(kept, 1));
  });

  it("penalties and logit bias follow their formulas", () => {
    const s = new Sampler({ repetitionPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25 });
    for (const t of [1, 1, 4]) s.accept(t);
    const l = logits();
    s.sample(l);
    expect(l[1]).toBeCloseTo(3 / 2 - 0.5 - 2 * 0.25, 6); // positive logit divided, then OpenAI penalties
    expect(l[4]).toBeCloseTo(-1 * 2 - 0.5 - 0.25, 6);    // negative logit multiplied
    expect(l[3]).toBe(3);                                  // unseen tokens untouched
    const biased = new Sampler({ logitBias: { 7: 100, 1: -100 } });
    expect(biased.sample(logits())).toBe(7);
  });

  it("the same seed gives the same draws, another seed others", () => {
    const draws = (seed: number) => { const s = new Sampler({ temperature: 1.2, seed }); return Array.from({ length: 50 }, () => s.sample(logits())); };
    expect(draws(42)).toEqual(draws(42));
    expect(draws(42)).not.toEqual(draws(43));
    const r = new Rng(9);
    for (let i = 0; i < 1000; i++) { const v = r.next(); expect(v >= 0 && v < 1).toBe(true); }
  });

  it("refuses bad options with INVALID_ARGUMENT", () => {
    for (const o of [{ temperature: NaN }, { temperature: -1 }, { topP: 0 }, { topP: 1.5 }, { topK: 2.5 }, { minP: 2 }, { repetitionPenalty: 0 }, { seed: 1.5 }]) {
      expect(() => new Sampler(o), JSON.stringify(o)).toThrowError(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
  });
});

describe("stop strings", () => {
  it("holds back a possible stop string and cuts before it", () => {
    const m = new StopMatcher(["</s>", "STOP"]);
    expect(m.push("Hello <")).toEqual({ text: "Hello ", stopped: false });
    expect(m.push("/")).toEqual({ text: "", stopped: false });
    expect(m.push("x")).toEqual({ text: "</x", stopped: false });
    expect(m.push(" and ST")).toEqual({ text: " and ", stopped: false });
    expect(m.push("OP more")).toEqual({ text: "", stopped: true });
    const n = new StopMatcher(["ab"]);
    expect(n.push("xa")).toEqual({ text: "x", stopped: false });
    expect(n.flush()).toBe("a");
  });
});
