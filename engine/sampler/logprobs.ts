// Log probabilities of a row of logits: the log-softmax of the model's raw logits, taken before the
// sampler applies logit bias, penalties, temperature, its filters or a constraint. That is what
// OpenAI reports (a token's logprob does not change with temperature or logit_bias) and what
// llama.cpp's server reports unless post_sampling_probs is set.

/** The most tokens OpenAI's top_logprobs asks for. */
export const MAX_TOP_LOGPROBS = 20;

export class RowLogprobs {
  /** log Σ exp(logit), in f64. */
  readonly logSumExp: number;
  /** The `top` most likely token ids, most likely first, ties to the lowest id. */
  readonly top: number[];

  private readonly logits: Float32Array;

  /** Reads the row now: call before the sampler changes it in place. `copy` (the row's length) is
   *  where the row is kept: a buffer the caller reuses from token to token (a fresh 0.6 MB copy per
   *  token is garbage V8 must collect). */
  constructor(logits: Float32Array, top: number, copy: Float32Array) {
    const n = logits.length;
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
    let sum = 0;
    if (Number.isFinite(max)) for (let i = 0; i < n; i++) sum += Math.exp(logits[i] - max);
    this.logSumExp = Number.isFinite(max) ? max + Math.log(sum) : max;
    this.top = topIds(logits, Math.min(top, n));
    // The row itself is kept for the token that will be drawn, not known yet (see logprob).
    copy.set(logits);
    this.logits = copy;
  }

  /** log p(token). */
  logprob(token: number): number {
    return this.logits[token] - this.logSumExp;
  }
}

/** The k largest entries' indices, largest first, ties to the lowest index (one pass, k small). */
function topIds(logits: Float32Array, k: number): number[] {
  const ids: number[] = [];
  if (k <= 0) return ids;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (v !== v) continue; // NaN
    if (ids.length === k && !(v > logits[ids[k - 1]])) continue;
    let j = ids.length < k ? ids.length : k - 1;
    // Insert before every entry it beats (strictly greater: an earlier, lower id wins ties).
    while (j > 0 && v > logits[ids[j - 1]]) {
      if (j < k) ids[j] = ids[j - 1];
      j--;
    }
    ids[j] = i;
  }
  return ids;
}
