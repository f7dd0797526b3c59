// A small deterministic Engine for the server tests. It replies with fixed pieces of text, one
// token each, and reacts to markers in the prompt:
//   FOREVER   streams "tick " until its signal aborts
//   INVALID   throws QwasmError INVALID_ARGUMENT at the call (as the real engine does for bad options)
//   CRASH     throws a plain Error at the call
//   WORKER    throws QwasmError WORKER_FAILED at the call
//   MIDWAY    fails after the first piece
//   BUSY      throws QwasmError QUEUE_FULL at the call (as the real engine does past maxQueue)
// A prompt longer than info.contextLength characters throws CONTEXT_OVERFLOW; a request with
// timeoutMs fails with QwasmError TIMEOUT once that time has passed (FOREVER reaches it).
import { QwasmError } from "../../platform/errors";
import type { ChatMessage, CompletionResult, CompletionStream, Delta, Engine, FinishReason, RequestOptions } from "../../engine/types";

export interface FakeCall {
  kind: "chat" | "generate";
  prompt: string;
  messages?: ChatMessage[];
  options: RequestOptions;
  /** Resolves when the request's signal aborts. */
  aborted: Promise<void>;
}

export const REPLY = ["Hello", ",", "", " world", "!"];

export class FakeEngine implements Engine {
  readonly info = { modelName: "fake-qwen2", contextLength: 200, threads: 1, maxSequences: 4 };
  readonly calls: FakeCall[] = [];
  pieces: string[] = REPLY;

  get lastCall(): FakeCall {
    return this.calls[this.calls.length - 1];
  }

  chat(messages: ChatMessage[], options: RequestOptions = {}): CompletionStream {
    const prompt = messages.map((m) => typeof m.content === "string" ? m.content : (m.content ?? []).map((p) => p.text).join("\n")).join("\n");
    return this.start("chat", prompt, options, messages);
  }

  generate(prompt: string, options: RequestOptions = {}): CompletionStream {
    return this.start("generate", prompt, options);
  }

  tokenize(text: string): number[] {
    return [...text].map((c) => c.codePointAt(0)!);
  }

  detokenize(ids: number[]): string {
    return String.fromCodePoint(...ids);
  }

  async dispose(): Promise<void> {}

  /** Set by drain(): new requests throw QwasmError DRAINING. */
  draining = false;
  /** The options of each drain() call. */
  readonly drains: ({ deadlineMs?: number } | undefined)[] = [];
  /** drain() resolves when this does (default: at once). */
  drainGate: Promise<void> = Promise.resolve();

  async drain(options?: { deadlineMs?: number }): Promise<void> {
    this.draining = true;
    this.drains.push(options);
    await this.drainGate;
  }

  private start(kind: FakeCall["kind"], prompt: string, options: RequestOptions, messages?: ChatMessage[]): CompletionStream {
    if (this.draining) throw new QwasmError("DRAINING", "the engine is draining and accepts no new requests");
    if (prompt.includes("INVALID")) throw new QwasmError("INVALID_ARGUMENT", "sampling option topK = 7: the fake says no");
    if (prompt.includes("CRASH")) throw new Error("secret internal detail");
    if (prompt.includes("WORKER")) throw new QwasmError("WORKER_FAILED", "worker 3 died: secret detail");
    if (prompt.includes("BUSY")) throw new QwasmError("QUEUE_FULL", "the engine is busy: 4 running and 64 waiting");
    if (prompt.length > this.info.contextLength) {
      throw new QwasmError("CONTEXT_OVERFLOW", `the prompt has ${prompt.length} tokens; the context holds ${this.info.contextLength}`);
    }
    const signal = options.signal;
    const aborted = new Promise<void>((resolve) => {
      if (signal?.aborted) resolve();
      signal?.addEventListener("abort", () => resolve());
    });
    this.calls.push({ kind, prompt, messages, options, aborted });

    const promptTokens = prompt.length;
    const pieces = this.pieces;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    return fakeStream(async (emit) => {
      await Promise.resolve();
      let text = "";
      const tokens: number[] = [];
      const finish = (finishReason: FinishReason): CompletionResult => ({
        text, tokens, finishReason,
        usage: { promptTokens, completionTokens: tokens.length, totalTokens: promptTokens + tokens.length, cachedPromptTokens: 0 },
        timings: { timeToFirstTokenMs: 1, totalMs: 2 },
      });
      for (let i = 0; ; i++) {
        if (signal?.aborted) return finish("abort");
        if (prompt.includes("FOREVER")) {
          await new Promise((resolve) => setTimeout(resolve, 1));
          if (signal?.aborted) return finish("abort");
          if (Date.now() >= deadline) throw new QwasmError("TIMEOUT", `the request ran longer than its time limit of ${options.timeoutMs} ms`);
          tokens.push(i);
          text += "tick ";
          emit({ text: "tick ", tokens: [i] });
          continue;
        }
        if (i === pieces.length) return finish("stop");
        if (options.maxTokens !== undefined && tokens.length >= options.maxTokens) return finish("length");
        if (prompt.includes("MIDWAY") && i === 1) throw new Error("secret midway failure");
        let piece = pieces[i];
        const stopAt = (options.stop ?? []).map((s) => (text + piece).indexOf(s)).filter((at) => at >= 0);
        if (stopAt.length > 0) {
          piece = (text + piece).slice(text.length, Math.min(...stopAt));
          text += piece;
          if (piece) emit({ text: piece, tokens: [] });
          return finish("stop");
        }
        tokens.push(i);
        text += piece;
        emit({ text: piece, tokens: [i] });
        await Promise.resolve();
      }
    });
  }
}

/** A CompletionStream over a producer that runs whether or not anyone iterates. */
export function fakeStream(produce: (emit: (delta: Delta) => void) => Promise<CompletionResult>): CompletionStream {
  const queue: Delta[] = [];
  let finished = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => { wake?.(); wake = undefined; };
  const result = produce((delta) => { queue.push(delta); notify(); }).then(
    (r) => { finished = true; notify(); return r; },
    (e) => { finished = true; failure = e ?? new Error("failed"); notify(); throw e; },
  );
  result.catch(() => {});
  const iterator: AsyncIterator<Delta> = {
    async next() {
      for (;;) {
        if (queue.length > 0) return { value: queue.shift()!, done: false };
        if (finished) {
          if (failure !== undefined) throw failure;
          return { value: undefined, done: true };
        }
        await new Promise<void>((resolve) => { wake = resolve; });
      }
    },
    async return() {
      queue.length = 0;
      return { value: undefined, done: true };
    },
  };
  return {
    [Symbol.asyncIterator]: () => iterator,
    then: (onFulfilled, onRejected) => result.then(onFulfilled, onRejected),
    result,
  };
}
