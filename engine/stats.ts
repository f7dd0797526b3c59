// What the engine counts for monitoring (the server's GET /metrics reads it): requests by outcome,
// tokens, prefix-cache lookups and hits, and latency histograms. Plain numbers, updated as requests
// are admitted, sample tokens and end; nothing here is allocated per token, and a step is timed by
// two performance.now() calls.
import { QwasmError } from "../platform/errors";

/** A histogram with fixed upper bounds (seconds), as Prometheus exposes them (cumulative on output). */
export class Histogram {
  /** counts[i]: observations <= bounds[i] and > bounds[i - 1]; the last entry counts those above every bound. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

// vLLM's bucket bounds (seconds), so that dashboards built for it read qwasm's histograms alike.
export const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
export const INTER_TOKEN_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
export const REQUEST_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

/** The engine's counters since it was created. */
export class EngineStats {
  /** Prompt tokens of requests that finished (with a result, "abort" included). */
  promptTokens = 0;
  /** Tokens generated, counted as they are sampled. */
  generationTokens = 0;
  /** Prompt tokens looked up in the prefix cache at admission (every admitted request's prompt length). */
  prefixQueryTokens = 0;
  /** Of those, tokens whose KV came from cached pages (not computed again). */
  prefixHitTokens = 0;
  /** Requests that ended with a result, by finish reason ("stop", "length", "abort"). */
  readonly finished: Record<string, number> = {};
  /** Requests refused or failed, by QwasmError code (QUEUE_FULL, TIMEOUT, DRAINING, ...; "INTERNAL" for others). */
  readonly failed: Record<string, number> = {};
  readonly timeToFirstToken = new Histogram(TTFT_BUCKETS);
  readonly interTokenLatency = new Histogram(INTER_TOKEN_BUCKETS);
  readonly e2eLatency = new Histogram(REQUEST_BUCKETS);
  /** From the call to admission (a slot and the KV pages reserved). */
  readonly queueTime = new Histogram(REQUEST_BUCKETS);
  /** Forward steps that returned, and their seconds from the call to the return (the kernels, the
   *  workers' hand-off, the logits' copy). */
  steps = 0;
  stepSeconds = 0;
  /** The engine's own time between a step's return and the next step's start, when the scheduler
   *  went straight on (sampling, logprobs, grammar, detokenizing, stop strings, streams, admission,
   *  building the step): the gaps counted and their seconds. */
  stepGaps = 0;
  stepGapSeconds = 0;

  countFailure(error: unknown): void {
    const code = error instanceof QwasmError ? error.code : "INTERNAL";
    this.failed[code] = (this.failed[code] ?? 0) + 1;
  }
}

/** The KV page pool and the scheduler's queues at one moment (QwasmEngine.kvStats()). */
export interface KVStats {
  /** Pages in the pool. */
  pages: number;
  /** Tokens per page (the prefix cache shares whole pages). */
  pageSize: number;
  /** Pages held by requests (running, or idle ones still shared). */
  inUse: number;
  /** Idle pages kept for prefix reuse (free to take). */
  cached: number;
  /** Pages promised to running requests and not allocated yet. */
  reserved: number;
  running: number;
  waiting: number;
}
