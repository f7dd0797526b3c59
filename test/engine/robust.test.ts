// The scheduler under failure, load and cancellation, on a tiny synthetic model:
// - a throw while a step is built, run or finished fails the requests it concerns with that error,
//   gives their KV pages and reservations back, and the engine serves the next request;
// - the waiting queue is bounded (QUEUE_FULL), requests have a time limit (TIMEOUT);
// - after an abort, the stream yields nothing more.
// A process-level failure (an unhandled rejection, an exit) fails the vitest run itself.
import { afterEach, describe, expect, it, vi } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine, DEFAULT_MAX_QUEUE, type EngineOptions, type QwasmEngine } from "../../engine/engine";
import { StopMatcher } from "../../engine/stop";
import type { PagedKVCache } from "../../compute/model/kv-cache";
import { Sampler } from "../../engine/sampler/sampler";
import { StreamDecoder } from "../../engine/tokenizer";

const vocabulary = await readQwen2Vocabulary();
const modelBytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary, type: "Q8_0", seed: 11 }));

function prompt(n: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => (x = (x * 1103515245 + 12345) >>> 0) % 512);
}

const open: QwasmEngine[] = [];
async function engine(options: EngineOptions = {}): Promise<QwasmEngine> {
  const e = await createEngine(modelBytes, { threads: 1, contextLength: 256, maxSequences: 4, maxTokens: 32, ...options });
  open.push(e);
  return e;
}

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(open.splice(0).map((e) => e.dispose()));
});

/** Nothing held: no page in use or reserved, no request running or waiting. */
function expectIdle(e: QwasmEngine): void {
  expect(e.kvStats()).toMatchObject({ inUse: 0, reserved: 0, running: 0, waiting: 0 });
}

/** The engine still works: a fresh request gives the same greedy tokens as on an engine that never failed. */
async function expectServes(e: QwasmEngine): Promise<void> {
  const ids = prompt(20, 99);
  const again = await e.generateTokens(ids, { maxTokens: 6, ignoreEos: true });
  const clean = await engine();
  expect(again.tokens).toEqual((await clean.generateTokens(ids, { maxTokens: 6, ignoreEos: true })).tokens);
  expectIdle(e);
}

const cacheOf = (e: QwasmEngine) => (e as unknown as { cache: PagedKVCache }).cache;

describe("a throw in the scheduler fails its requests, and only those", () => {
  it("while building a step (a page allocation throws)", async () => {
    const e = await engine();
    vi.spyOn(cacheOf(e), "allocate").mockImplementationOnce(() => { throw new Error("injected: allocate"); });
    await expect(e.generateTokens(prompt(10, 1), { maxTokens: 8 }).result).rejects.toThrow("injected: allocate");
    expectIdle(e);
    await expectServes(e);
  });

  it("while running it (the forward step rejects): every request of the step", async () => {
    const e = await engine();
    const forward = e.model.forward;
    // The first request's prefill runs alone (the loop starts with it); the second step holds all three.
    const run = forward.runInPlace.bind(forward);
    vi.spyOn(forward, "runInPlace").mockImplementationOnce(run).mockRejectedValueOnce(new Error("injected: run"));
    const results = await Promise.allSettled([1, 2, 3].map((i) => e.generateTokens(prompt(5 + i, i), { maxTokens: 8 }).result));
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
    for (const r of results) expect((r as PromiseRejectedResult).reason).toMatchObject({ message: "injected: run" });
    expectIdle(e);
    await expectServes(e);
  });

  it("while finishing it, outside sampling (publishing a full page): every request of the step", async () => {
    const e = await engine();
    vi.spyOn(cacheOf(e), "publish").mockImplementationOnce(() => { throw new Error("injected: publish"); });
    // Step 1: the first prompt alone (no full page). Step 2: its first decode token and 31 tokens of
    // the second prompt, which fill a page of 16: publishing it throws.
    const results = await Promise.allSettled([
      e.generateTokens(prompt(3, 4), { maxTokens: 4 }).result,
      e.generateTokens(prompt(40, 3), { maxTokens: 4 }).result,
    ]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expectIdle(e);
    await expectServes(e);
  });

  const perRequest: [string, () => void][] = [
    ["sampling", () => vi.spyOn(Sampler.prototype, "sample").mockImplementationOnce(() => { throw new Error("injected: sample"); })],
    ["detokenizing", () => vi.spyOn(StreamDecoder.prototype, "push").mockImplementationOnce(() => { throw new Error("injected: push"); })],
    ["stop strings", () => vi.spyOn(StopMatcher.prototype, "push").mockImplementationOnce(() => { throw new Error("injected: stop"); })],
  ];
  it.each(perRequest)("while finishing it (%s): the request being finished; the others go on", async (_, inject) => {
    const e = await engine();
    inject();
    const streams = [1, 2, 3].map((i) => e.generateTokens(prompt(4, i), { maxTokens: 8, ignoreEos: true }));
    const results = await Promise.allSettled(streams.map((s) => s.result));
    const failed = results.filter((r) => r.status === "rejected");
    expect(failed).toHaveLength(1);
    expect((failed[0] as PromiseRejectedResult).reason.message).toMatch(/^injected: /);
    for (const r of results) if (r.status === "fulfilled") expect(r.value.tokens).toHaveLength(8);
    expectIdle(e);
    await expectServes(e);
  });

  it("a sampled id past the tokenizer (the failure a mismatched vocabulary used to cause) fails that request", async () => {
    const e = await engine();
    vi.spyOn(Sampler.prototype, "sample").mockImplementationOnce(() => e.model.config.vocabSize + 5);
    const stream = e.generateTokens(prompt(6, 5), { maxTokens: 8 });
    const error = await stream.result.catch((err: unknown) => err);
    expect(error).toBeInstanceOf(Error);
    expectIdle(e);
    await expectServes(e);
  });

  it("with worker threads too (the step runs while the event loop is free)", async () => {
    const e = await engine({ threads: 2 });
    vi.spyOn(e.model.forward, "runInPlace").mockRejectedValueOnce(new Error("injected: run"));
    await expect(e.generateTokens(prompt(8, 6), { maxTokens: 4 }).result).rejects.toThrow("injected: run");
    vi.spyOn(Sampler.prototype, "sample").mockImplementationOnce(() => { throw new Error("injected: sample"); });
    await expect(e.generateTokens(prompt(8, 7), { maxTokens: 4 }).result).rejects.toThrow("injected: sample");
    expectIdle(e);
    await expectServes(e);
  });

  it("an iterating caller sees the error, after the deltas it was given", async () => {
    const e = await engine();
    let calls = 0;
    const sample = Sampler.prototype.sample;
    vi.spyOn(Sampler.prototype, "sample").mockImplementation(function (this: Sampler, logits: Float32Array) {
      if (++calls === 4) throw new Error("injected: fourth sample");
      return sample.call(this, logits);
    });
    const stream = e.generateTokens(prompt(6, 8), { maxTokens: 8, ignoreEos: true });
    let tokens = 0;
    await expect((async () => { for await (const delta of stream) tokens += delta.tokens.length; })()).rejects.toThrow("injected: fourth sample");
    expect(tokens).toBe(3);
    expectIdle(e);
  });
});

describe("bounded queue", () => {
  it("refuses a request past maxSequences + maxQueue at once with QUEUE_FULL, and takes one again when there is room", async () => {
    const e = await engine({ maxSequences: 1, maxQueue: 2 });
    const abort = new AbortController();
    const held = [1, 2, 3].map((i) => e.generateTokens(prompt(4, i), { maxTokens: 200, ignoreEos: true, signal: abort.signal }));
    let refused: unknown;
    try {
      e.generateTokens(prompt(4, 4), { maxTokens: 4 });
    } catch (error) {
      refused = error;
    }
    expect(refused).toMatchObject({ code: "QUEUE_FULL" });
    expect((refused as Error).message).toMatch(/maxSequences 1 \+ maxQueue 2/);
    abort.abort();
    for (const s of held) expect((await s).finishReason).toBe("abort");
    expectIdle(e);
    expect((await e.generateTokens(prompt(4, 5), { maxTokens: 3, ignoreEos: true })).tokens).toHaveLength(3);
  });

  it(`maxQueue 0 runs maxSequences requests and queues none; the default queues ${DEFAULT_MAX_QUEUE}`, async () => {
    const none = await engine({ maxSequences: 2, maxQueue: 0 });
    const abort = new AbortController();
    const running = [1, 2].map((i) => none.generateTokens(prompt(4, i), { maxTokens: 200, ignoreEos: true, signal: abort.signal }));
    expect(() => none.generateTokens(prompt(4, 3))).toThrowError(expect.objectContaining({ code: "QUEUE_FULL" }));
    abort.abort();
    await Promise.all(running);
    expectIdle(none);

    const byDefault = await engine({ maxSequences: 1 });
    const abortMany = new AbortController();
    const many = Array.from({ length: 1 + DEFAULT_MAX_QUEUE }, (_, i) =>
      byDefault.generateTokens(prompt(4, i), { maxTokens: 200, ignoreEos: true, signal: abortMany.signal }));
    expect(byDefault.kvStats()).toMatchObject({ running: 1, waiting: DEFAULT_MAX_QUEUE });
    expect(() => byDefault.generateTokens(prompt(4, 0))).toThrowError(expect.objectContaining({ code: "QUEUE_FULL" }));
    abortMany.abort();
    await Promise.all(many);
    expectIdle(byDefault);
  });

  it("refuses a bad maxQueue or timeout", async () => {
    await expect(createEngine(modelBytes, { maxQueue: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(createEngine(modelBytes, { maxQueue: 1.5 })).rejects.toThrow(/maxQueue/);
    await expect(createEngine(modelBytes, { requestTimeoutMs: 0 })).rejects.toThrow(/requestTimeoutMs/);
    const e = await engine();
    for (const timeoutMs of [0, -5, Number.NaN, "10" as unknown as number]) {
      expect(() => e.generateTokens([1, 2], { timeoutMs })).toThrowError(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
    expectIdle(e);
  });
});

describe("time limits", () => {
  // Generations of 2000 tokens, each step at least 2 ms: far longer than the limits below on any
  // machine, so the limit is what ends them.
  const long = { maxTokens: 2000, ignoreEos: true };
  const big = { contextLength: 2048 };
  function slowSteps(e: QwasmEngine): void {
    const run = e.model.forward.runInPlace.bind(e.model.forward);
    vi.spyOn(e.model.forward, "runInPlace").mockImplementation(async (...args) => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      return run(...args);
    });
  }

  it("a request past timeoutMs fails with TIMEOUT and frees its pages", async () => {
    const e = await engine(big);
    slowSteps(e);
    const stream = e.generateTokens(prompt(8, 1), { ...long, timeoutMs: 50 });
    let deltas = 0;
    const error = await (async () => { for await (const delta of stream) deltas += delta.tokens.length; })().catch((err: unknown) => err);
    expect(error).toMatchObject({ code: "TIMEOUT" });
    expect((error as Error).message).toMatch(/50 ms/);
    await expect(stream.result).rejects.toMatchObject({ code: "TIMEOUT" });
    expect(deltas).toBeLessThan(2000);
    expectIdle(e);
    await expectServes(e);
  });

  it("the engine's requestTimeoutMs applies to every request, a request's timeoutMs overrides it, and waiting counts", async () => {
    const e = await engine({ ...big, maxSequences: 1, requestTimeoutMs: 50 });
    slowSteps(e);
    const running = e.generateTokens(prompt(8, 2), long);
    const waiting = e.generateTokens(prompt(8, 3), long); // waits for the one slot, and its time runs meanwhile
    await expect(running.result).rejects.toMatchObject({ code: "TIMEOUT" });
    await expect(waiting.result).rejects.toMatchObject({ code: "TIMEOUT" });
    expectIdle(e);
    // A request that finishes within its limit is not touched by it.
    const quick = await e.generateTokens(prompt(8, 4), { maxTokens: 3, ignoreEos: true, timeoutMs: 600_000 });
    expect(quick.finishReason).toBe("length");
    expectIdle(e);
  });

  it("with worker threads, the time limit ends a request whose step is computing", async () => {
    const e = await engine({ ...big, threads: 2 });
    slowSteps(e);
    await expect(e.generateTokens(prompt(100, 5), { ...long, timeoutMs: 30 }).result).rejects.toMatchObject({ code: "TIMEOUT" });
    expectIdle(e);
    await expectServes(e);
  });
});

describe("abort", () => {
  for (const threads of [1, 2]) {
    it(`yields no delta after the signal fires, with a fast and a slow reader (${threads} thread${threads > 1 ? "s" : ""})`, async () => {
      const e = await engine({ threads, contextLength: 2048 });
      let sampled = 0;
      const sample = Sampler.prototype.sample;
      vi.spyOn(Sampler.prototype, "sample").mockImplementation(function (this: Sampler, logits: Float32Array) {
        sampled++;
        return sample.call(this, logits);
      });
      for (const slow of [false, true]) {
        const abort = new AbortController();
        // 2000 tokens: the request is still generating when the reader aborts after a few.
        const stream = e.generateTokens(prompt(12, threads + Number(slow)), { maxTokens: 2000, ignoreEos: true, signal: abort.signal });
        sampled = 0;
        let seen = 0;
        let afterAbort = 0;
        let text = "";
        const tokens: number[] = [];
        for await (const delta of stream) {
          if (abort.signal.aborted) afterAbort++;
          seen++;
          text += delta.text;
          tokens.push(...delta.tokens);
          if (seen === 3) {
            // A slow reader: the engine has sampled five more tokens (deltas waiting to be read) by the abort.
            while (slow && sampled < seen + 5) await new Promise((resolve) => setTimeout(resolve, 1));
            abort.abort();
          }
        }
        expect(afterAbort, `deltas after the abort (${slow ? "slow" : "fast"} reader)`).toBe(0);
        const result = await stream;
        expect(result.finishReason).toBe("abort");
        // The result is what the reader was given.
        expect(result.text).toBe(text);
        expect(result.tokens).toEqual(tokens);
        expectIdle(e);
      }
    });
  }

  it("an abort while waiting for a slot frees the request at once", async () => {
    const e = await engine({ maxSequences: 1 });
    const first = e.generateTokens(prompt(4, 1), { maxTokens: 10, ignoreEos: true });
    const abort = new AbortController();
    const second = e.generateTokens(prompt(4, 2), { maxTokens: 10, ignoreEos: true, signal: abort.signal });
    expect(e.kvStats().waiting + e.kvStats().running).toBe(2);
    abort.abort();
    expect((await second).finishReason).toBe("abort");
    expect((await first).finishReason).toBe("length");
    expectIdle(e);
  });
});
