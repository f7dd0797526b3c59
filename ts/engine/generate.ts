// Generation for one sequence: prefill the prompt, then sample token by token, streaming text that
// never splits a UTF-8 character and never shows the start of a stop string before it is known
// not to be one. Stops at the model's end-of-generation tokens, a stop string, max tokens, the
// context's end, or an AbortSignal.
import { QwasmError } from "../errors";
import { prefill, type Qwen2Model } from "../model/model";
import { Sampler, type SamplingOptions } from "../sampler/sampler";
import { StreamDecoder, type Tokenizer } from "../tokenizer";

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate; default: until the context is full. */
  maxTokens?: number;
  /** Generation ends before the first occurrence of any of these strings (not included). */
  stop?: string[];
  /** Keep going past end-of-generation tokens (for benchmarks). */
  ignoreEos?: boolean;
  signal?: AbortSignal;
}

export type FinishReason = "stop" | "length" | "abort";

export interface GenerationStats {
  promptTokens: number;
  completionTokens: number;
  prefillMs: number;
  decodeMs: number;
}

export interface GenerationChunk {
  /** Text to append (may be empty while bytes of a character or a possible stop string wait). */
  text: string;
  /** The token just sampled, or -1 for the final chunk. */
  token: number;
  finishReason?: FinishReason;
  stats?: GenerationStats;
}

/** Holds back text that could still become a stop string, and cuts at the first stop string. */
class StopMatcher {
  private pending = "";
  constructor(private readonly stops: string[]) {}

  /** Returns the text safe to emit, and whether a stop string was found. */
  push(text: string): { text: string; stopped: boolean } {
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      const out = this.pending.slice(0, cut);
      this.pending = "";
      return { text: out, stopped: true };
    }
    // Keep the longest suffix that is a prefix of some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > keep; n--) {
        if (this.pending.endsWith(s.slice(0, n))) { keep = n; break; }
      }
    }
    const out = this.pending.slice(0, this.pending.length - keep);
    this.pending = this.pending.slice(this.pending.length - keep);
    return { text: out, stopped: false };
  }

  flush(): string {
    const out = this.pending;
    this.pending = "";
    return out;
  }
}

/**
 * Generates from `promptIds` (the KV cache is filled from position 0). Yields text deltas; the last
 * chunk has a finishReason and the stats.
 */
export async function* generate(model: Qwen2Model, tokenizer: Tokenizer, promptIds: number[],
  options: GenerateOptions = {}): AsyncGenerator<GenerationChunk> {
  const forward = model.forward;
  const contextLength = forward.contextLength;
  if (promptIds.length === 0) throw new QwasmError("INVALID_ARGUMENT", "the prompt is empty");
  if (promptIds.length >= contextLength) {
    throw new QwasmError("CONTEXT_OVERFLOW",
      `the prompt has ${promptIds.length} tokens; the context holds ${contextLength} (prompt + at least one generated token)`);
  }
  const maxTokens = options.maxTokens ?? contextLength - promptIds.length;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) {
    throw new QwasmError("INVALID_ARGUMENT", `maxTokens must be a non-negative integer, got ${options.maxTokens}`);
  }
  const sampler = new Sampler(options);
  const eog: ReadonlySet<number> = options.ignoreEos ? new Set<number>() : tokenizer.endOfGenerationIds;
  const decoder = new StreamDecoder(tokenizer);
  const stops = new StopMatcher((options.stop ?? []).filter((s) => s.length > 0));
  const stats: GenerationStats = { promptTokens: promptIds.length, completionTokens: 0, prefillMs: 0, decodeMs: 0 };
  const aborted = () => options.signal?.aborted === true;

  let t0 = performance.now();
  let logits = await prefill(forward, promptIds);
  stats.prefillMs = performance.now() - t0;
  t0 = performance.now();

  let position = promptIds.length;
  let finishReason: FinishReason = "length";
  let stoppedByString = false;
  while (stats.completionTokens < maxTokens) {
    if (aborted()) { finishReason = "abort"; break; }
    const token = sampler.sample(logits);
    sampler.accept(token);
    stats.completionTokens++;
    if (eog.has(token)) { finishReason = "stop"; break; }
    const piece = stops.push(decoder.push(token));
    if (piece.stopped) {
      finishReason = "stop";
      stoppedByString = true;
      yield { text: piece.text, token };
      break;
    }
    yield { text: piece.text, token };
    if (stats.completionTokens >= maxTokens) break;
    if (position >= contextLength) { finishReason = "length"; break; }
    logits = await forward.step([token], position++);
  }
  stats.decodeMs = performance.now() - t0;
  const tail = stoppedByString ? "" : stops.push(decoder.flush()).text + stops.flush();
  yield { text: tail, token: -1, finishReason, stats };
}
