// The node:http adapter: requests and responses cross it intact, streams flow, and a client that
// disconnects aborts the engine's signal.
import { request as httpRequest, type IncomingMessage } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { serveNode, type NodeServer } from "../../platform/http-node";
import { createOpenAIHandler } from "../../server/openai";
import { FakeEngine } from "./fake-engine";

let server: NodeServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(options: Parameters<typeof createOpenAIHandler>[1] = {}) {
  const engine = new FakeEngine();
  server = await serveNode(createOpenAIHandler(engine, options), { port: 0 });
  return { engine, url: server.url };
}

/** A raw node:http request, so that the test controls the socket. */
function raw(url: string, path: string, body: string | undefined, headers: Record<string, string> = {}) {
  const req = httpRequest(url + path, { method: body === undefined ? "GET" : "POST", headers: { "content-type": "application/json", ...headers } });
  const response = new Promise<IncomingMessage>((resolve, reject) => { req.on("response", resolve); req.on("error", reject); });
  req.end(body);
  return { req, response };
}

const foreverChat = (stream: boolean) => JSON.stringify({ messages: [{ role: "user", content: "FOREVER" }], stream });

describe("serveNode", () => {
  it("listens on 127.0.0.1 and reports the real port", async () => {
    const { url } = await start();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(url).not.toMatch(/:0$/);
  });

  it("serves JSON responses with status and headers", async () => {
    const { url } = await start({ cors: true });
    const models = await fetch(`${url}/v1/models`);
    expect(models.status).toBe(200);
    expect(models.headers.get("access-control-allow-origin")).toBe("*");
    expect((await models.json()).data[0].id).toBe("fake-qwen2");

    const missing = await fetch(`${url}/nope`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe("unknown_url");

    const chat = await fetch(`${url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }] }),
    });
    expect((await chat.json()).choices[0].message.content).toBe("Hello, world!");
  });

  it("streams server-sent events", async () => {
    const { url } = await start();
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], stream: true }),
    });
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const text = await response.text();
    expect(text.split("\n\n").filter(Boolean).length).toBe(6);
    expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
  });

  it("aborts a streaming request whose client disconnects", async () => {
    const { engine, url } = await start();
    const { req, response } = raw(url, "/v1/chat/completions", foreverChat(true));
    const res = await response;
    expect(res.statusCode).toBe(200);
    await new Promise((resolve) => res.once("data", resolve));
    expect(engine.lastCall.options.signal!.aborted).toBe(false);
    req.destroy();
    await engine.lastCall.aborted;
    expect(engine.lastCall.options.signal!.aborted).toBe(true);
  });

  it("aborts a non-streaming request whose client disconnects before the reply", async () => {
    const { engine, url } = await start();
    const { req, response } = raw(url, "/v1/chat/completions", foreverChat(false));
    response.catch(() => {});
    while (engine.calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    req.destroy();
    await engine.lastCall.aborted;
  });

  it("aborts a streaming request when a fetch client aborts", async () => {
    const { engine, url } = await start();
    const client = new AbortController();
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" }, body: foreverChat(true), signal: client.signal,
    });
    const reader = response.body!.getReader();
    await reader.read();
    client.abort();
    await engine.lastCall.aborted;
  });

  it("answers 413 to a body over the limit and closes the connection", async () => {
    const { engine, url } = await start({ maxBodyBytes: 1024 });
    const req = httpRequest(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" } });
    const response = new Promise<IncomingMessage>((resolve, reject) => { req.on("response", resolve); req.on("error", reject); });
    // Chunked, no Content-Length: the handler has to count.
    req.write(JSON.stringify({ prompt: "x", pad: "y".repeat(4096) }));
    const res = await response;
    expect(res.statusCode).toBe(413);
    expect(res.headers.connection).toBe("close");
    const body = await new Promise<string>((resolve) => { let s = ""; res.on("data", (d) => (s += d)); res.on("end", () => resolve(s)); });
    expect(JSON.parse(body).error.code).toBe("request_too_large");
    req.destroy();
    expect(engine.calls).toHaveLength(0);
  });

  it("keeps a connection alive across requests", async () => {
    const { url } = await start();
    for (let i = 0; i < 3; i++) expect((await fetch(`${url}/v1/models`)).status).toBe(200);
  });

  it("close() ends running streams and aborts them", async () => {
    const { engine, url } = await start();
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" }, body: foreverChat(true),
    });
    await response.body!.getReader().read();
    await server!.close();
    server = undefined;
    await engine.lastCall.aborted;
  });

  it("says which address is taken", async () => {
    const { url } = await start();
    const port = Number(new URL(url).port);
    await expect(serveNode(async () => new Response(null), { port })).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+/);
  });
});
