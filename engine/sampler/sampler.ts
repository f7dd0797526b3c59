// Turns a row of logits into the next token: logit bias, repetition/presence/frequency penalties,
// then greedy (temperature 0) or temperature → top-k → top-p → min-p → a draw from a seeded PRNG.
// The filters and the draw read the candidates in rank order, but never need the whole order: the
// candidates go to buckets of tempered logit, whole buckets are walked by their weights, and only
// the bucket where a cut falls or the draw lands is sorted (see rankedDraw).
import { QwasmError } from "../../platform/errors";

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

/** What constrained decoding needs from a grammar matcher. */
export interface SamplingConstraint {
  allows(token: number): boolean;
  /** Sets every logit the constraint refuses to -Infinity. */
  maskLogits(logits: Float32Array): void;
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

  /**
   * Picks the next token. `logits` is modified in place (bias and penalties applied). With a
   * constraint: a token drawn from the unconstrained distribution is kept when allowed (the common
   * case: no mask); otherwise the logits are restored, masked and drawn again with the next random
   * number (llama.cpp's common_sampler_sample does the same). Without filters this is exactly a draw
   * from the masked distribution: p(t) + (1 - Z) p(t) / Z = p(t) / Z, Z the allowed mass.
   */
  sample(logits: Float32Array, constraint?: SamplingConstraint): number {
    if (!constraint) return this.sampleUnconstrained(logits);
    const saved = savedRow(logits.length);
    saved.set(logits);
    const token = this.sampleUnconstrained(logits);
    if (constraint.allows(token)) return token;
    logits.set(saved.subarray(0, logits.length));
    constraint.maskLogits(logits);
    const masked = this.sampleUnconstrained(logits);
    if (!constraint.allows(masked)) {
      throw new QwasmError("INVALID_ARGUMENT",
        "no token that the grammar allows here has a finite logit (does a logit bias ban them all?)");
    }
    return masked;
  }

  private sampleUnconstrained(logits: Float32Array): number {
    const o = this.options;
    for (const [id, b] of this.bias) if (id < logits.length) logits[id] += b;
    this.applyPenalties(logits);
    if (o.temperature === 0) return argmax(logits);

    const n = logits.length;
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
    // No finite top (every logit -inf or NaN, or one +inf): nothing to weigh; take the best.
    if (!Number.isFinite(max)) return argmax(logits);
    if (o.topK > 0 || o.topP < 1 || o.minP > 0) return rankedDraw(logits, max, o, this.rng);
    const invT = 1 / o.temperature;

    // No filter: a draw over all tokens in id order, weights exp((logit - max) / T).
    const probs = scratch(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      probs[i] = tokenWeight(logits[i], max, invT);
      total += probs[i];
    }
    return draw(this.rng, probs, n, total, (j) => j);
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

/** The filters' options, defaults filled in. */
type Filters = Pick<Required<SamplingOptions>, "temperature" | "topK" | "topP" | "minP">;

/** Up to this top-k (or this many tokens above min-p's threshold, min-p alone), every token of the
 *  buckets that can be kept is ranked, and no other weighed. */
const GATHER_TOP_K = 4096;

/**
 * Temperature → top-k → top-p → min-p over the candidates ranked by logit, highest first, ties to
 * the lowest id, then a draw over the kept ones in that order. The candidates are the tokens at most
 * 50 tempered nats below the top: each of the others carries under e^-50 of the mass, so no top-p
 * < 1 - 1e-15 can need them.
 *
 * Nothing needs the whole ranking: only where the cuts fall and where the draw lands. The candidates
 * go to buckets by their tempered logit (see Buckets), in the rank order; the filters and the draw
 * walk whole buckets by their counts and weights, and rank token by token only the buckets where a
 * cut falls or the draw lands. That is one pass over the vocabulary for the weights (none for a small
 * top-k), one to fetch the tokens of those buckets, and a few small sorts. The weights are summed
 * bucket by bucket where a full ranking adds them one by one: the two differ by rounding only
 * (test/sampler/ranked.test.ts compares with a full ranking summed exactly).
 */
function rankedDraw(logits: Float32Array, max: number, o: Filters, rng: Rng): number {
  const invT = 1 / o.temperature;
  if (!(invT * 184.6649652337873 < Infinity)) return argmax(logits); // T so small that the buckets overflow: only the top counts
  const buckets = (theBuckets ??= new Buckets()).start(logits, max, invT, max - 50 * o.temperature);
  const { count, mass } = buckets;

  // min-p keeps the weights >= minP × the top token's (which weighs 1): every weight of the buckets
  // up to minPPasses is above that threshold, every weight from minPFails on below (the bucket of a
  // weight w is -128 log2 w within half a step; 0.02 steps more cover the rounding many times over).
  const threshold = o.minP * tokenWeight(max, max, invT);
  const thresholdStep = o.minP > 0 ? -128 * Math.log2(threshold) : Infinity;
  const minPPasses = Math.floor(thresholdStep - 0.52);
  const minPFails = Math.ceil(thresholdStep + 0.52);

  // The kept tokens: every bucket before cutB, and the first cutRanks tokens of bucket cutB (all
  // of them if ALL). An empty bucket weighs 0; a count is known where it is needed: for a bucket
  // ranked, and for every bucket with top-k.
  let cutB = 0;
  let cutRanks = ALL;
  const smallTopK = o.topK > 0 && o.topK <= GATHER_TOP_K;
  if (o.topK > 0) {
    // A small top-k: every token of the buckets that a sample of the vocabulary says hold twice k
    // tokens, ranked (and weighed), tells where the k-th is; if they hold fewer, count them all.
    const enough = smallTopK && buckets.rank(0, buckets.sampledBucket(2 * o.topK), true) >= o.topK;
    if (!enough) buckets.start(logits, max, invT, max - 50 * o.temperature).countAll();
    for (let b = 0, before = 0; b < BUCKETS && before < o.topK; b++) {
      if (count[b] === 0) continue;
      cutB = b;
      cutRanks = o.topK - before < count[b] ? o.topK - before : ALL;
      before += count[b];
    }
    if (!smallTopK) buckets.weighAll();
    else if (!enough) buckets.rank(0, cutB); // a few tokens: rank them all (this weighs them)
  } else if (o.topP === 1 && minPFails <= BUCKETS && buckets.sampled(minPFails - 1) * 16 <= GATHER_TOP_K) {
    // min-p alone, and few tokens above its threshold (by a sample): rank them all, weigh no other.
    buckets.rank(0, minPFails - 1, true);
    cutB = minPFails - 1;
    while (mass[cutB] === 0) cutB--; // bucket 0 holds the top token
  } else {
    count.fill(0); // (stale counts would read as candidates to rank)
    buckets.weighAll();
    cutB = BUCKETS - 1;
    while (mass[cutB] === 0) cutB--;
  }
  const u = rng.next();
  if (!smallTopK) buckets.fetchFor(cutB, cutRanks, o.topP, minPPasses, minPFails, u);

  if (o.topP < 1) {
    // The first ranks whose weight reaches topP × the weight of all (those top-k keeps).
    const target = o.topP * buckets.keptWeight(cutB, cutRanks);
    let sum = 0;
    cut: for (let b = 0; b <= cutB; b++) {
      if (mass[b] === 0) continue;
      if (b >= minPFails) { cutB = b; cutRanks = ALL; break; } // min-p cuts before b anyway
      const ranks = b < cutB ? ALL : cutRanks;
      if (ranks === ALL && sum + mass[b] < target) { sum += mass[b]; continue; }
      const at = buckets.ranked(b);
      for (let j = 0, end = Math.min(ranks, count[b]); j < end; j++) {
        sum += buckets.weights[at + j];
        if (sum >= target) { cutB = b; cutRanks = j + 1 < count[b] ? j + 1 : ALL; break cut; }
      }
    }
  }

  if (o.minP > 0) {
    // The ranks before the first (after the top token) whose weight is below the threshold.
    let previous = 0;
    cut: for (let b = 0; b <= cutB; b++) {
      if (mass[b] === 0) continue;
      if (b >= minPFails) { cutB = previous; cutRanks = ALL; break; } // bucket 0 never fails
      if (b > minPPasses) {
        const ranks = b < cutB ? ALL : cutRanks;
        const at = buckets.ranked(b);
        for (let j = b === 0 ? 1 : 0, end = Math.min(ranks, count[b]); j < end; j++) {
          if (buckets.weights[at + j] >= threshold) continue;
          if (j > 0) { cutB = b; cutRanks = j; } else { cutB = previous; cutRanks = ALL; }
          break cut;
        }
      }
      previous = b;
    }
  }

  // The draw: the bucket where it lands, then the rank.
  let r = u * buckets.keptWeight(cutB, cutRanks);
  for (let b = 0; b <= cutB; b++) {
    if (mass[b] === 0) continue;
    const ranks = b < cutB ? ALL : cutRanks;
    if (ranks === ALL && r >= mass[b]) { r -= mass[b]; continue; }
    const at = buckets.ranked(b);
    const end = Math.min(ranks, count[b]);
    for (let j = 0; j < end; j++) if ((r -= buckets.weights[at + j]) < 0) return buckets.ids[at + j];
    return buckets.ids[at + end - 1]; // rounding at the bucket's edge
  }
  const at = buckets.ranked(cutB); // rounding at the end
  return buckets.ids[at + Math.min(cutRanks, count[cutB]) - 1];
}

/** cutRanks for a whole bucket. */
const ALL = 0x7fffffff;

/**
 * Buckets over the 50 tempered nats below the top: a candidate's bucket is where its tempered logit
 * x = (logit - max) / T falls in steps of ln2/128, s = -round(x × 128 / ln2), so that its weight is
 * 2^(-s/128) e^r with |r| <= ln2/256: a bucket's weight is 2^(-s/128) times the sum of its e^r, each
 * a short series. A higher logit never has a larger s (every operation is monotonic): the buckets
 * hold the ranking's runs, in order.
 */
const BUCKETS = 9240; // 50 nats are 9233.2 steps

/** The scratch of rankedDraw, reused by every draw (sampling is synchronous; nothing is allocated
 *  per draw once the largest vocabulary has been seen). */
class Buckets {
  /** Candidates of each bucket: of every bucket after countAll, of the ranked ones after ranking. */
  readonly count = new Int32Array(BUCKETS);
  /** The weight of each bucket's candidates (weighed, or summed over the ranked tokens; 0 for an
   *  empty bucket), and its sum of e^r. */
  readonly mass = new Float64Array(BUCKETS);
  private readonly series = new Float64Array(BUCKETS);
  /** The ranked candidates of the buckets ranked in this draw, bucket after bucket, and their weights. */
  ids = new Int32Array(0);
  weights = new Float64Array(0);
  private used = 0;
  /** Where each bucket's ranked candidates start in `ids`; -1 if not ranked in this draw. */
  private readonly rankedAt = new Int32Array(BUCKETS).fill(-1);
  private readonly rankedBuckets: number[] = [];
  private readonly pending: number[] = [];
  /** Tokens fetched by a pass, each bucket's next free place in `ids`, sort scratch. */
  private fetched = new Int32Array(0);
  private readonly next = new Int32Array(BUCKETS);
  private keys = new Uint32Array(0);
  private spareIds = new Int32Array(0);
  private spareKeys = new Uint32Array(0);
  private readonly digits = new Int32Array(RADIX);
  private logits: Float32Array = new Float32Array(0);
  /** The logits' bits. */
  private bits: Uint32Array = new Uint32Array(0);
  private max = 0;
  private invT = 1;
  private floor = 0;
  /** Steps of ln2/128 per logit. */
  private scale = 1;

  start(logits: Float32Array, max: number, invT: number, floor: number): this {
    for (const b of this.rankedBuckets) this.rankedAt[b] = -1;
    this.rankedBuckets.length = 0;
    this.used = 0;
    this.logits = logits;
    this.bits = new Uint32Array(logits.buffer, logits.byteOffset, logits.length);
    this.max = max;
    this.invT = invT;
    this.floor = floor;
    this.scale = invT * 184.6649652337873; // 128 / ln 2
    const n = logits.length;
    if (this.ids.length < n) {
      this.ids = new Int32Array(n);
      this.weights = new Float64Array(n);
      this.fetched = new Int32Array(n);
    }
    return this;
  }

  /** The bucket of a candidate. */
  private bucket(l: number): number {
    return -((l - this.max) * this.scale + 6755399441055744 - 6755399441055744) | 0;
  }

  /**
   * The first bucket where the candidates of every 16th token reach `tokens` / 16 (and 8 more: the
   * buckets up to there likely hold `tokens`), or the last bucket. Sets `count` (of the sample).
   */
  sampledBucket(tokens: number): number {
    this.sampled(BUCKETS - 1);
    const want = Math.ceil(tokens / 16) + 8;
    for (let b = 0, have = 0; b < BUCKETS; b++) if ((have += this.count[b]) >= want) return b;
    return BUCKETS - 1;
  }

  /** How many of every 16th token are candidates of the buckets up to `last`; sets `count` (of
   *  that sample). */
  sampled(last: number): number {
    const { logits, floor, count } = this;
    count.fill(0);
    this.mass.fill(0);
    let have = 0;
    for (let i = 0; i < logits.length; i += 16) {
      const l = logits[i];
      if (!(l >= floor)) continue;
      const b = this.bucket(l);
      if (b <= last) { count[b]++; have++; }
    }
    return have;
  }

  /** Counts the candidates of each bucket. */
  countAll(): void {
    const { logits, max, scale, floor, count } = this;
    count.fill(0);
    this.mass.fill(0); // ranking weighs the buckets it ranks
    for (let i = 0; i < logits.length; i++) {
      const l = logits[i];
      if (!(l >= floor)) continue;
      // bucket(l), inlined; 1.5 × 2^52 rounds to an integer, constants as literals (see expNonPositive)
      const s = -((l - max) * scale + 6755399441055744 - 6755399441055744) | 0;
      if (s < 9240) count[s]++; // BUCKETS
    }
  }

  /** Weighs the candidates of each bucket: e^r to r^4 (within 1.3e-15, since |r| <= ln2/256),
   *  2^(-s/128) once per bucket. (No count: that would cost a quarter more.) */
  weighAll(): void {
    const { logits, max, scale, floor, series } = this;
    series.fill(0);
    for (let i = 0; i < logits.length; i++) {
      const l = logits[i];
      if (!(l >= floor)) continue;
      const y = (l - max) * scale;
      const k = y + 6755399441055744 - 6755399441055744;
      const s = -k | 0;
      if (s >= 9240) continue; // BUCKETS
      const r = (y - k) * 0.005415212348111709; // ln2 / 128
      series[s] += 1 + r * (1 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24))));
    }
    for (let b = 0; b < BUCKETS; b++) this.mass[b] = series[b] * EXP_FRACTION[b & 127] * EXP_POWER[b >> 7];
  }

  /** The weight of the buckets before cutB and of the first cutRanks candidates of cutB. */
  keptWeight(cutB: number, cutRanks: number): number {
    let sum = 0;
    for (let b = 0; b < cutB; b++) sum += this.mass[b];
    if (cutRanks === ALL) return sum + this.mass[cutB];
    const at = this.ranked(cutB);
    for (let j = 0; j < cutRanks; j++) sum += this.weights[at + j];
    return sum;
  }

  /**
   * Ranks, in one pass, the buckets the filters and the draw will likely rank one by one (any other
   * they need is ranked when needed): where top-p's cut falls (or top-k's, before top-p's normalizer),
   * min-p's uncertain buckets before it, and where the draw `u` lands for any cut among those.
   */
  fetchFor(cutB: number, cutRanks: number, topP: number, minPPasses: number, minPFails: number, u: number): void {
    const mass = this.mass;
    if (cutRanks !== ALL) this.rank(cutB, cutB); // top-k's cut, for top-p's normalizer
    let topPCut = cutB;
    if (topP < 1) {
      const target = topP * this.keptWeight(cutB, cutRanks);
      for (let b = 0, sum = 0; b < cutB; b++) if ((sum += mass[b]) >= target) { topPCut = b; break; }
    }
    // The cut is in a bucket from first to last (or ends one).
    let first = topPCut;
    let last = topPCut;
    if (minPFails <= topPCut) {
      last = minPFails - 1;
      while (last > 0 && mass[last] === 0) last--;
    }
    if (minPPasses + 1 < first) first = minPPasses + 1;
    let below = 0;
    for (let b = 0; b < first; b++) below += mass[b];
    let through = below;
    for (let b = first; b <= last; b++) through += mass[b];
    const landsFrom = this.landing(u * below, last);
    const landsTo = this.landing(u * through, last);
    if (landsTo + 1 >= first) this.rank(Math.min(first, landsFrom), last);
    else this.rank(landsFrom, landsTo, false, first, last);
  }

  /** The bucket where a draw r lands, walking bucket weights (at most `last`). */
  private landing(r: number, last: number): number {
    for (let b = 0; b < last; b++) if (this.mass[b] > 0 && (r -= this.mass[b]) < 0) return b;
    return last;
  }

  /** Ranks bucket b, if not yet ranked in this draw; returns where its ranked candidates start. */
  ranked(b: number): number {
    if (this.rankedAt[b] < 0) this.rank(b, b);
    return this.rankedAt[b];
  }

  /**
   * Ranks the buckets from..to and from2..to2 (not yet ranked): fetches their candidates in one pass
   * over the logits (no branch on the data: a token in range advances the end), counts and places
   * them by bucket, then ranks each (highest logit first, ties to the lowest id), weighs them and
   * sums each bucket's weight in rank order.
   */
  rank(from: number, to: number, every = false, from2 = 1, to2 = 0): number {
    const { logits, max, invT, floor, count, mass, rankedAt, next } = this;
    const pending = this.pending;
    pending.length = 0;
    // The tokens to fetch, about (a count, or a weight over the bucket's least weight).
    let expected = 0;
    for (let pass = 0; pass < 2; pass++) {
      for (let b = pass ? from2 : from; b <= (pass ? to2 : to); b++) {
        if (!(every || count[b] > 0 || mass[b] > 0) || rankedAt[b] >= 0) continue;
        pending.push(b);
        expected += every ? 16 * count[b] : count[b] || mass[b] * 2 ** ((b + 1) / 128);
      }
    }
    if (pending.length === 0) return 0;
    for (const b of pending) { rankedAt[b] = PENDING; count[b] = 0; }
    this.rankedBuckets.push(...pending);
    const step = 1 / this.scale; // a bucket's width in logits; the ranges hold a quarter more each side
    const low = Math.max(floor, max - (to + 0.75) * step);
    const high = max - (from - 0.75) * step;
    const low2 = from2 <= to2 ? Math.max(floor, max - (to2 + 0.75) * step) : Infinity;
    const high2 = max - (from2 - 0.75) * step;
    const fetched = this.fetched;
    let m = 0;
    if (expected < logits.length / 32) {
      // Few: one branch, taken rarely, is cheaper than a store for every token (but a branch per
      // comparison would be mispredicted: many tokens are above one end of a range).
      for (let i = 0; i < logits.length; i++) {
        const l = logits[i];
        if ((+(l >= low) & +(l <= high)) | (+(l >= low2) & +(l <= high2))) fetched[m++] = i;
      }
    } else {
      // Many: no branch on the data.
      for (let i = 0; i < logits.length; i++) {
        const l = logits[i];
        fetched[m] = i;
        m += (+(l >= low) & +(l <= high)) | (+(l >= low2) & +(l <= high2));
      }
    }
    // Keep the candidates of the pending buckets (the ranges hold a little more), and count them.
    let kept = 0;
    for (let j = 0; j < m; j++) {
      const l = logits[fetched[j]];
      const b = this.bucket(l);
      if (l >= floor && b < BUCKETS && rankedAt[b] === PENDING) { count[b]++; fetched[kept++] = fetched[j]; }
    }
    let at = this.used;
    for (const b of pending) {
      if (count[b] === 0 && !every) throw new Error(`sampler: no candidate found in bucket ${b}`); // cannot happen
      rankedAt[b] = next[b] = at;
      at += count[b];
    }
    for (let j = 0; j < kept; j++) this.ids[next[this.bucket(logits[fetched[j]])]++] = fetched[j]; // in increasing id order
    for (const b of pending) {
      const start = rankedAt[b];
      const end = start + count[b];
      if (count[b] > 1) this.sortRun(start, count[b]);
      let sum = 0;
      for (let j = start; j < end; j++) sum += this.weights[j] = tokenWeight(logits[this.ids[j]], max, invT);
      mass[b] = sum;
    }
    const ranked = at - this.used;
    this.used = at;
    return ranked;
  }

  /** Sorts ids[at, at + size) by logit, highest first, stably: a radix sort of the logits'
   *  order-preserving bits (insertion for a few). */
  private sortRun(at: number, size: number): void {
    this.reserve(size);
    const bits = this.bits;
    const run = this.ids.subarray(at, at + size);
    let keys = this.keys;
    for (let j = 0; j < size; j++) {
      let u = bits[run[j]];
      if (u === 0x80000000) u = 0; // -0 ranks with +0
      keys[j] = u >= 0x80000000 ? u : 0x7fffffff - u; // the float's descending order as an ascending integer
    }
    if (size <= 32) {
      for (let j = 1; j < size; j++) {
        const key = keys[j];
        const id = run[j];
        let i = j - 1;
        for (; i >= 0 && keys[i] > key; i--) { keys[i + 1] = keys[i]; run[i + 1] = run[i]; }
        keys[i + 1] = key;
        run[i + 1] = id;
      }
      return;
    }
    let ids = run;
    let spareKeys = this.spareKeys;
    let spareIds = this.spareIds;
    const digits = this.digits;
    for (let shift = 0; shift < 32; shift += RADIX_BITS) {
      digits.fill(0);
      for (let j = 0; j < size; j++) digits[(keys[j] >>> shift) & (RADIX - 1)]++;
      if (digits[(keys[0] >>> shift) & (RADIX - 1)] === size) continue; // one digit for all: order unchanged
      for (let d = 0, to = 0; d < RADIX; d++) { const c = digits[d]; digits[d] = to; to += c; }
      for (let j = 0; j < size; j++) {
        const to = digits[(keys[j] >>> shift) & (RADIX - 1)]++;
        spareKeys[to] = keys[j];
        spareIds[to] = ids[j];
      }
      [keys, spareKeys] = [spareKeys, keys];
      [ids, spareIds] = [spareIds, ids];
    }
    if (ids !== run) run.set(ids.subarray(0, size));
  }

  /** Sort scratch for `size` tokens. */
  private reserve(size: number): void {
    if (this.keys.length >= size) return;
    const length = Math.min(this.logits.length, Math.max(size, 2 * this.keys.length));
    this.keys = new Uint32Array(length);
    this.spareKeys = new Uint32Array(length);
    this.spareIds = new Int32Array(length);
  }
}

/** rankedAt of a bucket being ranked. */
const PENDING = -2;
const RADIX_BITS = 11;
const RADIX = 1 << RADIX_BITS;
let theBuckets: Buckets | undefined;

/** A draw from the first `count` weights (which sum to `total`), mapped to token ids by `id`. */
function draw(rng: Rng, probs: Float64Array, count: number, total: number, id: (j: number) => number): number {
  let r = rng.next() * total;
  for (let j = 0; j < count; j++) {
    r -= probs[j];
    if (r < 0) return id(j);
  }
  return id(count - 1);
}

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

/** The logits before a constrained draw, reused across calls (sampling is synchronous). */
let savedLogits = new Float32Array(0);
function savedRow(n: number): Float32Array {
  if (savedLogits.length < n) savedLogits = new Float32Array(n);
  return savedLogits;
}

/** A float64 scratch row, reused across calls (sampling is synchronous). */
let scratchRow = new Float64Array(0);
function scratch(n: number): Float64Array {
  if (scratchRow.length < n) scratchRow = new Float64Array(Math.max(n, 2 * scratchRow.length));
  return scratchRow;
}
