// 2,000 requests through the HTTP server, 16 at a time, on a tiny model, many of them abandoned: the
// client aborts before the reply or mid-stream, cancels the body, or drops the socket (also halfway
// through sending its request). Afterwards no KV page, reservation or scheduler slot is held, the
// server logged no failure of its own, and the heap is where it was.
import { request as httpRequest } from "node:http";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { serveNode, type NodeServer } from "../../platform/http-node";
import { createOpenAIHandler } from "../../server/openai";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";

const REQUESTS = Number(process.env.QWASM_ABORT_REQUESTS ?? 2000);
const CONCURRENCY = 16;
/** No single request may take longer than this (a hang is a failure, not a wait). */
const REQUEST_LIMIT_MS = 20_000;

let engine: QwasmEngine;
let server: NodeServer;
const serverErrors: unknown[] = [];

beforeAll(async () => {
  const bytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 11 }));
  engine = await createEngine(bytes, { threads: 1, contextLength: 128, maxSequences: 4 });
  server = await serveNode(createOpenAIHandler(engine, { onError: (e) => serverErrors.push(e) }), { port: 0 });
});

afterAll(async () => {
  await server?.close();
  await engine?.dispose();
});

/** A full collection when the runtime lets us ask for one (node: the flag can be set at run time). */
function collector(): (() => void) | undefined {
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    return () => { gc(); gc(); };
  } catch {
    return undefined;
  }
}

/** A tiny PRNG, so that a failing run can be repeated. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Kind = "stream" | "whole" | "abort mid-stream" | "abort at a time" | "abort whole" | "cancel body" | "drop socket" | "half a body";
const KINDS: Kind[] = ["stream", "whole", "abort mid-stream", "abort mid-stream", "abort at a time", "abort whole", "cancel body", "drop socket", "half a body"];

function body(r: () => number, stream: boolean): string {
  return JSON.stringify({
    messages: [{ role: "user", content: `request ${Math.floor(r() * 1e6)} ${"la ".repeat(Math.floor(r() * 20))}` }],
    max_tokens: 1 + Math.floor(r() * 40), ignore_eos: r() < 0.5, temperature: r() < 0.5 ? 0 : 1, stream,
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reads an SSE response; `stopAfter` chunks in, aborts. Returns whether the stream ended with [DONE]. */
async function readEvents(response: Response, stopAfter: number, abort: () => void): Promise<boolean> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (let chunks = 0; ; chunks++) {
    if (chunks === stopAfter) {
      abort();
      await reader.cancel().catch(() => {});
      return false;
    }
    const { done, value } = await reader.read();
    if (done) return text.endsWith("data: [DONE]\n\n");
    text += decoder.decode(value, { stream: true });
  }
}

/** Opens a raw connection, sends part of a request (or all of it), and destroys the socket. */
function rawDisconnect(url: string, payload: string, half: boolean, r: () => number): Promise<void> {
  return new Promise((resolve) => {
    const req = httpRequest(`${url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(payload)) },
    });
    req.on("error", () => resolve());
    req.on("close", () => resolve());
    if (half) {
      req.write(payload.slice(0, Math.floor(payload.length / 2)));
      setTimeout(() => req.destroy(), Math.floor(r() * 5));
      return;
    }
    req.on("response", (res) => {
      res.once("data", () => req.destroy());
      res.on("end", () => resolve());
    });
    req.end(payload);
  });
}

interface Outcomes { completed: number; abandoned: number; unexpected: string[]; byKind: Record<string, number> }

async function one(url: string, kind: Kind, r: () => number, out: Outcomes): Promise<void> {
  out.byKind[kind] = (out.byKind[kind] ?? 0) + 1;
  const controller = new AbortController();
  const limit = setTimeout(() => { out.unexpected.push(`${kind}: no end after ${REQUEST_LIMIT_MS} ms`); controller.abort(); }, REQUEST_LIMIT_MS);
  const streaming = kind !== "whole" && kind !== "abort whole";
  const init = { method: "POST", headers: { "content-type": "application/json" }, body: body(r, streaming), signal: controller.signal };
  try {
    if (kind === "drop socket" || kind === "half a body") {
      await rawDisconnect(url, init.body, kind === "half a body", r);
      out.abandoned++;
      return;
    }
    if (kind === "abort at a time" || kind === "abort whole") setTimeout(() => controller.abort(), Math.floor(r() * 30));
    const response = await fetch(`${url}/v1/chat/completions`, init);
    if (response.status !== 200) {
      out.unexpected.push(`${kind}: HTTP ${response.status} ${await response.text()}`);
      return;
    }
    if (!streaming) {
      const json = await response.json();
      if (!/^(stop|length)$/.test(json.choices?.[0]?.finish_reason)) out.unexpected.push(`${kind}: ${JSON.stringify(json)}`);
      out.completed++;
      return;
    }
    const stopAfter = kind === "abort mid-stream" || kind === "cancel body" ? Math.floor(r() * 6) : Infinity;
    const abort = kind === "cancel body" ? () => {} : () => controller.abort();
    const done = await readEvents(response, stopAfter, abort);
    if (done) out.completed++;
    else if (stopAfter !== Infinity || controller.signal.aborted) out.abandoned++;
    else out.unexpected.push(`${kind}: the stream ended without [DONE]`);
  } catch (error) {
    if (controller.signal.aborted) out.abandoned++;
    else out.unexpected.push(`${kind}: ${String(error)}`);
  } finally {
    clearTimeout(limit);
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const s = engine.kvStats();
    if (s.running === 0 && s.waiting === 0 && s.inUse === 0 && s.reserved === 0) return;
    await sleep(10);
  }
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

describe("client aborts and disconnects", () => {
  it(`${REQUESTS} requests, ${CONCURRENCY} at a time, many abandoned: every page and slot released, heap flat`, async () => {
    const gc = collector();
    const heap = () => { gc?.(); return process.memoryUsage().heapUsed; };
    const r = random(2024);
    // Warm up (JIT, connection pool, prefix cache) before the baseline.
    const warm: Outcomes = { completed: 0, abandoned: 0, unexpected: [], byKind: {} };
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => one(server.url, KINDS[i % KINDS.length], r, warm)));
    await settle();
    const before = { heap: heap(), kv: engine.kvStats() };

    const out: Outcomes = { completed: 0, abandoned: 0, unexpected: [], byKind: {} };
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) {
        next++;
        await one(server.url, r() < 0.2 ? "stream" : KINDS[Math.floor(r() * KINDS.length)], r, out);
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    await settle();
    const after = { heap: heap(), kv: engine.kvStats() };

    console.log(`${REQUESTS} requests in ${seconds.toFixed(1)} s: ${out.completed} completed, ${out.abandoned} abandoned; ` +
      `by kind ${JSON.stringify(out.byKind)}\n` +
      `KV before ${JSON.stringify(before.kv)}\nKV after  ${JSON.stringify(after.kv)}\n` +
      `heap before ${mib(before.heap)}, after ${mib(after.heap)} (${gc ? "after gc" : "no gc available"})`);
    expect(out.unexpected).toEqual([]);
    expect(out.completed + out.abandoned).toBe(REQUESTS);
    expect(after.kv).toMatchObject({ inUse: 0, reserved: 0, running: 0, waiting: 0 });
    expect(serverErrors.map(String)).toEqual([]);
    expect(after.heap - before.heap).toBeLessThan((gc ? 16 : 64) * 1024 * 1024);

    // And the server still answers.
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "still there?" }], max_tokens: 3, ignore_eos: true }),
    });
    expect((await response.json()).usage.completion_tokens).toBe(3);
  }, 240_000);
});
