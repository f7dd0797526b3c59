#!/usr/bin/env node
// Side-by-side speed of qwasm and wllama (llama.cpp compiled to wasm) on the same GGUF file, the
// same thread count, the same prompt length and the same generation length.
//
//   node test/bench/compare-wllama.mjs MODEL.gguf [--threads 1,2] [--prompt-tokens 128]
//        [--gen-tokens 64] [--repeat 1] [--timeout 600] [--only qwasm|wllama] [--browser-arg ARG]
//        [--verbose] [--json]
//
// qwasm runs as `node dist/cli.js bench ... --json` in a child process. wllama runs only in
// browsers (it needs JSPI and memory64), so it runs in headless Chromium (Debian's
// /usr/bin/chromium, or CHROMIUM_PATH) driven by playwright-core, on a page served from
// 127.0.0.1 with the COOP/COEP headers that make it cross-origin isolated (SharedArrayBuffer,
// hence threads). The page is test/bench/wllama-page/; it loads wllama's ESM and wasm from
// node_modules/@wllama/wllama and the model from this same server, CPU only (n_gpu_layers 0).
//
// Both engines report the best of --repeat runs: prefill tokens/s (the whole prompt in one
// batch), decode tokens/s (greedy, EOS ignored, genTokens - 1 steps after the first token). qwasm's
// prompt is `qwasm bench`'s random token ids; wllama's completion takes text only, so its prompt is
// a text of exactly --prompt-tokens tokens (checked against llama.cpp's own count). Speed does not
// depend on the token values.
import { spawn } from "node:child_process";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const pageDir = path.join(here, "wllama-page");
const cliPath = path.join(root, "dist", "cli.js");
const chromiumPath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const chromiumArgs = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const usage = `usage: node test/bench/compare-wllama.mjs MODEL.gguf [--threads 1,2] [--prompt-tokens 128]
       [--gen-tokens 64] [--repeat 1] [--timeout 600] [--only qwasm|wllama] [--browser-arg ARG] [--verbose] [--json]

  --threads        comma-separated thread counts, each run by both engines (default 1)
  --prompt-tokens  prompt length in tokens, evaluated in one batch (default 128)
  --gen-tokens     tokens generated one by one, greedy, EOS ignored (default 64)
  --repeat         runs per engine and thread count; the best is reported (default 1)
  --timeout        seconds one engine may take for one thread count, load included (default 600)
  --only           run one engine only
  --browser-arg    one more Chromium flag, e.g. --browser-arg --js-flags=--no-liftoff (repeatable)
  --verbose        echo wllama's console and qwasm's stderr to stderr
  --json           print one JSON object instead of a table

Needs Chromium (Debian: apt-get install -y chromium; elsewhere set CHROMIUM_PATH), the dev
dependencies (npm install: @wllama/wllama, playwright-core) and a built qwasm (npm run build).`;

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = { browserArgs: [], threads: [1], promptTokens: 128, genTokens: 64, repeat: 1, timeoutS: 600, only: null, verbose: false, json: false, model: null };
  const positiveInt = (name, v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--help" || a === "-h") { process.stdout.write(usage + "\n"); process.exit(0); }
    else if (a === "--json") opts.json = true;
    else if (a === "--verbose") opts.verbose = true;
    else if (a === "--threads") opts.threads = value().split(",").map((t) => positiveInt("--threads", t.trim()));
    else if (a === "--prompt-tokens") opts.promptTokens = positiveInt(a, value());
    else if (a === "--gen-tokens") opts.genTokens = positiveInt(a, value());
    else if (a === "--repeat") opts.repeat = positiveInt(a, value());
    else if (a === "--timeout") opts.timeoutS = positiveInt(a, value());
    else if (a === "--browser-arg") opts.browserArgs.push(value());
    else if (a === "--only") {
      opts.only = value();
      if (opts.only !== "qwasm" && opts.only !== "wllama") throw new UsageError(`--only takes qwasm or wllama, got ${opts.only}`);
    } else if (a.startsWith("--")) throw new UsageError(`unknown option ${a}`);
    else if (opts.model === null) opts.model = a;
    else throw new UsageError(`unexpected argument ${a}`);
  }
  if (opts.model === null) throw new UsageError("MODEL.gguf is required");
  if (!existsSync(opts.model) || !statSync(opts.model).isFile()) throw new UsageError(`model file not found: ${opts.model}`);
  return opts;
}

const log = (opts, line) => { if (!opts.json || opts.verbose) process.stderr.write(line + "\n"); };

// Things to undo on exit, newest first: the browser, the server, a running child.
const cleanups = new Set();
async function cleanupAll() {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    await Promise.resolve().then(fn).catch(() => {});
  }
}

function withTimeout(promise, seconds, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${seconds} s (raise --timeout if the machine is slow)`)), seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- qwasm: `qwasm bench` in a child process ------------------------------------------------

function runQwasm(opts, threads) {
  const args = [cliPath, "bench", opts.model, "--threads", String(threads), "--prompt-tokens", String(opts.promptTokens),
    "--gen-tokens", String(opts.genTokens), "--repeat", String(opts.repeat), "--json"];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; if (opts.verbose) process.stderr.write(`[qwasm] ${d}`); });
    const kill = () => { if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL"); };
    cleanups.add(kill);
    const timer = setTimeout(() => {
      kill();
      reject(new Error(`qwasm bench (${threads} threads) did not finish within ${opts.timeoutS} s (raise --timeout if the machine is slow)`));
    }, opts.timeoutS * 1000);
    child.on("error", (e) => { clearTimeout(timer); cleanups.delete(kill); reject(e); });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      cleanups.delete(kill);
      if (code !== 0) {
        reject(new Error(`qwasm bench exited with ${signal ?? code}: ${stderr.trim().split("\n").slice(-5).join("\n")}`));
        return;
      }
      const line = stdout.trim().split("\n").pop();
      try { resolve(JSON.parse(line)); } catch { reject(new Error(`qwasm bench printed no JSON: ${stdout.slice(-500)}`)); }
    });
  });
}

// ---- wllama: a local server and headless Chromium --------------------------------------------

const mimeTypes = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".wasm": "application/wasm", ".gguf": "application/octet-stream", ".map": "application/json" };

// Serves "/" and "/page/*" from wllama-page/, "/wllama/esm/*" from the wllama package and
// "/model.gguf", all with the headers that make the page cross-origin isolated.
function startServer(modelPath, wllamaDir) {
  const routes = [
    { prefix: "/page/", dir: pageDir },
    { prefix: "/wllama/esm/", dir: path.join(wllamaDir, "esm") },
  ];
  const resolveUrl = (pathname) => {
    if (pathname === "/") return path.join(pageDir, "index.html");
    if (pathname === "/model.gguf") return modelPath;
    for (const { prefix, dir } of routes) {
      if (!pathname.startsWith(prefix)) continue;
      const file = path.resolve(dir, "." + decodeURIComponent(pathname.slice(prefix.length - 1)));
      return file.startsWith(dir + path.sep) ? file : null;
    }
    return null;
  };
  const server = createServer((req, res) => {
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
    res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
    res.setHeader("Cache-Control", "no-store");
    const file = resolveUrl(new URL(req.url, "http://127.0.0.1").pathname);
    if (req.method !== "GET" && req.method !== "HEAD") { res.writeHead(405).end(); return; }
    if (!file || !existsSync(file) || !statSync(file).isFile()) { res.writeHead(404).end("not found"); return; }
    res.writeHead(200, {
      "Content-Type": mimeTypes[path.extname(file)] ?? "application/octet-stream",
      "Content-Length": statSync(file).size,
    });
    if (req.method === "HEAD") { res.end(); return; }
    createReadStream(file).on("error", () => res.destroy()).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const close = () => new Promise((done) => { server.closeAllConnections(); server.close(() => done()); });
      cleanups.add(close);
      resolve({ origin: `http://127.0.0.1:${server.address().port}`, close });
    });
  });
}

async function startBrowser(opts) {
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch {
    throw new Error("playwright-core is not installed: run npm install (it is a devDependency)");
  }
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [...chromiumArgs, ...opts.browserArgs], // playwright adds a fresh temporary --user-data-dir and removes it on close
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false, // our handler closes it
    timeout: 60_000,
  });
  const close = () => browser.close();
  cleanups.add(close);
  log(opts, `chromium ${browser.version()} (${chromiumPath})`);
  return browser;
}

async function runWllama(opts, browser, origin, threads) {
  const context = await browser.newContext();
  const closeContext = () => context.close();
  cleanups.add(closeContext);
  const consoleTail = [];
  try {
    const page = await context.newPage();
    page.on("console", (msg) => {
      const line = `[wllama ${msg.type()}] ${msg.text()}`;
      consoleTail.push(line);
      if (consoleTail.length > 20) consoleTail.shift();
      if (opts.verbose) process.stderr.write(line + "\n");
    });
    page.on("pageerror", (e) => consoleTail.push(`[page error] ${e.message}`));
    const run = (async () => {
      await page.goto(`${origin}/`);
      await page.waitForFunction(() => window.wllamaReady === true, null, { timeout: 60_000 });
      return page.evaluate((o) => window.wllamaBench(o), {
        modelUrl: "/model.gguf", threads, promptTokens: opts.promptTokens, genTokens: opts.genTokens, repeat: opts.repeat, verbose: opts.verbose,
      });
    })();
    return await withTimeout(run, opts.timeoutS, `wllama (${threads} threads)`);
  } catch (e) {
    const tail = consoleTail.length ? `\nlast page messages:\n  ${consoleTail.slice(-8).join("\n  ")}` : "";
    throw new Error(`${e.message.split("\n")[0]}${tail}`);
  } finally {
    cleanups.delete(closeContext);
    await context.close().catch(() => {});
  }
}

// ---- report ------------------------------------------------------------------------------------

const ratio = (a, b) => (a && b ? a / b : null);

function printTable(opts, results) {
  const fmt = (v, digits) => (v == null ? "-" : v.toFixed(digits));
  const rows = [["engine", "threads", "prefill tok/s", "decode tok/s", "first token ms", "load s"]];
  for (const r of results) {
    for (const [name, e] of [["qwasm", r.qwasm], ["wllama", r.wllama]]) {
      if (e) rows.push([name, String(r.threads), fmt(e.prefillTokensPerSecond, 1), fmt(e.decodeTokensPerSecond, 2), fmt(e.timeToFirstTokenMs, 0), fmt(e.loadSeconds, 2)]);
    }
    if (r.qwasm && r.wllama) rows.push(["qwasm/wllama", String(r.threads), `${fmt(r.ratio.prefill, 2)}x`, `${fmt(r.ratio.decode, 2)}x`, "", ""]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const lines = rows.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  "));
  process.stdout.write([
    `model ${opts.model}, prompt ${opts.promptTokens} tokens, generate ${opts.genTokens} tokens, best of ${opts.repeat}`,
    "",
    ...lines,
    "",
  ].join("\n"));
}

// ---- main --------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const runQ = opts.only !== "wllama", runW = opts.only !== "qwasm";
  if (runQ && !existsSync(cliPath)) throw new Error(`${path.relative(process.cwd(), cliPath)} is missing: run npm run build first`);
  let wllamaDir = null, wllamaVersion = null;
  if (runW) {
    if (!existsSync(chromiumPath)) {
      throw new Error(`Chromium not found at ${chromiumPath}. Install it (Debian/Ubuntu: apt-get install -y chromium) or set CHROMIUM_PATH; or run with --only qwasm`);
    }
    try {
      const pkgJson = createRequire(import.meta.url).resolve("@wllama/wllama/package.json");
      wllamaDir = path.dirname(pkgJson);
      wllamaVersion = JSON.parse(readFileSync(pkgJson, "utf8")).version;
    } catch {
      throw new Error("@wllama/wllama is not installed: run npm install (it is a devDependency)");
    }
  }

  let server = null, browser = null;
  if (runW) {
    server = await startServer(path.resolve(opts.model), wllamaDir);
    browser = await startBrowser(opts);
  }

  const results = [];
  for (const threads of opts.threads) {
    const r = { threads, qwasm: null, wllama: null, ratio: null };
    if (runQ) {
      log(opts, `qwasm, ${threads} thread(s)...`);
      r.qwasm = await runQwasm(opts, threads);
      if (r.qwasm.threads !== threads) process.stderr.write(`warning: qwasm ran ${r.qwasm.threads} threads, asked for ${threads}\n`);
    }
    if (runW) {
      log(opts, `wllama ${wllamaVersion}, ${threads} thread(s)...`);
      r.wllama = await runWllama(opts, browser, server.origin, threads);
      if (r.wllama.threads !== threads) throw new Error(`wllama ran ${r.wllama.threads} threads, asked for ${threads}`);
    }
    if (r.qwasm && r.wllama) {
      r.ratio = {
        prefill: ratio(r.qwasm.prefillTokensPerSecond, r.wllama.prefillTokensPerSecond),
        decode: ratio(r.qwasm.decodeTokensPerSecond, r.wllama.decodeTokensPerSecond),
      };
    }
    results.push(r);
  }

  if (opts.json) {
    process.stdout.write(JSON.stringify({
      model: opts.model,
      promptTokens: opts.promptTokens,
      genTokens: opts.genTokens,
      repeat: opts.repeat,
      node: process.version,
      chromium: browser ? browser.version() : null,
      wllama: wllamaVersion,
      results,
    }) + "\n");
  } else {
    printTable(opts, results);
  }
}

let exiting = false;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    if (exiting) return;
    exiting = true;
    process.stderr.write(`\n${signal}: closing the browser and the server\n`);
    cleanupAll().finally(() => process.exit(130));
  });
}

try {
  await main();
  await cleanupAll();
} catch (e) {
  await cleanupAll();
  process.stderr.write(`compare-wllama: ${e instanceof UsageError ? `${e.message}\n\n${usage}` : e.message}\n`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
}
