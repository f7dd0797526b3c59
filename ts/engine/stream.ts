// A completion in flight as both an AsyncIterable of deltas and a promise of the whole result.
import type { CompletionResult, CompletionStream, Delta } from "./types";

export class CompletionStreamImpl implements CompletionStream {
  readonly result: Promise<CompletionResult>;
  /** All text pushed so far. */
  text = "";
  private readonly queue: Delta[] = [];
  private wake: (() => void) | undefined;
  private done = false;
  private failed = false;
  private error: unknown;
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
    if (this.done || (delta.text === "" && delta.tokens.length === 0)) return;
    this.text += delta.text;
    this.queue.push(delta);
    this.wake?.();
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
    for (;;) {
      while (this.queue.length > 0) yield this.queue.shift()!;
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
