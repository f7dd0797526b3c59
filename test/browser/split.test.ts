// A split GGUF (gguf-split's parts, written by the project's writer) in headless Chromium through the
// demo page: loaded from the first part's URL (the others found by name) on 2 threads, cached part by
// part (a second visit downloads nothing), and from Files picked in any order; the greedy tokens are
// Node's on the unsplit file.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import { createEngine } from "../../engine/engine";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { writeGGUFBytes, writeGGUFSplitFiles } from "../../weights/gguf/writer";
import { chromiumArgs, chromiumPath, describeInChromium } from "./chromium";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface DemoServer { url: string; requests: string[]; close(): Promise<void> }
type StartDemoServer = (o: { port: number; isolation?: boolean; models?: string }) => Promise<DemoServer>;

const PROMPT = "Once upon a time";
const GREEDY = { temperature: 0, maxTokens: 24, ignoreEos: true };

let dir: string;
let server: DemoServer;
let browser: Browser;
let parts: string[];
let expected: number[];
const pageErrors: string[] = [];


async function openDemo(page: Page, url: string): Promise<void> {
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  await page.goto(url);
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state ?? ""), null, { timeout: 60_000 });
}

const downloads = (path: string) => server.requests.filter((r) => r === `GET ${path}`).length;
/** Every GET of `path`: downloads and the preflight's Range reads of its header ("GET path bytes=A-B"). */
const gets = (path: string) => server.requests.filter((r) => r === `GET ${path}` || r.startsWith(`GET ${path} bytes=`));

describeInChromium("a split model in Chromium", () => {
  beforeAll(async () => {
    const build = await import(pathToFileURL(join(root, "scripts", "build-browser.mjs")).href);
    await build.build(root);
    const { startDemoServer } = await import(pathToFileURL(join(root, "scripts", "demo-web.mjs")).href) as { startDemoServer: StartDemoServer };
    const model = synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 9 });
    dir = mkdtempSync(join(tmpdir(), "qwasm-browser-split-"));
    parts = (await writeGGUFSplitFiles(join(dir, "tiny"), model, { parts: 3 })).map((p) => basename(p.path));
    const node = await createEngine(await writeGGUFBytes(model), { threads: 1, contextLength: 256, maxSequences: 1 });
    try {
      expected = (await node.generate(PROMPT, GREEDY)).tokens;
    } finally {
      await node.dispose();
    }
    server = await startDemoServer({ port: 0, models: dir });
    browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("loads from the first part's URL on 2 threads, caches every part, and matches Node", async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await openDemo(page, `${server.url}/?model=/models/${parts[0]}&threads=2&ctx=256&autoload=1`);
      expect(await page.evaluate(() => document.body.dataset.state), JSON.stringify(pageErrors)).toBe("ready");
      const info = await page.evaluate(() => (window as any).qwasmDemo.engine.info);
      expect(info).toMatchObject({ threads: 2, parts: 3, source: "network" });
      const tokens = await page.evaluate(async ({ PROMPT, GREEDY }) =>
        (await (window as any).qwasmDemo.engine.generate(PROMPT, GREEDY)).tokens, { PROMPT, GREEDY });
      expect(tokens).toEqual(expected);
      const keys = await page.evaluate(async () => (await (await caches.open("qwasm-models-v1")).keys()).map((r) => r.url));
      expect(keys.sort()).toEqual(parts.map((p) => `${server.url}/models/${p}`));
      for (const p of parts) expect(downloads(`/models/${p}`)).toBe(1);
      // Every part's header was read (Range requests) before any part was downloaded: the preflight.
      const firstDownload = Math.min(...parts.map((p) => server.requests.indexOf(`GET /models/${p}`)));
      for (const p of parts) {
        const ranged = server.requests.findIndex((r) => r.startsWith(`GET /models/${p} bytes=`));
        expect(ranged, p).toBeGreaterThanOrEqual(0);
        expect(ranged, p).toBeLessThan(firstDownload);
      }
      const before = parts.map((p) => gets(`/models/${p}`).length);
      await page.close();

      const again = await context.newPage();
      await openDemo(again, `${server.url}/?model=/models/${parts[0]}&threads=2&ctx=256&autoload=1`);
      expect(await again.evaluate(() => (window as any).qwasmDemo.engine.info)).toMatchObject({ parts: 3, source: "cache" });
      // From the cache: not even a Range request (the preflight read the cached headers).
      expect(parts.map((p) => gets(`/models/${p}`).length)).toEqual(before);
      const reloaded = await again.evaluate(async ({ PROMPT, GREEDY }) =>
        (await (window as any).qwasmDemo.engine.generate(PROMPT, GREEDY)).tokens, { PROMPT, GREEDY });
      expect(reloaded).toEqual(expected);
    } finally {
      await context.close();
    }
  }, 300_000);

  it("loads from Files in any order (the parts a user picked) and matches Node", async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      page.on("pageerror", (e) => pageErrors.push(e.message));
      await page.goto(`${server.url}/`); // for the origin: qwasm.js and its workers are served there
      const files = parts.map((p) => ({ name: p, base64: readFileSync(join(dir, p)).toString("base64") }));
      // Page code as a string: the test runner would rewrite a dynamic import() in a function.
      const result = await page.evaluate(`(async ({ files, PROMPT, GREEDY }) => {
        const { loadEngine } = await import(new URL("./qwasm.js", location.href).href);
        const picked = [files[2], files[0], files[1]].map((f) =>
          new File([Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0))], f.name));
        const engine = await loadEngine(picked, { threads: 1, contextLength: 256, cache: false });
        try {
          return { info: engine.info, tokens: (await engine.generate(PROMPT, GREEDY)).tokens };
        } finally {
          await engine.dispose();
        }
      })(${JSON.stringify({ files, PROMPT, GREEDY })})`) as { info: unknown; tokens: number[] };
      expect(result.info).toMatchObject({ parts: 3, source: "file" });
      expect(result.tokens).toEqual(expected);
    } finally {
      await context.close();
    }
  }, 300_000);
});
