// The demo page in headless Chromium, served by scripts/demo-web.mjs with a tiny synthetic model:
// loading from a URL with progress, a streamed reply and the stop button, the Cache API (a second
// visit loads without downloading; a broken download leaves nothing behind), two threads when the
// page is cross-origin isolated and one when it is not, the same greedy tokens as Node, and the
// engine's step counters through BrowserEngine.stats().
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { createEngine, type QwasmEngine } from "../../engine/engine";
import { loadQwen2, planModel, prefill } from "../../compute/model/model";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { mapQwen2Tensors, parseQwen2Config } from "../../weights/qwen2";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { chromiumArgs, chromiumPath, describeInChromium } from "./chromium";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface DemoServer { url: string; requests: string[]; close(): Promise<void> }
type StartDemoServer = (o: {
  port: number; isolation?: boolean; models?: string;
  routes?: Record<string, (req: IncomingMessage, res: ServerResponse) => void>;
}) => Promise<DemoServer>;

const PROMPT = "Once upon a time";
const CHAT = [{ role: "user" as const, content: "Hello there, who are you?" }];
const GREEDY = { temperature: 0, maxTokens: 32, ignoreEos: true };
const SAMPLED = { temperature: 0.8, topP: 0.95, seed: 11, maxTokens: 32, ignoreEos: true };

let dir: string;
let modelBytes: Uint8Array;
let node: QwasmEngine;
let isolated: DemoServer;
let plain: DemoServer;
let browser: Browser;
const pageErrors: string[] = [];

/** What Node computes for the requests the pages are asked. */
let expected: { generate: number[]; chat: number[]; sampled: number[]; ids: number[] };
/** Node's logits (one thread) for every position of LOGITS_PROMPT, and its token ids. */
let expectedLogits: Float32Array;
let expectedMoELogits: Float32Array;
let logitIds: number[];
let vocab: number;
const LOGITS_PROMPT = "The quick brown fox jumps over the lazy dog, and then it runs away into the woods.";

/** Runs the same requests on the page's engine. */
function pageRun(page: Page) {
  return page.evaluate(async ({ PROMPT, CHAT, GREEDY, SAMPLED }) => {
    const engine = (window as any).qwasmDemo.engine;
    const generate = await engine.generate(PROMPT, GREEDY);
    const chat = await engine.chat(CHAT, GREEDY);
    const sampled = await engine.chat(CHAT, SAMPLED);
    return { generate: generate.tokens, chat: chat.tokens, sampled: sampled.tokens, ids: await engine.tokenize(PROMPT) };
  }, { PROMPT, CHAT, GREEDY, SAMPLED });
}

/** The logits of every position of `logitIds`, computed in a worker of the page on `threads` threads. */
async function pageLogits(page: Page, threads: number, file = "tiny.gguf", maxShardBytes?: number): Promise<{ threads: number; shards: number; logits: Float32Array }> {
  const r = await page.evaluate(({ ids, threads, file, maxShardBytes }) => new Promise<{ threads: number; shards: number; base64: string }>((resolve, reject) => {
    const worker = new Worker("/logits-worker.js", { type: "module" });
    worker.onmessage = (e) => {
      worker.terminate();
      if (e.data.error) return reject(new Error(e.data.error));
      let text = "";
      for (const b of e.data.bytes as Uint8Array) text += String.fromCharCode(b);
      resolve({ threads: e.data.threads, shards: e.data.shards, base64: btoa(text) });
    };
    worker.onerror = (e) => reject(new Error(e.message));
    worker.postMessage({ url: new URL(`/models/${file}`, location.href).href, threads, ids, maxShardBytes });
  }), { ids: logitIds, threads, file, maxShardBytes });
  const bytes = Buffer.from(r.base64, "base64");
  return { threads: r.threads, shards: r.shards, logits: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) };
}

/** The smallest maxShardBytes that places the tiny model (as the logits worker loads it) in 3 shards:
 *  its 2 layers and the head (with the tied embedding) each alone. */
async function threeShardLimit(): Promise<number> {
  const file = parseGGUFBytes(modelBytes);
  const config = parseQwen2Config(file.metadata, file.tensors);
  const shards = async (maxShardBytes: number) => {
    try {
      return (await planModel(file, config, mapQwen2Tensors(config, file.tensors),
        { threads: 2, contextLength: 256, maxTokens: 16, maxShardBytes })).shardBytes.length;
    } catch {
      return Infinity;
    }
  };
  let lo = 65536, hi = 2 ** 30;
  while (hi - lo > 64) {
    const mid = Math.floor((lo + hi) / 2);
    if (await shards(mid) <= 3) hi = mid; else lo = mid;
  }
  return hi;
}

/** Where two sets of logits first differ (bit for bit), named by position and token id; "" when equal. */
function firstDifference(actual: Float32Array, reference: Float32Array, vocab: number): string {
  if (actual.length !== reference.length) return `${actual.length} logits, expected ${reference.length}`;
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(reference.buffer, reference.byteOffset, reference.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return `position ${Math.floor(i / vocab)}, token id ${i % vocab}: ${actual[i]} in Chromium, ${reference[i]} in Node`;
    }
  }
  return "";
}

async function openDemo(context: BrowserContext, url: string): Promise<Page> {
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  await page.goto(url);
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state ?? ""), null, { timeout: 30_000 });
  return page;
}

const info = (page: Page) => page.evaluate(() => (window as any).qwasmDemo.engine?.info);
const state = (page: Page) => page.evaluate(() => document.body.dataset.state);
const getRequests = (server: DemoServer, path: string) => server.requests.filter((r) => r === `GET ${path}`).length;


describeInChromium("the demo page in Chromium", () => {
  beforeAll(async () => {
    const build = await import(pathToFileURL(join(root, "scripts", "build-browser.mjs")).href);
    await build.build(root);
    const esbuild = await import("esbuild");
    const { startDemoServer } = await import(pathToFileURL(join(root, "scripts", "demo-web.mjs")).href) as { startDemoServer: StartDemoServer };

    modelBytes = await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 7 }));
    dir = mkdtempSync(join(tmpdir(), "qwasm-browser-"));
    writeFileSync(join(dir, "tiny.gguf"), modelBytes);
    // A qwen2moe model too: its logits in the page's worker pool must be Node's as well.
    const moeBytes = await writeGGUFBytes(synthQwen2({ shape: "tiny-moe", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 8 }));
    writeFileSync(join(dir, "tiny-moe.gguf"), moeBytes);

    await esbuild.build({
      bundle: true, platform: "browser", format: "esm", target: "es2022", logLevel: "warning", plugins: [build.stubNodeModules],
      entryPoints: [join(root, "test", "browser", "logits-worker.ts")], outfile: join(dir, "logits-worker.js"),
    });

    node = await createEngine(modelBytes, { threads: 2, contextLength: 2048, maxSequences: 1 });
    logitIds = node.tokenize(LOGITS_PROMPT);
    const reference = await loadQwen2(modelBytes, { threads: 1, contextLength: 256, maxTokens: 16 });
    expectedLogits = await prefill(reference.forward, logitIds, 0, true);
    vocab = reference.config.vocabSize;
    await reference.dispose();
    const moeReference = await loadQwen2(moeBytes, { threads: 1, contextLength: 256, maxTokens: 16 });
    expectedMoELogits = await prefill(moeReference.forward, logitIds, 0, true);
    await moeReference.dispose();
    const ids = node.tokenize(PROMPT);
    expected = {
      ids,
      generate: (await node.generateTokens(ids, GREEDY)).tokens,
      chat: (await node.chat(CHAT, GREEDY)).tokens,
      sampled: (await node.chat(CHAT, SAMPLED)).tokens,
    };

    // A download that breaks halfway: the whole size announced, half the bytes sent, then a reset.
    const broken = (req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": modelBytes.length });
      if (req.method === "HEAD") return res.end();
      res.write(modelBytes.subarray(0, modelBytes.length >> 1), () => setTimeout(() => res.destroy(), 50));
    };
    // The logits worker sits at the root, so that it finds compute-worker.js beside it.
    const logitsWorker = (_req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { "content-type": "text/javascript" }).end(readFileSync(join(dir, "logits-worker.js")));
    };
    isolated = await startDemoServer({
      port: 0, models: dir, routes: { "/models/broken.gguf": broken, "/logits-worker.js": logitsWorker },
    });
    plain = await startDemoServer({ port: 0, isolation: false, models: dir, routes: { "/logits-worker.js": logitsWorker } });
    browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  });

  afterAll(async () => {
    await browser?.close();
    await isolated?.close();
    await plain?.close();
    await node?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("cross-origin isolated: loads a URL with progress on 2 threads, streams, stops, caches, matches Node", async () => {
    const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
    try {
      const page = await openDemo(context, `${isolated.url}/?model=/models/tiny.gguf&threads=2&ctx=2048&autoload=1`);
      expect(await state(page), JSON.stringify(pageErrors)).toBe("ready");
      expect(await info(page)).toMatchObject({ threads: 2, crossOriginIsolated: true, source: "network", fileBytes: modelBytes.length });
      expect(await page.textContent("#threads-chip")).toBe("threads: 2");
      expect(await page.textContent("#isolation")).toBe("cross-origin isolated");
      const progress = await page.evaluate(() => (window as any).qwasmDemo.progress);
      expect(progress.at(-1)).toEqual({ phase: "download", loadedBytes: modelBytes.length, totalBytes: modelBytes.length });

      // The pool's tokens are Node's tokens, greedy and seeded, and its logits are Node's, bit for bit.
      expect(await pageRun(page)).toEqual(expected);
      expect(logitIds.length).toBeGreaterThan(32); // three prefill chunks of up to 16 tokens
      expect(expectedLogits.length).toBe(logitIds.length * vocab);
      const pool = await pageLogits(page, 2);
      expect(pool.threads).toBe(2);
      expect(firstDifference(pool.logits, expectedLogits, vocab)).toBe("");
      const moePool = await pageLogits(page, 2, "tiny-moe.gguf");
      expect(moePool.threads).toBe(2);
      expect(firstDifference(moePool.logits, expectedMoELogits, vocab)).toBe("");
      // The model over 3 WebAssembly memories (maxShardBytes) in the pool: Node's one-memory logits.
      const sharded = await pageLogits(page, 2, "tiny.gguf", await threeShardLimit());
      expect(sharded.shards).toBe(3);
      expect(sharded.threads).toBe(2);
      expect(firstDifference(sharded.logits, expectedLogits, vocab)).toBe("");

      // A streamed reply, stopped by the button as the third token arrives (clicked from inside the
      // page, so that how fast the tiny model runs does not matter).
      await page.check("#ignore-eos");
      await page.fill("#max-tokens", "1800");
      await page.fill("#prompt", "Tell me a long story.");
      await page.evaluate(() => {
        const observer = new MutationObserver(() => {
          const reply = document.querySelector("#reply");
          if (Number(reply?.getAttribute("data-tokens") ?? 0) >= 3) {
            observer.disconnect();
            (document.querySelector("#stop") as HTMLButtonElement).click();
          }
        });
        observer.observe(document.querySelector("#messages")!, { subtree: true, attributes: true, childList: true });
      });
      await page.click("#send");
      await page.waitForFunction(() => document.body.dataset.state === "ready" && document.querySelector("#stats")?.hasAttribute("data-finish"));
      const result = await page.evaluate(() => (window as any).qwasmDemo.lastResult);
      expect(result.finishReason).toBe("abort");
      expect(result.tokens.length).toBeGreaterThanOrEqual(3);
      expect(result.tokens.length).toBeLessThan(1800);
      expect(await page.getAttribute("#stats", "data-finish")).toBe("abort");
      expect(await page.textContent("#stats")).toMatch(/tokens\/s/);
      if (process.env.QWASM_SCREENSHOT) {
        await page.fill("#prompt", "What can you do?");
        await page.screenshot({ path: process.env.QWASM_SCREENSHOT });
      }

      // The download is in the Cache API; a second visit loads from there without downloading.
      const keys = await page.evaluate(async () => (await (await caches.open("qwasm-models-v1")).keys()).map((r) => r.url));
      expect(keys).toEqual([`${isolated.url}/models/tiny.gguf`]);
      await page.close();
      const downloads = getRequests(isolated, "/models/tiny.gguf");
      const again = await openDemo(context, `${isolated.url}/?model=/models/tiny.gguf&threads=2&ctx=2048&autoload=1`);
      expect(await info(again)).toMatchObject({ threads: 2, source: "cache", fileBytes: modelBytes.length });
      expect(getRequests(isolated, "/models/tiny.gguf")).toBe(downloads);
      const reloaded = await again.evaluate(async (GREEDY) =>
        (await (window as any).qwasmDemo.engine.generate("Once upon a time", GREEDY)).tokens, GREEDY);
      expect(reloaded).toEqual(expected.generate);

      // A download that breaks halfway fails the load and leaves no cache entry.
      await again.fill("#model-url", "/models/broken.gguf");
      await again.click("#load-url");
      await again.waitForFunction(() => document.body.dataset.state === "error");
      expect(await again.textContent("#info")).toMatch(/could not load broken\.gguf/);
      const after = await again.evaluate(async () => (await (await caches.open("qwasm-models-v1")).keys()).map((r) => r.url));
      expect(after).toEqual([`${isolated.url}/models/tiny.gguf`]);
    } finally {
      await context.close();
    }
  });

  it("not isolated: one thread, with the reason, and the same tokens", async () => {
    const context = await browser.newContext();
    try {
      const page = await openDemo(context, `${plain.url}/?model=/models/tiny.gguf&threads=2&ctx=2048&autoload=1`);
      expect(await state(page), JSON.stringify(pageErrors)).toBe("ready");
      const i = await info(page);
      expect(i).toMatchObject({ threads: 1, crossOriginIsolated: false, source: "network" });
      expect(i.threadsReason).toMatch(/not cross-origin isolated/);
      expect(await page.textContent("#threads-chip")).toBe("threads: 1");
      expect(await page.textContent("#isolation")).toBe("not cross-origin isolated");
      expect(await page.textContent("#info")).toMatch(/Cross-Origin-Opener-Policy/);
      expect(await pageRun(page)).toEqual(expected);
      const inline = await pageLogits(page, 2);
      expect(inline.threads).toBe(1);
      expect(firstDifference(inline.logits, expectedLogits, vocab)).toBe("");

      // The file picker: a File is read at offsets, with progress over the tensor data.
      await page.setInputFiles("#model-file", join(dir, "tiny.gguf"));
      await page.waitForFunction(() => document.body.dataset.state === "ready" && (window as any).qwasmDemo.engine?.info.source === "file");
      const last = await page.evaluate(() => (window as any).qwasmDemo.progress.at(-1));
      expect(last.phase).toBe("file");
      expect(last.loadedBytes).toBe(last.totalBytes);
      expect((await pageRun(page)).generate).toEqual(expected.generate);

      // The JSON toggle: the reply is one JSON object (response_format json_object), here on one
      // thread without SharedArrayBuffer, as in an edge isolate.
      await page.check("#json");
      await page.fill("#max-tokens", "400");
      await page.fill("#temperature", "1");
      await page.fill("#prompt", "Describe a cat in JSON.");
      await page.click("#send");
      await page.waitForFunction(() => document.body.dataset.state === "ready" && document.querySelector("#stats")?.hasAttribute("data-finish"));
      const json = await page.evaluate(() => (window as any).qwasmDemo.lastResult);
      expect(["stop", "length"]).toContain(json.finishReason);
      if (json.finishReason === "stop") expect(Object.getPrototypeOf(JSON.parse(json.text))).toBe(Object.prototype);
      else expect(json.text.startsWith("{"), json.text).toBe(true);
    } finally {
      await context.close();
    }
  });

  it.each([["2 threads (isolated)", () => isolated, 2], ["1 thread (not isolated)", () => plain, 1]] as const)(
    "stats(): the engine worker's forward steps, their time and the engine's own time, counted per request, on %s", async (_name, server, threads) => {
    const context = await browser.newContext();
    try {
      const page = await openDemo(context, `${server().url}/?model=/models/tiny.gguf&threads=2&ctx=2048&cache=0&autoload=1`);
      expect(await state(page), JSON.stringify(pageErrors)).toBe("ready");
      expect((await info(page)).threads).toBe(threads);
      const r = await page.evaluate(async (PROMPT) => {
        const engine = (window as any).qwasmDemo.engine;
        const before = await engine.stats();
        const first = await engine.generate(PROMPT, { temperature: 0, maxTokens: 8, ignoreEos: true });
        const between = await engine.stats();
        const second = await engine.generate(`${PROMPT} there was a fox`, { temperature: 0, maxTokens: 24, ignoreEos: true });
        const after = await engine.stats();
        return { before, between, after, first: first.usage, second: second.usage };
      }, PROMPT);
      expect(r.before).toEqual({ steps: 0, stepSeconds: 0, stepGaps: 0, stepGapSeconds: 0, generationTokens: 0, promptTokens: 0 });
      expect(r.between.steps).toBeGreaterThan(0);
      expect(r.between.stepSeconds).toBeGreaterThan(0);
      // A greedy ignoreEos request of maxTokens N, alone, with a prompt within one prefill chunk (64
      // tokens): one prefill step (it gives the first token), then one decode step per further token,
      // N steps; the engine's loop starts afresh for it, so it times the N - 1 gaps between them.
      for (const [from, to, usage, n] of [[r.before, r.between, r.first, 8], [r.between, r.after, r.second, 24]] as const) {
        expect(usage.promptTokens).toBeLessThanOrEqual(64);
        expect(usage.completionTokens).toBe(n);
        expect(to.steps - from.steps).toBe(n);
        expect(to.stepGaps - from.stepGaps).toBe(n - 1);
        expect(to.generationTokens - from.generationTokens).toBe(n);
        expect(to.promptTokens - from.promptTokens).toBe(usage.promptTokens);
        expect(to.stepSeconds).toBeGreaterThan(from.stepSeconds);
      }
      // The engine yields to the worker's event loop between steps (on one thread, a message on a
      // channel it keeps): an abort from the page still gets through while it generates.
      const aborted = await page.evaluate(async () => {
        const engine = (window as any).qwasmDemo.engine;
        const stop = new AbortController();
        let tokens = 0;
        const stream = engine.generate("Tell me a long story.", { temperature: 0, maxTokens: 1800, ignoreEos: true, signal: stop.signal });
        for await (const delta of stream) if ((tokens += delta.tokens.length) >= 3) stop.abort();
        const result = await stream;
        return { finishReason: result.finishReason, tokens: result.tokens.length };
      });
      expect(aborted.finishReason).toBe("abort");
      expect(aborted.tokens).toBeGreaterThanOrEqual(3);
      expect(aborted.tokens).toBeLessThan(1800);
    } finally {
      await context.close();
    }
  });

  it("the page logged no errors", () => {
    expect(pageErrors).toEqual([]);
  });
});
