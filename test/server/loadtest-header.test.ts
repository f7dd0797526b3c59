// qwasm loadtest --header: extra headers reach the server, {client} numbering each client's own
// session; bad headers are refused before any request.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTest, parseHeaderArgs } from "../../cli/commands/loadtest";
import { serveNode, type NodeServer } from "../../platform/http-node";
import { createOpenAIHandler, type AccessLogEntry } from "../../server/openai";
import { FakeEngine } from "./fake-engine";

let server: NodeServer;
const log: AccessLogEntry[] = [];

beforeAll(async () => {
  server = await serveNode(createOpenAIHandler(new FakeEngine(), { onAccess: (e) => log.push(e) }), { port: 0 });
});
afterAll(async () => {
  await server?.close();
});

describe("loadtest --header", () => {
  it("parses every --header (the option parser alone keeps the last)", () => {
    expect(parseHeaderArgs(["http://x", "--header", "X-Session-Id: s-{client}", "--header=X-Tenant:blue", "--clients", "2"]))
      .toEqual({ "X-Session-Id": " s-{client}", "X-Tenant": "blue" });
    expect(parseHeaderArgs(["http://x", "--", "--header", "A: b"])).toEqual({});
    expect(() => parseHeaderArgs(["--header", "no colon"])).toThrow(/must be "Name: value"/);
    expect(() => parseHeaderArgs(["--header", ": empty name"])).toThrow(/must be "Name: value"/);
  });

  it("sends the headers, {client} replaced by each client's number", async () => {
    const result = await loadTest({ url: server.url, clients: 2, seconds: 0.2, maxTokens: 2, headers: { "X-Session-Id": "load-{client}" } });
    expect(result.errors).toBe(0);
    const posts = log.filter((e) => e.method === "POST");
    expect(posts.length).toBe(result.started);
    expect(new Set(posts.map((e) => e.sessionId))).toEqual(new Set(["load-0", "load-1"]));
  });

  it.each([
    [{ "Bad Name": "x" }, /not a valid HTTP header name/],
    [{ "Content-Type": "text/plain" }, /set by loadtest itself/],
    [{ "X-A": "line\r\nbreak" }, /without line breaks/],
  ])("refuses %j", async (headers, message) => {
    const before = log.length;
    await expect(loadTest({ url: server.url, clients: 1, seconds: 0.1, headers })).rejects.toThrow(message);
    expect(log.length).toBe(before);
  });
});
