// The browser's memory preflight comes before the download: a page that cannot hold a model (a
// 72B-shape Q4_0, about 40 GiB, past Chrome's 16 GiB per-tab limit) is refused with
// INSUFFICIENT_MEMORY after the engine worker read only the GGUF header(s): HTTP Range requests for
// one file and for every part of a split model, with the Cache API on; from a server that ignores
// Range, the first bytes of the body and a cancel. The files are served from their headers (the
// tensor data is zeros made on the fly) and the server counts the bytes it sent. That a model that
// fits still downloads, is cached and loads from the cache is demo.test.ts's and split.test.ts's.
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { chromium, type Browser } from "playwright-core";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { layoutGGUF, splitGGUF } from "../../weights/gguf/writer";
import { splitPartName } from "../../weights/gguf/split";
import { chromiumArgs, chromiumPath, describeInChromium } from "./chromium";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MiB = 2 ** 20;
/** A server stops sending a file after this many bytes (a broken preflight fails instead of filling the disk). */
const SEND_CAP = 256 * MiB;

interface DemoServer { url: string; requests: string[]; close(): Promise<void> }
type StartDemoServer = (o: {
  port: number; models?: string; routes?: Record<string, (req: IncomingMessage, res: ServerResponse) => void>;
}) => Promise<DemoServer>;

/** A file that is its header and then zeros up to its size. */
interface VirtualFile { header: Uint8Array; size: number }

let browser: Browser;
let ranged: DemoServer;
let plain: DemoServer;
/** Bytes of body each server sent, by path. */
const sent = { ranged: new Map<string, number>(), plain: new Map<string, number>() };
const files = new Map<string, VirtualFile>();
let partNames: string[];

/** The bytes [start, end) of a virtual file. */
function slice(file: VirtualFile, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  if (start < file.header.length) out.set(file.header.subarray(start, Math.min(end, file.header.length)));
  return out;
}

/** Serves the virtual files; with `range`, single Range requests get 206, else the whole body (200). */
function serve(range: boolean, counts: Map<string, number>) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const file = files.get(path)!;
    const m = range ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "") : null;
    const start = m ? Number(m[1]) : 0;
    const end = m ? Math.min(file.size, m[2] === "" ? file.size : Number(m[2]) + 1) : file.size;
    const headers = { "content-type": "application/octet-stream", "content-length": end - start, ...(range ? { "accept-ranges": "bytes" } : {}) };
    if (m) res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${end - 1}/${file.size}` });
    else res.writeHead(200, headers);
    if (req.method === "HEAD") return res.end();
    let at = start;
    let closed = false;
    res.on("close", () => { closed = true; });
    const pump = () => {
      while (!closed && at < end) {
        if (at - start >= SEND_CAP) return res.destroy();
        const n = Math.min(256 * 1024, end - at);
        counts.set(path, (counts.get(path) ?? 0) + n);
        const more = res.write(slice(file, at, at + n));
        at += n;
        if (!more) return res.once("drain", pump);
      }
      if (!closed) res.end();
    };
    pump();
  };
}


/** Loads `model` (a path on `server`) with the cache on, in a fresh page; the error and the cache's keys. */
async function refusal(server: DemoServer, model: string): Promise<{ code?: string; message: string; cached: string[] }> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${server.url}/`);
    // Page code as a string: the test runner would rewrite a dynamic import() in a function.
    return await page.evaluate(`(async (model) => {
      const { loadEngine } = await import(new URL("./qwasm.js", location.href).href);
      let error;
      try {
        const engine = await loadEngine(model, { threads: 1, contextLength: 512 });
        await engine.dispose();
        error = { message: "loaded" };
      } catch (e) {
        error = { code: e.code, message: String(e.message) };
      }
      const cached = (await (await caches.open("qwasm-models-v1")).keys()).map((r) => r.url);
      return { ...error, cached };
    })(${JSON.stringify(model)})`) as { code?: string; message: string; cached: string[] };
  } finally {
    await context.close();
  }
}

const sizeOf = (path: string) => files.get(path)!.size;

describeInChromium("the browser preflight", () => {
  beforeAll(async () => {
    const build = await import(pathToFileURL(join(root, "scripts", "build-browser.mjs")).href);
    await build.build(root);
    const { startDemoServer } = await import(pathToFileURL(join(root, "scripts", "demo-web.mjs")).href) as { startDemoServer: StartDemoServer };
    const model = synthQwen2({ shape: "72b", vocabulary: await readQwen2Vocabulary(), type: "Q4_0" });
    const whole = layoutGGUF(model);
    files.set("/models/big.gguf", { header: whole.header, size: whole.fileSize });
    const parts = splitGGUF(model, { parts: 3 });
    partNames = parts.map((_, no) => splitPartName("big", no, parts.length));
    parts.forEach((part, no) => {
      const layout = layoutGGUF(part);
      files.set(`/models/${partNames[no]}`, { header: layout.header, size: layout.fileSize });
    });
    const routes = (range: boolean, counts: Map<string, number>) => Object.fromEntries([...files.keys()].map((p) => [p, serve(range, counts)]));
    ranged = await startDemoServer({ port: 0, routes: routes(true, sent.ranged) });
    plain = await startDemoServer({ port: 0, routes: routes(false, sent.plain) });
    browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await ranged?.close();
    await plain?.close();
  });

  it("refuses a 72B-shape Q4_0 from one URL after Range reads of its header only, with the cache on", async () => {
    const r = await refusal(ranged, "/models/big.gguf");
    expect(r.code, r.message).toBe("INSUFFICIENT_MEMORY");
    expect(r.message).toMatch(/^the model needs \d+\.\d\d GiB in \d+ WebAssembly memories .*a page may use about/);
    expect(r.cached).toEqual([]);
    const path = "/models/big.gguf";
    const header = files.get(path)!.header.length;
    expect(sizeOf(path)).toBeGreaterThan(30 * 2 ** 30);
    // Every GET of the file was a Range request, and together they fetched about the header.
    const gets = ranged.requests.filter((q) => q.startsWith(`GET ${path}`));
    expect(gets.length).toBeGreaterThan(0);
    expect(gets.every((q) => q.includes("bytes="))).toBe(true);
    expect(sent.ranged.get(path)).toBeGreaterThanOrEqual(header);
    expect(sent.ranged.get(path)).toBeLessThanOrEqual(2 * header + 2 * MiB);
  }, 120_000);

  it("refuses the same model split in 3 parts after reading every part's header only", async () => {
    const r = await refusal(ranged, `/models/${partNames[0]}`);
    expect(r.code, r.message).toBe("INSUFFICIENT_MEMORY");
    expect(r.cached).toEqual([]);
    for (const name of partNames) {
      const path = `/models/${name}`;
      const gets = ranged.requests.filter((q) => q.startsWith(`GET ${path}`));
      expect(gets.length, path).toBeGreaterThan(0);
      expect(gets.every((q) => q.includes("bytes=")), path).toBe(true);
      expect(sent.ranged.get(path), path).toBeLessThanOrEqual(2 * files.get(path)!.header.length + 2 * MiB);
      expect(sizeOf(path)).toBeGreaterThan(10 * 2 ** 30);
    }
    // The parts after the first hold no vocabulary: their headers (a few KiB) came in the first 256 KiB read.
    for (const name of partNames.slice(1)) expect(sent.ranged.get(`/models/${name}`), name).toBeLessThanOrEqual(256 * 1024);
  }, 120_000);

  it("refuses it from a server that ignores Range after reading a prefix of the body", async () => {
    const path = "/models/big.gguf";
    const r = await refusal(plain, path);
    expect(r.code, r.message).toBe("INSUFFICIENT_MEMORY");
    expect(r.cached).toEqual([]);
    // The header, and what the sockets and the browser buffered before the cancel: far less than the file.
    const bytes = sent.plain.get(path)!;
    expect(bytes).toBeGreaterThanOrEqual(files.get(path)!.header.length);
    expect(bytes).toBeLessThan(64 * MiB);
  }, 120_000);
});
