// A completion in flight as both an AsyncIterable of deltas and a promise of the whole result.
import type { CompletionResult, CompletionStream, Delta } from "./types";

export class CompletionStreamImpl implements CompletionStream {
  readonly result: Promise<CompletionResult>;
  /** All text pushed so far. */
  text = "";
  private tokenCount = 0;
  /** What the iterator has handed out, once someone iterates. */
  private taken: { text: string; tokens: number } | undefined;
  private readonly queue: Delta[] = [];
  private wake: (() => void) | undefined;
  private done = false;
  private failed = false;
  private error: unknown;
  /** No more deltas (an abort, a timeout, a failure); the result comes with finish or fail. */
  private closed = false;
  private resolveResult!: (r: CompletionResult) => void;
  private rejectResult!: (e: unknown) => void;

  constructor() {
    this.result = new Promise((resolve, reject) => {
      this.resolveResult = resolve;
      this.rejectResult = reject;
    });
    // A caller that only iterates must not see an unhandled rejection from the result promise.
    this.result.catch(() => {});
  }

  push(delta: Delta): void {
    if (this.done || this.closed || (delta.text === "" && delta.tokens.length === 0)) return;
    this.text += delta.text;
    this.tokenCount += delta.tokens.length;
    this.queue.push(delta);
    this.wake?.();
  }

  /**
   * Stops the deltas at once: later pushes are ignored and, when someone iterates, the deltas it has
   * not taken yet are dropped, so nothing reaches the caller after an abort. The iterator ends (or
   * throws) with finish (or fail), once the request has given its pages back.
   */
  close(): void {
    if (this.done || this.closed) return;
    this.closed = true;
    if (this.taken !== undefined) this.queue.length = 0;
  }

  /** The text and number of tokens the caller was given: what the iterator took, or all when nobody iterates. */
  get delivered(): { text: string; tokens: number } {
    return this.taken ?? { text: this.text, tokens: this.tokenCount };
  }

  finish(result: CompletionResult): void {
    if (this.done) return;
    this.done = true;
    this.resolveResult(result);
    this.wake?.();
  }

  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.failed = true;
    this.error = error;
    this.rejectResult(error);
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Delta> {
    const taken = (this.taken ??= { text: "", tokens: 0 });
    for (;;) {
      while (this.queue.length > 0) {
        const delta = this.queue.shift()!;
        taken.text += delta.text;
        taken.tokens += delta.tokens.length;
        yield delta;
      }
      if (this.done) {
        if (this.failed) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => { this.wake = resolve; });
      this.wake = undefined;
    }
  }

  then<R1 = CompletionResult, R2 = never>(
    onFulfilled?: ((value: CompletionResult) => R1 | PromiseLike<R1>) | null,
    onRejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.result.then(onFulfilled, onRejected);
  }
}
