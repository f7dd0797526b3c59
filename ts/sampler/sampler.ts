// Turns a row of logits into the next token: logit bias, repetition/presence/frequency penalties,
// then greedy (temperature 0) or temperature → top-k → top-p → min-p → a draw from a seeded PRNG.
import { QwasmError } from "../errors";

export interface SamplingOptions {
  /** 0 (the default) picks the most likely token; ties go to the lowest id. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 keeps all. */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p; 1 keeps all. */
  topP?: number;
  /** Drop tokens whose probability is below minP × the top token's; 0 keeps all. */
  minP?: number;
  /** llama.cpp's repeat penalty: divides positive logits (multiplies negative ones) of seen tokens; 1 = off. */
  repetitionPenalty?: number;
  /** OpenAI's presence penalty: subtracted once from every seen token's logit. */
  presencePenalty?: number;
  /** OpenAI's frequency penalty: subtracted once per occurrence. */
  frequencyPenalty?: number;
  /** How many of the last tokens the penalties look at; -1 = all (the default). */
  penaltyLastN?: number;
  /** Added to the logit of each token id (OpenAI's logit_bias; -100 effectively bans a token). */
  logitBias?: Record<number, number> | Map<number, number>;
  /** Seed of the PRNG: the same seed and inputs give the same tokens. */
  seed?: number;
}

/** xoshiro128**: small, fast, good statistical quality; seeded through splitmix32. */
export class Rng {
  private s = new Uint32Array(4);

  constructor(seed: number) {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

function checkOptions(o: SamplingOptions): void {
  const bad = (name: string, value: unknown, rule: string) => {
    throw new QwasmError("INVALID_ARGUMENT", `sampling option ${name} = ${value}: ${rule}`);
  };
  const finite = (v: unknown) => typeof v === "number" && Number.isFinite(v);
  if (o.temperature !== undefined && !(finite(o.temperature) && o.temperature >= 0)) bad("temperature", o.temperature, "must be a number >= 0");
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad("topK", o.topK, "must be an integer >= 0");
  if (o.topP !== undefined && !(finite(o.topP) && o.topP > 0 && o.topP <= 1)) bad("topP", o.topP, "must be in (0, 1]");
  if (o.minP !== undefined && !(finite(o.minP) && o.minP >= 0 && o.minP <= 1)) bad("minP", o.minP, "must be in [0, 1]");
  if (o.repetitionPenalty !== undefined && !(finite(o.repetitionPenalty) && o.repetitionPenalty > 0)) bad("repetitionPenalty", o.repetitionPenalty, "must be > 0");
  if (o.presencePenalty !== undefined && !finite(o.presencePenalty)) bad("presencePenalty", o.presencePenalty, "must be a finite number");
  if (o.frequencyPenalty !== undefined && !finite(o.frequencyPenalty)) bad("frequencyPenalty", o.frequencyPenalty, "must be a finite number");
  if (o.penaltyLastN !== undefined && !(Number.isInteger(o.penaltyLastN) && o.penaltyLastN >= -1)) bad("penaltyLastN", o.penaltyLastN, "must be an integer >= -1");
  if (o.seed !== undefined && !Number.isInteger(o.seed)) bad("seed", o.seed, "must be an integer");
}

/** Index of the largest value; ties go to the lowest index (as llama.cpp's greedy sampler). */
export function argmax(logits: Float32Array): number {
  let best = 0;
  let bestValue = logits[0];
  for (let i = 1; i < logits.length; i++) {
    if (logits[i] > bestValue) { bestValue = logits[i]; best = i; }
  }
  return best;
}

export class Sampler {
  private readonly options: Required<Omit<SamplingOptions, "logitBias" | "seed">>;
  private readonly bias: [number, number][];
  private readonly rng: Rng;
  private readonly history: number[] = [];

  constructor(options: SamplingOptions = {}) {
    checkOptions(options);
    this.options = {
      temperature: options.temperature ?? 0,
      topK: options.topK ?? 0,
      topP: options.topP ?? 1,
      minP: options.minP ?? 0,
      repetitionPenalty: options.repetitionPenalty ?? 1,
      presencePenalty: options.presencePenalty ?? 0,
      frequencyPenalty: options.frequencyPenalty ?? 0,
      penaltyLastN: options.penaltyLastN ?? -1,
    };
    const bias = options.logitBias instanceof Map ? [...options.logitBias] : Object.entries(options.logitBias ?? {});
    this.bias = bias.map(([id, b]) => {
      const token = Number(id);
      if (!Number.isInteger(token) || token < 0 || !Number.isFinite(b)) {
        throw new QwasmError("INVALID_ARGUMENT", `logit bias ${id}: ${b} must map a token id to a finite number`);
      }
      return [token, b];
    });
    this.rng = new Rng(options.seed ?? 0x5eed);
  }

  /** Tokens the penalties count (the prompt and everything generated), in order. */
  accept(token: number): void {
    this.history.push(token);
  }

  /** Picks the next token. `logits` is modified in place (bias and penalties applied). */
  sample(logits: Float32Array): number {
    const o = this.options;
    for (const [id, b] of this.bias) if (id < logits.length) logits[id] += b;
    this.applyPenalties(logits);
    if (o.temperature === 0) return argmax(logits);

    // Candidates sorted by logit when a filter needs an order; otherwise all tokens.
    const n = logits.length;
    let ids: Int32Array;
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
    if (o.topK > 0 || o.topP < 1 || o.minP > 0) {
      // Tokens more than 50 tempered nats below the top carry < e^-50 of the mass each: they can
      // never be needed to reach top_p < 1 - 1e-15, so they need not be sorted.
      const floor = max - 50 * o.temperature;
      const keep: number[] = [];
      for (let i = 0; i < n; i++) if (logits[i] >= floor) keep.push(i);
      keep.sort((a, b) => logits[b] - logits[a] || a - b);
      ids = Int32Array.from(o.topK > 0 ? keep.slice(0, o.topK) : keep);
    } else {
      ids = new Int32Array(n);
      for (let i = 0; i < n; i++) ids[i] = i;
    }

    // Softmax of the tempered logits over the candidates, in f64.
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
      // ids are sorted here (minP > 0 forces the sorted path): probs[0] is the top token.
      const threshold = probs[0] * o.minP;
      let j = 1;
      while (j < count && probs[j] >= threshold) j++;
      count = j;
    }
    let total = 0;
    for (let j = 0; j < count; j++) total += probs[j];
    let r = this.rng.next() * total;
    for (let j = 0; j < count; j++) {
      r -= probs[j];
      if (r < 0) return ids[j];
    }
    return ids[count - 1];
  }

  private applyPenalties(logits: Float32Array): void {
    const { repetitionPenalty, presencePenalty, frequencyPenalty, penaltyLastN } = this.options;
    if (repetitionPenalty === 1 && presencePenalty === 0 && frequencyPenalty === 0) return;
    const start = penaltyLastN < 0 ? 0 : Math.max(0, this.history.length - penaltyLastN);
    const counts = new Map<number, number>();
    for (let i = start; i < this.history.length; i++) {
      const t = this.history[i];
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    for (const [token, count] of counts) {
      if (token >= logits.length) continue;
      let l = logits[token];
      if (repetitionPenalty !== 1) l = l > 0 ? l / repetitionPenalty : l * repetitionPenalty;
      l -= presencePenalty + count * frequencyPenalty;
      logits[token] = l;
    }
  }
}
