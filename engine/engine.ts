// The engine: requests in, streamed text out. A scheduler turns the requests into forward steps
// (continuous batching): every step carries one decode token for each running sequence plus
// prefill chunks of the others, under a token budget, so the matmuls read each weight block once
// for all of them. KV pages are reserved when a request is admitted, shared across requests when
// they start with the same full pages, and released the moment a request finishes or is aborted.
// Whatever throws while a step is built, run or finished fails the requests it concerns and nothing
// else: their streams reject, their pages come back, and the loop goes on with the other requests.
import { QwasmError } from "../platform/errors";
import { loadQwen2, preflightModel, type LoadOptions, type MemoryPlan, type Qwen2Model } from "../compute/model/model";
import type { GGUFFile } from "../weights/gguf/reader";
import { PagedKVCache } from "../compute/model/kv-cache";
import type { StepGroup } from "../compute/model/forward";
import { Sampler } from "./sampler/sampler";
import { StreamDecoder, tokenizerFromMetadata, type Tokenizer } from "./tokenizer";
import { chatTemplateFromMetadata } from "./tokenizer/from-model";
import { renderChatTokens } from "./chat-template";
import { StopMatcher } from "./stop";
import { constraintFor } from "./constrain/request";
import { ToolCallStream, toolConstraint, type RequestConstraint } from "./tools";
import { MAX_TOP_LOGPROBS, RowLogprobs } from "./sampler/logprobs";
import { CompletionStreamImpl } from "./stream";
import { EngineStats, type KVStats } from "./stats";
import type { GGUFSource } from "../weights/gguf/source";
import type {
  ChatMessage, CompletionResult, CompletionStream, Engine, EngineInfo, FinishReason, GeneratedTokenLogprob, RequestOptions,
  TokenLogprob,
} from "./types";

export interface EngineOptions extends Omit<LoadOptions, "maxSequences"> {
  /** Requests computed together (continuous batching); default 8. */
  maxSequences?: number;
  /**
   * Requests that may wait for a slot while maxSequences run; one more is refused at once with
   * QwasmError QUEUE_FULL (the HTTP handler answers 429). Default 64; 0 waits for none.
   */
  maxQueue?: number;
  /** Time limit of every request in milliseconds (RequestOptions.timeoutMs overrides it); default none. */
  requestTimeoutMs?: number;
}

/** EngineOptions.maxQueue when none is given: a burst of clients waits; past it, clients are told to retry. */
export const DEFAULT_MAX_QUEUE = 64;

/** Past this setTimeout fires at once (a 32-bit delay): a longer limit is no limit. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Sequence {
  tokens: number[];            // prompt, then every generated token
  promptLength: number;
  computed: number;            // positions whose K/V are in the sequence's pages
  pages: number[];             // page table: position j in pages[j / pageSize]
  reserved: number;            // pages promised at admission and not allocated yet
  published: number;           // full pages offered to the prefix cache
  cachedPromptTokens: number;
  sampler: Sampler;
  decoder: StreamDecoder;
  stops: StopMatcher;
  /** responseFormat / grammar / tools: the tokens it allows; generation ends when it is complete. */
  constraint?: RequestConstraint;
  /** RequestOptions.logprobs: how many alternatives per token, and the logprobs so far. */
  logprobs?: { top: number; list: GeneratedTokenLogprob[]; row?: Float32Array };
  maxTokens: number;
  generated: number;
  ignoreEos: boolean;
  signal?: AbortSignal;
  stream: CompletionStreamImpl;
  start: number;
  firstToken?: number;
  /** When the latest token was sampled (inter-token latency). */
  lastToken?: number;
  /** Ended by an abort or its time limit while its step was computing: the loop finishes it after the step. */
  ended?: { reason: "abort" } | { error: QwasmError };
  /** Frees the listener and the timer when the request ends. */
  cleanup?: () => void;
}

type Step = { tokens: number[]; groups: StepGroup[]; outRows: number[]; sequences: Sequence[]; outSeqs: (Sequence | undefined)[] };

export class QwasmEngine implements Engine {
  readonly info: EngineInfo;
  private readonly cache: PagedKVCache;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private reservedPages = 0;
  private loop: Promise<void> | undefined;
  private disposed = false;
  /** The sequences of the step being computed: their pages are in use until the step returns. */
  private readonly inFlight = new Set<Sequence>();
  private readonly maxQueue: number;
  private readonly requestTimeoutMs: number | undefined;
  /** Counters and latency histograms since creation (the server's GET /metrics reads them). */
  readonly stats = new EngineStats();
  /** Set by drain(): new requests are refused, and it resolves when the last request has ended. */
  private drainState: { idle: () => void; done: Promise<void>; timer?: ReturnType<typeof setTimeout> } | undefined;

  constructor(readonly model: Qwen2Model, readonly tokenizer: Tokenizer, private readonly chatTemplate?: string,
    limits: { maxQueue?: number; requestTimeoutMs?: number } = {}) {
    checkLimits(limits);
    this.maxQueue = limits.maxQueue ?? DEFAULT_MAX_QUEUE;
    this.requestTimeoutMs = limits.requestTimeoutMs;
    const f = model.forward;
    this.cache = new PagedKVCache(f.kvPages, f.pageSize);
    this.info = {
      modelName: model.config.name,
      contextLength: f.contextLength,
      threads: f.threads,
      maxSequences: f.maxSequences,
    };
  }

  chat(messages: ChatMessage[], options: RequestOptions = {}): CompletionStream {
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new QwasmError("INVALID_ARGUMENT", "messages must be a non-empty array of {role, content}");
    }
    const tools = options.tools;
    if (tools === undefined || options.toolChoice === "none" || (Array.isArray(tools) && tools.length === 0)) {
      if (tools !== undefined) toolConstraint(this.tokenizer, { ...options, tools }); // checks them
      return this.submit(renderChatTokens(this.tokenizer, messages, { template: this.chatTemplate }), options);
    }
    if (options.responseFormat !== undefined && options.responseFormat.type !== "text" || options.grammar !== undefined) {
      throw new QwasmError("INVALID_ARGUMENT", "give either tools or responseFormat/grammar, not both (or toolChoice \"none\")");
    }
    const constraint = toolConstraint(this.tokenizer, { ...options, tools });
    const prompt = renderChatTokens(this.tokenizer, messages, { template: this.chatTemplate, tools });
    return new ToolCallStream(this.submit(prompt, options, constraint));
  }

  generate(prompt: string, options: RequestOptions = {}): CompletionStream {
    if (typeof prompt !== "string") throw new QwasmError("INVALID_ARGUMENT", "the prompt must be a string");
    if (options.tools !== undefined) throw new QwasmError("INVALID_ARGUMENT", "tools are for chat (engine.chat); generate completes raw text");
    return this.submit(this.tokenizer.encode(prompt), options);
  }

  /** Generates from token ids (no template, no tokenization). */
  generateTokens(ids: number[], options: RequestOptions = {}): CompletionStream {
    return this.submit(ids, options);
  }

  tokenize(text: string, options: { special?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, options);
  }

  detokenize(ids: number[]): string {
    return this.tokenizer.decode(ids);
  }

  /** Pages held by running requests, and idle pages kept for prefix reuse. */
  kvStats(): KVStats {
    return {
      pages: this.cache.pageCount, pageSize: this.cache.pageSize, inUse: this.cache.inUse, cached: this.cache.cached,
      reserved: this.reservedPages, running: this.running.length, waiting: this.waiting.length,
    };
  }

  /** True once drain() has been called: the engine refuses new requests (QwasmError DRAINING). */
  get draining(): boolean {
    return this.drainState !== undefined;
  }

  /**
   * Graceful shutdown: from now on new requests are refused with QwasmError DRAINING; running and
   * waiting ones go on. Resolves when none is left. Past deadlineMs (default: none) the rest are
   * stopped: they fail with DRAINING and their pages come back. Calling it again returns the same promise.
   *
   * @example
   * process.on("SIGTERM", async () => { await engine.drain({ deadlineMs: 30_000 }); await engine.dispose(); });
   */
  drain(options: { deadlineMs?: number } = {}): Promise<void> {
    if (this.drainState) return this.drainState.done;
    const deadlineMs = options.deadlineMs;
    if (deadlineMs !== undefined && !(typeof deadlineMs === "number" && deadlineMs >= 0)) {
      throw new QwasmError("INVALID_ARGUMENT", `deadlineMs must be a number of milliseconds >= 0, got ${deadlineMs}`);
    }
    let idle!: () => void;
    const done = new Promise<void>((resolve) => { idle = resolve; })
      .then(() => { clearTimeout(state.timer); return this.loop; })
      .then(() => undefined);
    const state: NonNullable<QwasmEngine["drainState"]> = { idle, done };
    this.drainState = state;
    if (deadlineMs !== undefined && deadlineMs <= MAX_TIMER_MS) {
      state.timer = setTimeout(() => {
        const error = new QwasmError("DRAINING", `the server is shutting down and the request did not finish within the drain deadline of ${deadlineMs} ms`);
        for (const seq of [...this.waiting, ...this.running]) this.endEarly(seq, { error });
      }, deadlineMs);
    }
    this.checkDrained();
    return done;
  }

  private checkDrained(): void {
    if (this.drainState && this.waiting.length === 0 && this.running.length === 0) this.drainState.idle();
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    clearTimeout(this.drainState?.timer);
    const error = new QwasmError("ABORTED", "the engine was disposed");
    for (const seq of [...this.waiting, ...this.running]) this.finish(seq, undefined, error);
    await this.loop;
    await this.model.dispose();
  }

  private submit(prompt: number[], options: RequestOptions, constraint?: RequestConstraint): CompletionStream {
    try {
      return this.enqueue(prompt, options, constraint);
    } catch (error) {
      this.stats.countFailure(error);
      throw error;
    }
  }

  private enqueue(prompt: number[], options: RequestOptions, toolConstraint?: RequestConstraint): CompletionStream {
    if (this.disposed) throw new QwasmError("INVALID_ARGUMENT", "the engine was disposed");
    if (this.drainState) {
      throw new QwasmError("DRAINING", "the engine is draining (shutting down) and accepts no new requests; send them to another server");
    }
    const contextLength = this.info.contextLength;
    if (prompt.length === 0) throw new QwasmError("INVALID_ARGUMENT", "the prompt is empty");
    if (prompt.length >= contextLength) {
      throw new QwasmError("CONTEXT_OVERFLOW",
        `the prompt has ${prompt.length} tokens; the context holds ${contextLength} (prompt + at least one generated token)`);
    }
    const maxTokens = options.maxTokens ?? contextLength - prompt.length;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      throw new QwasmError("INVALID_ARGUMENT", `maxTokens must be a positive integer, got ${options.maxTokens}`);
    }
    if (options.stop !== undefined && (!Array.isArray(options.stop) || !options.stop.every((s) => typeof s === "string"))) {
      throw new QwasmError("INVALID_ARGUMENT", "stop must be an array of strings");
    }
    const vocab = this.model.config.vocabSize;
    const bias = options.logitBias instanceof Map ? [...options.logitBias.keys()] : Object.keys(options.logitBias ?? {});
    for (const id of bias) {
      if (!(Number(id) >= 0 && Number(id) < vocab && Number.isInteger(Number(id)))) {
        throw new QwasmError("INVALID_ARGUMENT", `logit bias for token ${id}: token ids are 0..${vocab - 1}`);
      }
    }
    for (const id of prompt) {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) {
        throw new QwasmError("INVALID_ARGUMENT", `prompt token id ${id} is outside the vocabulary (0..${vocab - 1})`);
      }
    }
    if (options.timeoutMs !== undefined && !(typeof options.timeoutMs === "number" && options.timeoutMs > 0)) {
      throw new QwasmError("INVALID_ARGUMENT", `timeoutMs must be a number of milliseconds > 0, got ${options.timeoutMs}`);
    }
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const top = options.topLogprobs ?? 0;
    if (!(Number.isInteger(top) && top >= 0 && top <= MAX_TOP_LOGPROBS)) {
      throw new QwasmError("INVALID_ARGUMENT", `topLogprobs must be an integer from 0 to ${MAX_TOP_LOGPROBS}, got ${options.topLogprobs}`);
    }
    if (options.topLogprobs !== undefined && options.topLogprobs > 0 && !options.logprobs) {
      throw new QwasmError("INVALID_ARGUMENT", "topLogprobs needs logprobs: true");
    }
    const outstanding = this.waiting.length + this.running.length;
    if (outstanding >= this.info.maxSequences + this.maxQueue) {
      throw new QwasmError("QUEUE_FULL",
        `the engine is busy: ${this.running.length} requests running and ${this.waiting.length} waiting, the most it ` +
        `holds (maxSequences ${this.info.maxSequences} + maxQueue ${this.maxQueue}); retry later`);
    }
    const seq: Sequence = {
      tokens: [...prompt],
      promptLength: prompt.length,
      computed: 0,
      pages: [],
      reserved: 0,
      published: 0,
      cachedPromptTokens: 0,
      sampler: new Sampler(options),
      decoder: new StreamDecoder(this.tokenizer),
      stops: new StopMatcher((options.stop ?? []).filter((s) => s.length > 0)),
      constraint: toolConstraint ?? constraintFor(this.tokenizer, options),
      logprobs: options.logprobs ? { top, list: [] } : undefined,
      maxTokens: Math.min(maxTokens, contextLength - prompt.length),
      generated: 0,
      ignoreEos: options.ignoreEos ?? false,
      signal: options.signal,
      stream: new CompletionStreamImpl(),
      start: performance.now(),
    };
    // The penalties' window starts in the prompt (llama.cpp's server accepts the prompt tokens too).
    for (const id of prompt) seq.sampler.accept(id);
    if (this.pagesFor(seq) > this.cache.pageCount) {
      throw new QwasmError("CONTEXT_OVERFLOW", `the request needs ${this.pagesFor(seq)} KV pages; the pool has ${this.cache.pageCount}`);
    }
    if (options.signal?.aborted) {
      this.stats.finished.abort = (this.stats.finished.abort ?? 0) + 1;
      seq.stream.finish(this.result(seq, "abort"));
      return seq.stream;
    }
    this.watch(seq, timeoutMs);
    this.waiting.push(seq);
    this.startLoop();
    return seq.stream;
  }

  /** Ends the request when its signal fires or its time runs out, whatever the loop is doing. */
  private watch(seq: Sequence, timeoutMs: number | undefined): void {
    const onAbort = () => this.endEarly(seq, { reason: "abort" });
    seq.signal?.addEventListener("abort", onAbort, { once: true });
    const timer = timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS
      ? setTimeout(() => this.endEarly(seq, { error: new QwasmError("TIMEOUT",
        `the request ran longer than its time limit of ${timeoutMs} ms (timeoutMs or the engine's requestTimeoutMs)`) }), timeoutMs)
      : undefined;
    seq.cleanup = () => {
      seq.signal?.removeEventListener("abort", onAbort);
      clearTimeout(timer);
    };
  }

  /**
   * An abort or a timeout: the stream's deltas stop at once. The pages are freed now, or, when the
   * request is in the step being computed (the workers are writing its pages), as soon as that step
   * returns; the stream ends (its result settles) then.
   */
  private endEarly(seq: Sequence, how: NonNullable<Sequence["ended"]>): void {
    if (seq.ended || !(this.running.includes(seq) || this.waiting.includes(seq))) return;
    if (!this.inFlight.has(seq)) {
      this.finishEnded(seq, how);
      return;
    }
    seq.ended = how;
    seq.stream.close();
  }

  private startLoop(): void {
    if (this.loop) return;
    // The loop catches every failure itself; this handler is the last net, so that nothing hangs.
    this.loop = this.run().catch((error) => {
      for (const seq of [...this.waiting, ...this.running]) this.finish(seq, undefined, error);
    }).finally(() => {
      this.loop = undefined;
      // A request that came in while the loop was returning.
      if (!this.disposed && (this.waiting.length > 0 || this.running.length > 0)) this.startLoop();
    });
  }

  /** Pages a sequence can need in all: its prompt plus every token it may generate. */
  private pagesFor(seq: Sequence): number {
    return Math.ceil((seq.promptLength + seq.maxTokens) / this.cache.pageSize);
  }

  /**
   * The scheduler loop: runs while any request is waiting or running. A throw while building a step
   * fails the requests built into it; while running it, every request of the step; while finishing
   * it, the request being sampled (or, outside sampling, every request of the step).
   */
  private async run(): Promise<void> {
    let stepEnd = -1; // when the step before returned, while the loop goes straight on (EngineStats.stepGaps)
    while (!this.disposed && (this.running.length > 0 || this.waiting.length > 0)) {
      this.dropEnded();
      this.admit();
      const built: Sequence[] = [];
      let step: Step | undefined;
      try {
        step = this.buildStep(built);
      } catch (e) {
        this.failAll(built, e);
        continue;
      }
      if (!step) {
        // Nothing can run now (waiting requests need pages that running ones hold): wait a tick.
        await new Promise((resolve) => setTimeout(resolve, 1));
        stepEnd = -1;
        continue;
      }
      for (const seq of step.sequences) this.inFlight.add(seq);
      const start = performance.now();
      if (stepEnd >= 0) {
        this.stats.stepGaps++;
        this.stats.stepGapSeconds += (start - stepEnd) / 1000;
      }
      stepEnd = -1;
      try {
        // A view of the logits in the model's memory: afterStep samples from it before the next step.
        const logits = await this.model.forward.runInPlace(step.tokens, step.groups, step.outRows);
        stepEnd = performance.now();
        this.stats.steps++;
        this.stats.stepSeconds += (stepEnd - start) / 1000;
        this.afterStep(step, logits);
      } catch (e) {
        this.failAll(step.sequences, e);
      } finally {
        this.inFlight.clear();
      }
      this.dropEnded();
      // An inline step holds the thread: give I/O (streams, aborts, new requests) a turn.
      if (this.info.threads === 1) await yieldToEventLoop();
    }
  }

  /** Finishes requests that an abort or a timeout ended while their step was computing. */
  private dropEnded(): void {
    // Most steps end nothing: look before copying the lists (finish changes them).
    if (!this.anyEnded(this.waiting) && !this.anyEnded(this.running)) return;
    for (const seq of [...this.waiting, ...this.running]) {
      if (seq.ended) this.finishEnded(seq, seq.ended);
      else if (seq.signal?.aborted) this.finish(seq, "abort");
    }
  }

  private anyEnded(list: readonly Sequence[]): boolean {
    for (let i = 0; i < list.length; i++) if (list[i].ended || list[i].signal?.aborted) return true;
    return false;
  }

  private finishEnded(seq: Sequence, how: NonNullable<Sequence["ended"]>): void {
    if ("error" in how) this.finish(seq, undefined, how.error);
    else this.finish(seq, "abort");
  }

  /** A step failed: its requests fail with the error, except those an abort or a timeout ended first. */
  private failAll(sequences: Sequence[], error: unknown): void {
    for (const seq of sequences) {
      if (seq.ended) this.finishEnded(seq, seq.ended);
      else this.finish(seq, undefined, error);
    }
  }

  /** Moves waiting requests into free slots while their pages can be reserved (FIFO). */
  private admit(): void {
    const pageSize = this.cache.pageSize;
    while (this.waiting.length > 0 && this.running.length < this.info.maxSequences) {
      const seq = this.waiting[0];
      try {
        if (!this.reserve(seq, pageSize)) return;
      } catch (e) {
        this.finish(seq, undefined, e);
      }
    }
  }

  /** Takes the request's shared prefix pages and reserves the rest; false when they are not free yet. */
  private reserve(seq: Sequence, pageSize: number): boolean {
    // Full pages of the prompt that are cached already; the last prompt token is always computed.
    const shared = this.cache.acquirePrefix(seq.tokens, Math.floor((seq.promptLength - 1) / pageSize));
    seq.pages = shared;
    const need = this.pagesFor(seq) - shared.length;
    if (need > this.cache.available - this.reservedPages) {
      seq.pages = [];
      this.cache.release(shared);
      return false;
    }
    this.waiting.shift();
    seq.published = shared.length;
    seq.computed = shared.length * pageSize;
    seq.cachedPromptTokens = seq.computed;
    this.stats.prefixQueryTokens += seq.promptLength;
    this.stats.prefixHitTokens += seq.computed;
    this.stats.queueTime.observe((performance.now() - seq.start) / 1000);
    seq.reserved = need;
    this.reservedPages += need;
    this.running.push(seq);
    return true;
  }

  /** One step: a decode token per generating sequence, then prefill chunks, within the budget. */
  private buildStep(sequences: Sequence[]): Step | undefined {
    const budget = this.model.forward.maxTokens;
    const tokens: number[] = [];
    const groups: StepGroup[] = [];
    const outRows: number[] = [];
    const outSeqs: (Sequence | undefined)[] = [];
    // Decoding sequences first, then prefill chunks: two passes over running, in its order.
    const nRunning = this.running.length;
    for (let i = 0; i < 2 * nRunning; i++) {
      const seq = this.running[i % nRunning];
      const wanted = i < nRunning ? seq.computed === seq.tokens.length - 1 && seq.computed >= seq.promptLength : seq.computed < seq.promptLength;
      if (!wanted) continue;
      const room = budget - tokens.length;
      if (room <= 0) break;
      const n = Math.min(room, seq.tokens.length - seq.computed);
      sequences.push(seq);
      this.ensurePages(seq, seq.computed + n);
      groups.push({ tokenStart: tokens.length, nTok: n, pos0: seq.computed, table: seq.pages });
      for (let i = 0; i < n; i++) tokens.push(seq.tokens[seq.computed + i]);
      if (seq.computed + n === seq.tokens.length) {
        outRows.push(tokens.length - 1);
        outSeqs.push(seq);
      }
    }
    if (tokens.length === 0) return undefined;
    if (outRows.length === 0) {
      // A step of prefill chunks that end no prompt: compute the last row's logits anyway (unused).
      outRows.push(tokens.length - 1);
      outSeqs.push(undefined);
    }
    return { tokens, groups, outRows, sequences, outSeqs };
  }

  private ensurePages(seq: Sequence, positions: number): void {
    const pageSize = this.cache.pageSize;
    while (seq.pages.length * pageSize < positions) {
      seq.pages.push(this.cache.allocate());
      seq.reserved--;
      this.reservedPages--;
    }
  }

  private afterStep(step: Step, logits: Float32Array): void {
    const vocab = this.model.config.vocabSize;
    for (let i = 0; i < step.groups.length; i++) {
      const seq = step.sequences[i];
      // Disposed while the step ran: its pages went back already.
      if (!this.running.includes(seq)) continue;
      seq.computed += step.groups[i].nTok;
      this.publishFullPages(seq);
    }
    for (let i = 0; i < step.outSeqs.length; i++) {
      const seq = step.outSeqs[i];
      if (!seq || seq.ended || !this.running.includes(seq)) continue;
      // One row: the view itself (a step of one sequence, every decode step of a lone request).
      const row = step.outSeqs.length === 1 ? logits : logits.subarray(i * vocab, (i + 1) * vocab);
      try {
        this.sampleNext(seq, row);
      } catch (e) {
        // Sampling, detokenizing, stop strings and the stream are this request's own: the others go on.
        this.finish(seq, undefined, e);
      }
    }
  }

  /** Offers every newly completed page to the prefix cache. */
  private publishFullPages(seq: Sequence): void {
    const pageSize = this.cache.pageSize;
    while ((seq.published + 1) * pageSize <= seq.computed) {
      const k = seq.published;
      this.cache.publish(seq.pages[k], k > 0 ? seq.pages[k - 1] : -1, seq.tokens, k);
      seq.published++;
    }
  }

  private sampleNext(seq: Sequence, logits: Float32Array): void {
    // Read before the sampler changes the row in place.
    // The row's copy is the sequence's own buffer, reused from token to token.
    const row = seq.logprobs ? new RowLogprobs(logits, seq.logprobs.top, seq.logprobs.row ??= new Float32Array(logits.length)) : undefined;
    const token = seq.sampler.sample(logits, seq.constraint);
    seq.constraint?.accept(token);
    seq.sampler.accept(token);
    seq.generated++;
    const now = performance.now();
    if (seq.lastToken === undefined) this.stats.timeToFirstToken.observe((now - seq.start) / 1000);
    else this.stats.interTokenLatency.observe((now - seq.lastToken) / 1000);
    seq.firstToken ??= now;
    seq.lastToken = now;
    this.stats.generationTokens++;
    // A constraint allows end of generation only where its text is complete: it ends there, ignoreEos or not.
    const ends = (!seq.ignoreEos || seq.constraint !== undefined) && this.tokenizer.endOfGenerationIds.has(token);
    const logprobs = row && !ends ? [this.tokenLogprob(token, row, seq.logprobs!)] : undefined;
    if (ends) {
      seq.stream.push({ text: seq.stops.push(seq.decoder.flush()).text + seq.stops.flush(), tokens: [token] });
      this.finish(seq, "stop");
      return;
    }
    seq.tokens.push(token);
    const piece = seq.stops.push(seq.decoder.push(token));
    seq.stream.push(logprobs ? { text: piece.text, tokens: [token], logprobs } : { text: piece.text, tokens: [token] });
    if (piece.stopped) {
      this.finish(seq, "stop");
    } else if (seq.constraint?.isFinished()) {
      // The grammar is complete and nothing can follow: the value is whole.
      seq.stream.push({ text: seq.stops.push(seq.decoder.flush()).text + seq.stops.flush(), tokens: [] });
      this.finish(seq, "stop");
    } else if (seq.generated >= seq.maxTokens) {
      seq.stream.push({ text: seq.stops.push(seq.decoder.flush()).text + seq.stops.flush(), tokens: [] });
      this.finish(seq, "length");
    }
  }

  private tokenLogprob(token: number, row: RowLogprobs, into: { list: GeneratedTokenLogprob[] }): GeneratedTokenLogprob {
    const entry = (id: number): TokenLogprob => {
      const bytes = this.tokenizer.tokenBytes(id);
      return { id, token: new TextDecoder().decode(bytes), bytes: Array.from(bytes), logprob: row.logprob(id) };
    };
    const lp: GeneratedTokenLogprob = { ...entry(token), topLogprobs: row.top.map(entry) };
    into.list.push(lp);
    return lp;
  }

  /**
   * Ends a sequence: releases its pages and reservation, and finishes (or fails) its stream. Never
   * throws: the stream ends even if giving the pages back fails.
   */
  private finish(seq: Sequence, reason: FinishReason | undefined, error?: unknown): void {
    const at = this.running.indexOf(seq);
    if (at >= 0) this.running.splice(at, 1);
    const waitingAt = this.waiting.indexOf(seq);
    if (waitingAt >= 0) this.waiting.splice(waitingAt, 1);
    seq.cleanup?.();
    seq.cleanup = undefined;
    const pages = seq.pages;
    seq.pages = [];
    this.reservedPages -= seq.reserved;
    seq.reserved = 0;
    try {
      this.cache.release(pages);
    } catch (e) {
      error ??= e;
    }
    if (error !== undefined || reason === undefined) {
      error ??= new QwasmError("ABORTED", "the request ended without a result");
      this.stats.countFailure(error);
      seq.stream.close();
      seq.stream.fail(error);
    } else {
      this.stats.finished[reason] = (this.stats.finished[reason] ?? 0) + 1;
      this.stats.promptTokens += seq.promptLength;
      this.stats.e2eLatency.observe((performance.now() - seq.start) / 1000);
      if (reason === "abort") seq.stream.close();
      seq.stream.finish(this.result(seq, reason));
    }
    this.checkDrained();
  }

  private result(seq: Sequence, finishReason: FinishReason): CompletionResult {
    const now = performance.now();
    let generatedTokens = seq.tokens.slice(seq.promptLength);
    let text = seq.stream.text;
    if (finishReason === "abort") {
      // What the caller was given before the abort, no more.
      const delivered = seq.stream.delivered;
      text = delivered.text;
      generatedTokens = generatedTokens.slice(0, delivered.tokens);
    }
    const result: CompletionResult = {
      text,
      tokens: generatedTokens,
      finishReason,
      usage: {
        promptTokens: seq.promptLength,
        completionTokens: seq.generated,
        totalTokens: seq.promptLength + seq.generated,
        cachedPromptTokens: seq.cachedPromptTokens,
      },
      timings: { timeToFirstTokenMs: (seq.firstToken ?? now) - seq.start, totalMs: now - seq.start },
    };
    if (seq.logprobs) result.logprobs = seq.logprobs.list.slice(0, generatedTokens.length);
    return result;
  }
}

/**
 * Loads a Qwen2 GGUF and its tokenizer into an engine. `source` is a file path (Node, Deno), an
 * http(s) URL, a Response, a ReadableStream, a Blob or the bytes; tensor data streams straight into
 * the shared memory.
 *
 * @example
 * import { createEngine } from "qwasm";
 * const engine = await createEngine("qwen2-0_5b-instruct-q4_0.gguf", {
 *   threads: 4, contextLength: 4096, maxSequences: 8,
 *   onProgress: (p) => console.log(`${p.loadedBytes} / ${p.totalBytes}`),
 * });
 * const reply = await engine.chat([{ role: "user", content: "Hello!" }], { maxTokens: 64 });
 * console.log(reply.text, reply.usage);
 * await engine.dispose();
 */
export async function createEngine(source: GGUFSource, options: EngineOptions = {}): Promise<QwasmEngine> {
  const { maxQueue, requestTimeoutMs } = options;
  checkLimits({ maxQueue, requestTimeoutMs });
  const model = await loadQwen2(source, modelOptions(options));
  try {
    const tokenizer = tokenizerFromMetadata(model.file.metadata);
    return new QwasmEngine(model, tokenizer, chatTemplateFromMetadata(model.file.metadata), { maxQueue, requestTimeoutMs });
  } catch (e) {
    await model.dispose();
    throw e;
  }
}

/**
 * The memory plan createEngine would make for `file` with `options`, from the header alone, held
 * against the host's memory: throws INSUFFICIENT_MEMORY (or OUT_OF_MEMORY, MODEL_*) as createEngine
 * would, before any tensor byte is needed. The browser's engine worker runs it on header bytes read
 * with HTTP Range requests before it downloads a model.
 */
export async function preflightEngine(file: GGUFFile, options: EngineOptions = {}): Promise<MemoryPlan> {
  checkLimits({ maxQueue: options.maxQueue, requestTimeoutMs: options.requestTimeoutMs });
  return (await preflightModel(file, modelOptions(options))).plan;
}

/** The model's load options of an engine's options (one place: createEngine and preflightEngine). */
function modelOptions(options: EngineOptions): LoadOptions {
  const { maxQueue: _queue, requestTimeoutMs: _timeout, ...loadOptions } = options;
  return { ...loadOptions, maxSequences: options.maxSequences ?? 8 };
}

function checkLimits({ maxQueue, requestTimeoutMs }: { maxQueue?: number; requestTimeoutMs?: number }): void {
  if (maxQueue !== undefined && !(Number.isSafeInteger(maxQueue) && maxQueue >= 0)) {
    throw new QwasmError("INVALID_ARGUMENT", `maxQueue must be an integer >= 0, got ${maxQueue}`);
  }
  if (requestTimeoutMs !== undefined && !(typeof requestTimeoutMs === "number" && requestTimeoutMs > 0)) {
    throw new QwasmError("INVALID_ARGUMENT", `requestTimeoutMs must be a number of milliseconds > 0, got ${requestTimeoutMs}`);
  }
}

/** One MessageChannel for every yield where there is no setImmediate (browsers: the engine worker
 *  on one thread): a fresh channel per yield cost Chromium 0.5-1.5 ms per decode step (4% of a
 *  0.5B model's step), a message on a channel kept open about 0.1 ms. Messages arrive in order, so
 *  the resolvers are a queue. */
let yieldChannel: { port: MessagePort; waiting: (() => void)[] } | undefined;

/** Resolves after pending I/O callbacks have run (a macrotask, without setTimeout's clamping). */
function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => void };
  if (typeof g.setImmediate === "function") return new Promise((resolve) => g.setImmediate!(resolve));
  if (!yieldChannel) {
    const channel = new MessageChannel();
    const waiting: (() => void)[] = [];
    channel.port1.onmessage = () => waiting.shift()?.();
    // Where ports keep a process alive (Deno, Node), this one must not.
    (channel.port1 as { unref?: () => void }).unref?.();
    (channel.port2 as { unref?: () => void }).unref?.();
    yieldChannel = { port: channel.port2, waiting };
  }
  const { port, waiting } = yieldChannel;
  return new Promise((resolve) => {
    waiting.push(resolve);
    port.postMessage(null);
  });
}
