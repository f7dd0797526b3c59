// The engine's limits through the OpenAI handler, on the real engine and a tiny model: a full queue
// is a 429 with Retry-After, a request past its time limit a 504 (an error event once streaming),
// another model a 404; afterwards no KV page, reservation or slot is held.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { createOpenAIHandler, type FetchHandler } from "../../server/openai";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";

let engine: QwasmEngine;
let handler: FetchHandler;
const serverErrors: unknown[] = [];

beforeAll(async () => {
  const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 6 }));
  // One slot and one place in the queue; contexts long enough that the generations below outlast their limits.
  engine = await createEngine(bytes, { threads: 1, contextLength: 2048, maxSequences: 1, maxQueue: 1 });
  handler = createOpenAIHandler(engine, { modelId: "tiny", onError: (e) => serverErrors.push(e) });
});

afterAll(async () => {
  await engine?.dispose();
});

const chat = (fields: Record<string, unknown>, signal?: AbortSignal) => handler(new Request("http://qwasm.test/v1/chat/completions", {
  method: "POST", headers: { "content-type": "application/json" }, signal,
  body: JSON.stringify({ messages: [{ role: "user", content: "Hello" }], ignore_eos: true, temperature: 0, ...fields }),
}));

function expectIdle(): void {
  expect(engine.kvStats()).toMatchObject({ inUse: 0, reserved: 0, running: 0, waiting: 0 });
}

describe("limits over HTTP", () => {
  it("answers 429 with Retry-After past maxSequences + maxQueue, and serves again once there is room", async () => {
    const client = new AbortController();
    // The first runs, the second waits; both stream until the client goes away.
    const held = [await chat({ max_tokens: 2000, stream: true }, client.signal), await chat({ max_tokens: 2000, stream: true }, client.signal)];
    expect(engine.kvStats()).toMatchObject({ running: 1, waiting: 1 });
    const refused = await chat({ max_tokens: 2 });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect((await refused.json()).error).toMatchObject({ type: "requests", code: "rate_limit_exceeded", param: null });
    client.abort();
    for (const response of held) await response.body!.cancel().catch(() => {});
    for (let i = 0; i < 500 && engine.kvStats().running + engine.kvStats().waiting > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expectIdle();
    const ok = await chat({ max_tokens: 3 });
    expect(ok.status).toBe(200);
    expect((await ok.json()).usage.completion_tokens).toBe(3);
    expectIdle();
  });

  it("answers 504 for a request past its time limit, or an error event once streaming, and frees its pages", async () => {
    // Each step at least 2 ms: 2000 tokens take far longer than the limit on any machine.
    const run = engine.model.forward.runInPlace.bind(engine.model.forward);
    const slow = vi.spyOn(engine.model.forward, "runInPlace").mockImplementation(async (...args) => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      return run(...args);
    });
    const timed = createOpenAIHandler(engine, { modelId: "tiny", requestTimeoutMs: 40, onError: (e) => serverErrors.push(e) });
    const ask = (stream: boolean) => timed(new Request("http://qwasm.test/v1/chat/completions", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hello" }], ignore_eos: true, max_tokens: 2000, stream }),
    }));
    const whole = await ask(false);
    expect(whole.status).toBe(504);
    expect((await whole.json()).error).toMatchObject({ type: "server_error", code: "timeout" });
    expectIdle();

    const streamed = await ask(true);
    expect(streamed.status).toBe(200);
    const events = (await streamed.text()).trim().split("\n\n");
    expect(events.at(-1)).not.toBe("data: [DONE]");
    expect(JSON.parse(events.at(-1)!.slice("data: ".length)).error.code).toBe("timeout");
    expectIdle();
    slow.mockRestore();
  });

  it("answers 404 for another model without touching the engine", async () => {
    const response = await chat({ model: "gpt-4o", max_tokens: 2 });
    expect(response.status).toBe(404);
    expect((await response.json()).error).toMatchObject({ code: "model_not_found", param: "model" });
    expect((await chat({ model: "tiny", max_tokens: 2 })).status).toBe(200);
    expectIdle();
    expect(serverErrors).toEqual([]);
  });
});
