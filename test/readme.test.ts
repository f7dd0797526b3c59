// The README's examples, run as a user would copy them: Node, Deno, an edge function (no Worker, no
// SharedArrayBuffer) and the browser page, each on a tiny synthetic model substituted for Qwen's file.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeGGUFBytes } from "../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../tools/synth";
import { projectRoot } from "./fixtures";

const run = promisify(execFile);
const README = readFileSync(join(projectRoot, "README.md"), "utf8");
const REAL_MODEL = "qwen2-0_5b-instruct-q4_0.gguf";

/** The code block after `<!-- example: name -->`. */
function example(name: string): string {
  const match = README.match(new RegExp(`<!-- example: ${name} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\`\`\``));
  if (!match) throw new Error(`README.md has no example "${name}"`);
  return match[1];
}

const work = mkdtempSync(join(tmpdir(), "qwasm-readme-"));
const model = join(work, REAL_MODEL);
let server: Server;
let baseUrl = "";
afterAll(() => {
  server?.close();
  rmSync(work, { recursive: true, force: true });
});

beforeAll(async () => {
  writeFileSync(model, await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q4_0", seed: 5 })));
  // `import "qwasm"` resolves to this checkout through the package's exports.
  mkdirSync(join(work, "node_modules"));
  symlinkSync(projectRoot, join(work, "node_modules", "qwasm"), "dir");
  writeFileSync(join(work, "package.json"), JSON.stringify({ type: "module", private: true }));
  // A static server with COOP/COEP: the model (for the edge function) and the browser page.
  const browserDist = join(projectRoot, "dist", "browser");
  server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const file = path === "/" ? join(work, "index.html")
      : path.startsWith("/models/") ? join(work, path.slice("/models/".length))
      : join(browserDist, path.slice(1));
    if (!existsSync(file) || file.includes("..")) { res.writeHead(404).end(); return; }
    const type = file.endsWith(".html") ? "text/html" : file.endsWith(".js") ? "text/javascript" : "application/octet-stream";
    res.writeHead(200, {
      "Content-Type": type, "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
      "Cross-Origin-Resource-Policy": "same-origin",
    }).end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

/** A test's title, with the reason when the runner skips it. */
function titled(title: string, skipped: boolean, reason: string): string {
  return skipped ? `${title} (skipped: ${reason})` : title;
}

const built = existsSync(join(projectRoot, "dist", "index.js"));
describe.skipIf(!built)(titled("README examples", !built, "dist/index.js is not built: npm run build"), () => {
  it("Node", async () => {
    writeFileSync(join(work, "node.mjs"), example("node").replaceAll(`"${REAL_MODEL}"`, JSON.stringify(model)));
    const { stdout } = await run("node", ["node.mjs"], { cwd: work, timeout: 60_000 });
    expect(stdout).toMatch(/completionTokens: \d+/);
  });

  it("structured output: the JSON parses and matches the schema, the grammar's answer is one of its words", async () => {
    writeFileSync(join(work, "structured.mjs"), example("structured").replaceAll(`"${REAL_MODEL}"`, JSON.stringify(model)));
    const { stdout } = await run("node", ["structured.mjs"], { cwd: work, timeout: 60_000 });
    const [first, second] = stdout.trim().split("\n");
    const cut = first.lastIndexOf(" ");
    const user = JSON.parse(first.slice(0, cut)) as Record<string, unknown>;
    expect(first.slice(cut + 1)).toBe("stop");
    expect(Object.keys(user)).toEqual(["name", "age"]);
    expect(typeof user.name === "string" && user.name.length <= 20).toBe(true);
    expect(Number.isInteger(user.age) && (user.age as number) >= 0 && (user.age as number) <= 150).toBe(true);
    expect(second).toMatch(/^(yes|no)\.$/);
  });

  // The same example under Bun (JavaScriptCore), where .ci/run has installed it.
  const bun = join(projectRoot, "node_modules", "@oven", "bun-linux-x64", "bin", "bun");
  it.skipIf(!existsSync(bun))(titled("Node's example under Bun", !existsSync(bun), "no Bun binary: .ci/run installs @oven/bun-linux-x64"), async () => {
    writeFileSync(join(work, "bun.mjs"), example("node").replaceAll(`"${REAL_MODEL}"`, JSON.stringify(model)));
    const { stdout } = await run(bun, ["bun.mjs"], { cwd: work, timeout: 60_000 });
    expect(stdout).toMatch(/completionTokens: \d+/);
  });

  const denoScope = join(projectRoot, "node_modules", "@deno");
  const deno = existsSync(denoScope) ? readdirSync(denoScope).map((p) => join(denoScope, p, "deno")).find(existsSync) : undefined;
  it.skipIf(!deno)(titled("Deno", !deno, "no Deno binary in node_modules/@deno"), async () => {
    const code = example("deno").replace(`"npm:qwasm"`, JSON.stringify(pathToFileURL(join(projectRoot, "dist", "index.js")).href))
      .replaceAll(`"${REAL_MODEL}"`, JSON.stringify(model));
    writeFileSync(join(work, "deno.js"), code);
    const { stdout } = await run(deno!, ["run", "--no-prompt", "--allow-read", "--allow-net=127.0.0.1", "deno.js"],
      { cwd: work, timeout: 90_000, env: { ...process.env, NO_COLOR: "1" } });
    expect(stdout.trim().split("\n").length).toBeGreaterThanOrEqual(2);
  });

  it("an edge function, with no Worker and no SharedArrayBuffer", async () => {
    writeFileSync(join(work, "edge.mjs"), example("edge").replace(/const MODEL_URL = ".*";/, `const MODEL_URL = "${baseUrl}/models/${REAL_MODEL}";`));
    writeFileSync(join(work, "edge-runner.mjs"), `
      import edge from "./edge.mjs";
      import { kernelBuild } from "qwasm";
      if (typeof SharedArrayBuffer !== "undefined" || typeof Worker !== "undefined") throw new Error("not an edge-like isolate");
      const ask = () => edge.fetch(new Request("http://edge/v1/chat/completions", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 6, temperature: 0 }),
      }));
      const first = await (await ask()).json();
      const second = await (await ask()).json();
      console.log(JSON.stringify({ build: await kernelBuild(), first: first.choices[0].message.content,
        second: second.choices[0].message.content, tokens: first.usage.completion_tokens }));
      process.exit(0);`);
    // Node 20 as it starts (no relaxed SIMD), and with relaxed SIMD as edge runtimes have it.
    const edge = async (flags: string[]) => {
      const { stdout } = await run("node", [...flags, "--no-harmony-sharedarraybuffer", "edge-runner.mjs"], { cwd: work, timeout: 60_000 });
      return JSON.parse(stdout.trim().split("\n").pop()!);
    };
    const plain = await edge([]);
    expect(plain.build).toBe("simd128-unshared");
    expect(plain.tokens).toBeGreaterThan(0);
    expect(plain.second).toBe(plain.first); // greedy, the same isolate reuses its engine
    const relaxed = await edge(["--experimental-wasm-relaxed-simd"]);
    // the probe decides; on x86-64 it accepts the relaxed build
    expect(relaxed.build).toBe(process.arch === "x64" ? "relaxed-simd-unshared" : relaxed.build);
    expect(["relaxed-simd-unshared", "simd128-unshared"]).toContain(relaxed.build);
    expect(relaxed.second).toBe(relaxed.first);
  });

  const noBrowser = !existsSync("/usr/bin/chromium") || !existsSync(join(projectRoot, "dist", "browser", "qwasm.js"));
  it.skipIf(noBrowser)(titled("the browser page", noBrowser, "no /usr/bin/chromium (apt-get install -y chromium) or no dist/browser build"), async () => {
    writeFileSync(join(work, "index.html"), `<!doctype html><body>${example("browser")}</body>`);
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const page = await browser.newPage();
      await page.goto(baseUrl + "/");
      await page.waitForFunction(() => (window as unknown as { result?: unknown }).result, undefined, { timeout: 60_000 });
      const result = await page.evaluate(() => (window as unknown as { result: { usage: { completionTokens: number } } }).result);
      expect(result.usage.completionTokens).toBeGreaterThan(0);
    } finally {
      await browser.close();
    }
  });
});
