// Turns a row of logits into the next token: logit bias, repetition/presence/frequency penalties,
// then greedy (temperature 0) or temperature → top-k → top-p → min-p → a draw from a seeded PRNG.
// The filters need the candidates in rank order, but never more of that order than they read: a
// histogram of the logits finds how many of the best tokens can matter, and only those are sorted.
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
  /**
   * How many of the most recent tokens, prompt and generated alike, the repetition, presence and
   * frequency penalties look at (llama.cpp's penalty_last_n / --repeat-last-n): 64 by default (as
   * llama.cpp), -1 = the whole context (every prompt and generated token), 0 = penalties off. In
   * that window the repetition and presence penalties apply once to each distinct token, the
   * frequency penalty once per occurrence (llama_sampler_penalties).
   */
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
  /** Whether any penalty is on: otherwise accepted tokens need not be remembered. */
  private readonly penalize: boolean;
  /** The penalty window: a ring of the last penaltyLastN tokens, oldest at windowStart (unused for -1). */
  private readonly window: number[] = [];
  private windowStart = 0;
  /** Occurrences of each token in the window. */
  private readonly counts = new Map<number, number>();

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
      penaltyLastN: options.penaltyLastN ?? 64,
    };
    const o = this.options;
    this.penalize = o.penaltyLastN !== 0 && (o.repetitionPenalty !== 1 || o.presencePenalty !== 0 || o.frequencyPenalty !== 0);
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

  /** A token the penalties count: every prompt token, then every generated one, in order. */
  accept(token: number): void {
    if (!this.penalize) return;
    const lastN = this.options.penaltyLastN;
    this.counts.set(token, (this.counts.get(token) ?? 0) + 1);
    if (lastN > 0 && this.window.length === lastN) {
      // Full ring: the oldest token leaves the window where the new one goes.
      const old = this.window[this.windowStart];
      const c = this.counts.get(old)! - 1;
      if (c === 0) this.counts.delete(old);
      else this.counts.set(old, c);
      this.window[this.windowStart] = token;
      this.windowStart = (this.windowStart + 1) % lastN;
    } else if (lastN > 0) {
      this.window.push(token); // -1 never evicts: the counts are the whole window
    }
  }

  /** Picks the next token. `logits` is modified in place (bias and penalties applied). */
  sample(logits: Float32Array): number {
    const o = this.options;
    for (const [id, b] of this.bias) if (id < logits.length) logits[id] += b;
    this.applyPenalties(logits);
    if (o.temperature === 0) return argmax(logits);

    const n = logits.length;
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
    // No finite top (every logit -inf or NaN, or one +inf): nothing to weigh; take the best.
    if (!Number.isFinite(max)) return argmax(logits);
    const invT = 1 / o.temperature;
    if (o.topK > 0 || o.topP < 1 || o.minP > 0) return this.sampleRanked(logits, max);

    // No filter: a draw over all tokens in id order, weights exp((logit - max) / T).
    const probs = scratch(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      probs[i] = tokenWeight(logits[i], max, invT);
      total += probs[i];
    }
    return draw(this.rng, probs, n, total, (j) => j);
  }

  /**
   * Temperature → top-k → top-p → min-p over the candidates ranked by logit (ties to the lowest id).
   * The candidates are the tokens at most 50 tempered nats below the top: each of the others carries
   * under e^-50 of the mass, so no top-p < 1 - 1e-15 can need them. Only a ranked prefix is sorted:
   * the tokens of the best histogram buckets, enough for top-k's k or top-p's mass or min-p's
   * threshold; should the filters read past it (float rounding at a bucket's edge), every candidate is.
   */
  private sampleRanked(logits: Float32Array, max: number): number {
    const o = this.options;
    const invT = 1 / o.temperature;
    const floor = max - 50 * o.temperature;
    const scale = BUCKETS / (50 * o.temperature); // buckets per logit
    // top-p without top-k normalizes over all candidates: their weights, summed in id order.
    const needMass = o.topK === 0 && o.topP < 1;
    const inBucket = new Int32Array(BUCKETS);
    const massIn = new Float64Array(needMass ? BUCKETS : 0);
    let sum = needMass ? histogramWithMass(logits, floor, max, scale, invT, inBucket, massIn) : 0;
    if (!needMass) histogram(logits, floor, max, scale, inBucket);
    let candidates = 0;
    for (let b = 0; b < BUCKETS; b++) candidates += inBucket[b];

    // The last bucket the ranked prefix needs.
    let cut = BUCKETS - 1;
    if (o.topK > 0) {
      for (let b = 0, have = 0; b < BUCKETS; b++) if ((have += inBucket[b]) >= o.topK) { cut = b; break; }
    } else if (o.topP < 1) {
      const target = o.topP * sum * (1 + 1e-9);
      for (let b = 0, have = 0; b < BUCKETS; b++) if ((have += massIn[b]) >= target) { cut = b; break; }
    } else {
      // min-p alone keeps weights >= minP (the top token weighs 1): logits >= max + T ln(minP). One
      // bucket more, and every token past the prefix weighs under 0.96 minP: min-p stops before it.
      cut = Math.min(BUCKETS - 1, Math.max(0, bucketIndex(max + o.temperature * Math.log(o.minP), max, scale) + 1));
    }
    const prefixDecidesMinP = o.topK === 0 && o.topP === 1;

    for (;;) {
      let size = 0;
      for (let b = 0; b <= cut; b++) size += inBucket[b];
      const ids = rankedPrefix(logits, floor, max, scale, cut, size);
      const complete = ids.length === candidates; // the prefix is every candidate
      const kept = o.topK > 0 ? ids.subarray(0, Math.min(o.topK, ids.length)) : ids;
      const probs = scratch(kept.length);
      for (let j = 0; j < kept.length; j++) probs[j] = tokenWeight(logits[kept[j]], max, invT);
      if (o.topK > 0) {
        sum = 0;
        for (let j = 0; j < kept.length; j++) sum += probs[j];
      }
      const count = filteredCount(probs, kept.length, o.topK > 0 || complete || prefixDecidesMinP ? kept.length : candidates,
        sum, o.topP, o.minP);
      if (count < 0) { cut = BUCKETS - 1; continue; } // read past the prefix: rank every candidate
      let total = 0;
      for (let j = 0; j < count; j++) total += probs[j];
      return draw(this.rng, probs, count, total, (j) => kept[j]);
    }
  }

  private applyPenalties(logits: Float32Array): void {
    if (!this.penalize) return;
    const { repetitionPenalty, presencePenalty, frequencyPenalty } = this.options;
    for (const [token, count] of this.counts) {
      if (token >= logits.length) continue;
      let l = logits[token];
      if (repetitionPenalty !== 1) l = l > 0 ? l / repetitionPenalty : l * repetitionPenalty;
      l -= presencePenalty + count * frequencyPenalty;
      logits[token] = l;
    }
  }
}

/** Histogram buckets over the 50 tempered nats below the top logit. */
const BUCKETS = 1024;

/** Counts the candidates (logit >= floor) of each bucket. */
function histogram(logits: Float32Array, floor: number, max: number, scale: number, inBucket: Int32Array): void {
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i];
    if (l >= floor) inBucket[bucketIndex(l, max, scale)]++;
  }
}

/** histogram, and the weight of each bucket's tokens; returns the weight of all, summed in id order. */
function histogramWithMass(logits: Float32Array, floor: number, max: number, scale: number, invT: number,
  inBucket: Int32Array, massIn: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i];
    if (!(l >= floor)) continue;
    const b = bucketIndex(l, max, scale);
    const w = tokenWeight(l, max, invT);
    inBucket[b]++;
    massIn[b] += w;
    sum += w;
  }
  return sum;
}

/** The bucket of a logit (>= the floor): 0 for the top, never less for a lower logit. */
function bucketIndex(l: number, max: number, scale: number): number {
  const b = ((max - l) * scale) | 0;
  return b < 1024 ? b : 1023; // BUCKETS, as literals (see expNonPositive)
}

/**
 * How many of the ranked candidates top-p then min-p keep, reading `probs` (weights of the first
 * `known` ranked candidates, of `count` in all) and `sum` (the normalizer of top-p); -1 where the
 * answer needs candidates past the known ones.
 */
function filteredCount(probs: Float64Array, known: number, count: number, sum: number, topP: number, minP: number): number {
  if (topP < 1) {
    let cumulative = 0;
    let j = 0;
    for (; j < known; j++) {
      cumulative += probs[j] / sum;
      if (cumulative >= topP) { count = j + 1; break; }
    }
    if (j === known && count > known) return -1;
  }
  if (minP > 0) {
    const threshold = probs[0] * minP; // probs[0] is the top token
    let j = 1;
    while (j < count && j < known && probs[j] >= threshold) j++;
    if (j === known && count > known) return -1;
    count = j;
  }
  return count;
}

/** A draw from the first `count` weights (which sum to `total`), mapped to token ids by `id`. */
function draw(rng: Rng, probs: Float64Array, count: number, total: number, id: (j: number) => number): number {
  let r = rng.next() * total;
  for (let j = 0; j < count; j++) {
    r -= probs[j];
    if (r < 0) return id(j);
  }
  return id(count - 1);
}

/**
 * The `size` candidates (logit >= floor) whose bucket is at most `cut`, sorted by logit, highest
 * first, ties to the lowest id: the first ranks of the sort of every candidate, since a bucket holds
 * all the tokens of its logit range. A stable radix sort of the logits' order-preserving bits, over
 * ids collected in increasing order: equal logits keep the lowest id first.
 */
function rankedPrefix(logits: Float32Array, floor: number, max: number, scale: number, cut: number, size: number): Int32Array {
  const bits = new Uint32Array(logits.buffer, logits.byteOffset, logits.length);
  let ids = new Int32Array(size);
  let keys = new Uint32Array(size);
  let m = 0;
  // Every logit of the buckets up to `cut` is above `low` (by a bucket's width, far past rounding):
  // one comparison turns most tokens away.
  const low = Math.max(floor, max - (cut + 2) / scale);
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i];
    if (!(l >= low) || bucketIndex(l, max, scale) > cut) continue;
    let u = bits[i];
    if (u === 0x80000000) u = 0; // -0 ranks with +0
    keys[m] = u >= 0x80000000 ? u : 0x7fffffff - u; // the float's descending order as an ascending integer
    ids[m++] = i;
  }
  let spareIds = new Int32Array(size);
  let spareKeys = new Uint32Array(size);
  const counts = new Int32Array(RADIX);
  for (let shift = 0; shift < 32; shift += RADIX_BITS) {
    counts.fill(0);
    for (let j = 0; j < m; j++) counts[(keys[j] >>> shift) & (RADIX - 1)]++;
    if (counts[(keys[0] >>> shift) & (RADIX - 1)] === m) continue; // one digit for all: order unchanged
    for (let d = 0, at = 0; d < RADIX; d++) { const c = counts[d]; counts[d] = at; at += c; }
    for (let j = 0; j < m; j++) {
      const to = counts[(keys[j] >>> shift) & (RADIX - 1)]++;
      spareKeys[to] = keys[j];
      spareIds[to] = ids[j];
    }
    [keys, spareKeys] = [spareKeys, keys];
    [ids, spareIds] = [spareIds, ids];
  }
  return ids;
}

const RADIX_BITS = 11;
const RADIX = 1 << RADIX_BITS;

/** exp((logit - max) / T), the unnormalized probability of a token at temperature T. */
export function tokenWeight(logit: number, max: number, invT: number): number {
  return expNonPositive((logit - max) * invT);
}

/** 2^(-j/128) for j in 0..127, and 2^-i for i in 0..1023. */
const EXP_FRACTION = Float64Array.from({ length: 128 }, (_, j) => 2 ** (-j / 128));
const EXP_POWER = Float64Array.from({ length: 1024 }, (_, i) => 2 ** -i);

/**
 * e^x for x <= 0, within 2 ulp of Math.exp and several times faster (the sampler takes one per
 * token of the vocabulary): x = -(i + j/128) ln 2 + r with |r| <= ln2/256, e^r by its series to r^5.
 * The constants are literals so that the compiler folds them (a module variable is reloaded).
 */
export function expNonPositive(x: number): number {
  if (!(x > -700 && x <= 0)) return Math.exp(x);
  const magic = 6755399441055744; // 1.5 * 2^52: adding and subtracting it rounds to an integer
  const k = x * 184.6649652337873 + magic - magic; // 128 / ln 2
  // ln2/128 = 0.00541521234663378 + 1.4907929134926466e-12, the first part with 32 significant bits
  // (fdlibm's ln2_hi / 128), so that k times it is exact.
  const r = x - k * 0.00541521234663378 - k * 1.4907929134926466e-12;
  const p = 1 + r * (1 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120)))));
  const steps = -k;
  return p * EXP_FRACTION[steps & 127] * EXP_POWER[steps >> 7];
}

/** A float64 scratch row, reused across calls (sampling is synchronous). */
let scratchRow = new Float64Array(0);
function scratch(n: number): Float64Array {
  if (scratchRow.length < n) scratchRow = new Float64Array(Math.max(n, 2 * scratchRow.length));
  return scratchRow;
}
