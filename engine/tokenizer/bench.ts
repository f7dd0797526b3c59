// Tokenizer throughput: encode about 1 MB of deterministic mixed text (prose in 29 languages, code,
// numbers, emoji) and report MB/s. The first pass starts with an empty word cache (a new text, after
// a short warm-up of the JIT on other text); later passes show the cached rate.

import { mixedText } from "./sample-text";
import type { Tokenizer } from "./tokenizer";

export interface TokenizerBenchResult {
  /** UTF-8 bytes of input per pass. */
  bytes: number;
  /** Tokens produced per pass. */
  tokens: number;
  /** Throughput of the first pass (empty word cache), in MB/s (10^6 bytes). */
  coldMBps: number;
  /** Best throughput over the following passes (warm word cache), in MB/s. */
  warmMBps: number;
  /** Decoding throughput (ids back to text), best pass, in MB/s of text. */
  decodeMBps: number;
}

export interface TokenizerBenchOptions {
  /** Input size in bytes; default 1 MiB. */
  bytes?: number;
  /** Seed of the text; default 1. */
  seed?: number;
  /** Warm passes; default 3. */
  passes?: number;
}

/** The benchmark text: about `bytes` of UTF-8, the same for the same seed. */
export function benchText(bytes = 1 << 20, seed = 1): string {
  return mixedText(bytes, seed);
}

/** Encodes the benchmark text with `tokenizer` and measures MB/s. */
export function benchTokenizer(tokenizer: Tokenizer, options: TokenizerBenchOptions = {}): TokenizerBenchResult {
  const text = benchText(options.bytes ?? 1 << 20, options.seed ?? 1);
  const bytes = new TextEncoder().encode(text).length;
  const passes = options.passes ?? 3;
  // Warm up the JIT on other text, so that the first pass measures an empty cache, not compilation.
  tokenizer.encode(benchText(1 << 16, (options.seed ?? 1) + 1));
  tokenizer.clearCache();
  let start = performance.now();
  const ids = tokenizer.encode(text);
  const coldMs = performance.now() - start;
  let warmMs = Infinity;
  for (let i = 0; i < passes; i++) {
    start = performance.now();
    tokenizer.encode(text);
    warmMs = Math.min(warmMs, performance.now() - start);
  }
  let decodeMs = Infinity;
  for (let i = 0; i < Math.max(1, passes); i++) {
    start = performance.now();
    tokenizer.decode(ids);
    decodeMs = Math.min(decodeMs, performance.now() - start);
  }
  const mbps = (ms: number) => bytes / 1e6 / (ms / 1000);
  return { bytes, tokens: ids.length, coldMBps: mbps(coldMs), warmMBps: mbps(warmMs), decodeMBps: mbps(decodeMs) };
}
