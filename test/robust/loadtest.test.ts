// qwasm loadtest against the real engine on a tiny model, over loopback, for 3 seconds: requests
// complete, none is lost, and the latency numbers are there.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { formatLoadTest, loadTest, main } from "../../cli/commands/loadtest";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { serveNode, type NodeServer } from "../../platform/http-node";
import { createOpenAIHandler } from "../../server/openai";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";

let engine: QwasmEngine;
let server: NodeServer;

beforeAll(async () => {
  const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 4 }));
  engine = await createEngine(bytes, { threads: 1, contextLength: 128, maxSequences: 4 });
  server = await serveNode(createOpenAIHandler(engine, { apiKey: "secret" }), { port: 0 });
});

afterAll(async () => {
  await server?.close();
  await engine?.dispose();
});

describe("qwasm loadtest", () => {
  it("drives 16 streaming clients for 3 s and accounts for every request", async () => {
    const result = await loadTest({ url: `${server.url}/v1`, clients: 16, seconds: 3, maxTokens: 16, apiKey: "secret" });
    console.log(formatLoadTest(result));
    expect(result.errors).toBe(0);
    expect(result.completed).toBeGreaterThan(16);
    expect(result.started).toBe(result.completed + result.errors);
    expect(result.tokens).toBeGreaterThanOrEqual(result.completed);
    expect(result.tokensPerSecond).toBeGreaterThan(0);
    for (const p of [result.timeToFirstTokenMs, result.interTokenMs, result.timePerOutputTokenMs]) {
      expect(p.count).toBeGreaterThan(0);
      expect(p.p50).toBeGreaterThanOrEqual(0);
      expect(p.p99).toBeGreaterThanOrEqual(p.p50);
    }
    expect(result.timeToFirstTokenMs.p50).toBeGreaterThan(0);
    expect(result.timeToFirstTokenMs.count).toBeLessThanOrEqual(result.completed);
    expect(engine.kvStats()).toMatchObject({ inUse: 0, reserved: 0, running: 0, waiting: 0 });
  }, 60_000);

  it("counts refusals as errors, and cuts off requests that outlast the grace period", async () => {
    const refused = await loadTest({ url: server.url, clients: 2, seconds: 0.3, maxTokens: 4, apiKey: "wrong", model: "m" });
    expect(refused.completed).toBe(0);
    expect(refused.errorKinds["HTTP 401"]).toBe(refused.started);
    // A server that sends one token and then nothing: every request is cut off when the grace ends.
    const encoder = new TextEncoder();
    const stalling = await serveNode(async (request) => {
      if (new URL(request.url).pathname.endsWith("/models")) return Response.json({ data: [{ id: "stall" }] });
      return new Response(new ReadableStream({
        start(controller) { controller.enqueue(encoder.encode(`data: {"choices":[{"delta":{"content":"a"}}]}\n\n`)); },
      }), { headers: { "content-type": "text/event-stream" } });
    }, { port: 0 });
    try {
      const cut = await loadTest({ url: stalling.url, clients: 4, seconds: 0.2, graceSeconds: 0.2 });
      expect(cut).toMatchObject({ started: 4, completed: 0, errors: 4, errorKinds: { "cut off at the end": 4 } });
      expect(cut.seconds).toBeLessThan(2);
    } finally {
      await stalling.close();
    }
  }, 60_000);

  it("refuses hosts that are not loopback unless told otherwise, and bad options", async () => {
    for (const url of ["http://example.com/v1", "http://10.0.0.1:8080", "http://[::2]:80", "http://127.evil.com"]) {
      await expect(loadTest({ url, seconds: 1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/loopback|URL/) });
    }
    await expect(loadTest({ url: "ftp://127.0.0.1/", seconds: 1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(loadTest({ url: server.url, clients: 0 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(loadTest({ url: server.url, seconds: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(loadTest({ url: server.url, maxTokens: 1.5 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(loadTest({ url: server.url, seconds: 1 })).rejects.toMatchObject({ message: expect.stringMatching(/--api-key/) });
  });

  it("prints the numbers from the command line", async () => {
    let printed = "";
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => { printed += String(chunk); return true; });
    try {
      const code = await main([`${server.url}/v1`, "--clients", "4", "--seconds", "1", "--max-tokens", "8", "--api-key", "secret"]);
      expect(code).toBe(0);
    } finally {
      write.mockRestore();
    }
    expect(printed).toMatch(/requests: +\d+ completed, 0 errors/);
    expect(printed).toMatch(/time to 1st token: p50 [\d.]+ ms, p99 [\d.]+ ms/);
    expect(printed).toMatch(/inter-token: +p50 [\d.]+ ms/);
    expect(printed).toMatch(/per output token: +p50 [\d.]+ ms/);
    expect(printed).toMatch(/throughput: +[\d.]+ tokens\/s/);
  }, 30_000);
});
