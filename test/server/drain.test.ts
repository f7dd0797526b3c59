// Graceful drain over the real engine on a tiny synthetic model: engine.drain() refuses new
// requests (DRAINING; HTTP 503 with Retry-After, /ready 503 while /health stays 200), lets running
// and queued requests finish, resolves when idle, and past its deadline stops the rest with their
// pages given back.
import { afterEach, describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { createOpenAIHandler } from "../../server/openai";
import { QwasmError } from "../../platform/errors";
import { parsePrometheus, value } from "./prometheus";

let bytes: Uint8Array | undefined;
const engines: QwasmEngine[] = [];

async function newEngine(maxSequences: number): Promise<QwasmEngine> {
  bytes ??= await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 3 }));
  const engine = await createEngine(bytes, { threads: 1, contextLength: 256, maxSequences });
  engines.push(engine);
  return engine;
}

afterEach(async () => {
  for (const engine of engines.splice(0)) await engine.dispose();
});

const url = (path: string) => `http://qwasm.test${path}`;

describe("engine.drain", () => {
  it("refuses new requests, lets running and queued ones finish, then resolves with every page back", async () => {
    const engine = await newEngine(1);
    const handler = createOpenAIHandler(engine, { metrics: true });
    // One slot: the first runs, two wait in the queue.
    const requests = [0, 1, 2].map((i) => engine.generate(`Request number ${i}`, { maxTokens: 6, ignoreEos: true }));
    expect(engine.kvStats().running + engine.kvStats().waiting).toBe(3);
    const drained = engine.drain({ deadlineMs: 600_000 });
    expect(engine.draining).toBe(true);
    expect(engine.drain()).toBe(drained);

    expect(() => engine.generate("too late")).toThrow(QwasmError);
    try {
      engine.chat([{ role: "user", content: "too late" }]);
      expect.unreachable("a draining engine accepted a request");
    } catch (error) {
      expect((error as QwasmError).code).toBe("DRAINING");
    }
    const refused = await handler(new Request(url("/v1/chat/completions"), {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }] }),
    }));
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect((await refused.json()).error.code).toBe("server_draining");
    const ready = await handler(new Request(url("/ready")));
    expect(ready.status).toBe(503);
    expect(ready.headers.get("retry-after")).toBe("1");
    expect((await handler(new Request(url("/health")))).status).toBe(200);

    await drained;
    const results = await Promise.all(requests);
    expect(results.map((r) => [r.finishReason, r.usage.completionTokens])).toEqual([["length", 6], ["length", 6], ["length", 6]]);
    const kv = engine.kvStats();
    expect([kv.running, kv.waiting, kv.inUse, kv.reserved]).toEqual([0, 0, 0, 0]);
    const m = parsePrometheus(await (await handler(new Request(url("/metrics")))).text());
    expect(value(m, "qwasm_draining")).toBe(1);
    expect(value(m, "qwasm_requests_failed_total", { code: "DRAINING" })).toBe(3);
  });

  it("resolves at once when idle", async () => {
    const engine = await newEngine(2);
    await engine.drain();
    expect(engine.draining).toBe(true);
  });

  it("past the deadline stops the requests still running or waiting: DRAINING, pages back", async () => {
    const engine = await newEngine(1);
    const running = engine.generate("A long one", { maxTokens: 200, ignoreEos: true });
    const waiting = engine.generate("Another long one", { maxTokens: 200, ignoreEos: true });
    const streamed: string[] = [];
    const reading = (async () => { for await (const delta of running) streamed.push(delta.text); })();
    // Handlers first: the rejections come while drain() is awaited.
    const outcomes = Promise.allSettled([running.result, waiting.result, reading]);
    await engine.drain({ deadlineMs: 0 });
    const settled = await outcomes;
    expect(settled.map((s) => s.status)).toEqual(["rejected", "rejected", "rejected"]);
    for (const s of settled) expect((s as PromiseRejectedResult).reason).toMatchObject({ code: "DRAINING" });
    const kv = engine.kvStats();
    expect([kv.running, kv.waiting, kv.inUse, kv.reserved]).toEqual([0, 0, 0, 0]);
  });

  it("rejects a bad deadline with INVALID_ARGUMENT", async () => {
    const engine = await newEngine(1);
    for (const deadlineMs of [-1, Number.NaN]) expect(() => engine.drain({ deadlineMs })).toThrow(/deadlineMs must be/);
    expect(engine.draining).toBe(false);
  });
});
