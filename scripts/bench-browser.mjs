#!/usr/bin/env node
// The browser's worker engine, measured as a page sees it: `qwasm bench`'s figures where a page has
// them, in Debian's Chromium (headless, through playwright-core; nothing is downloaded).
//
//   node scripts/bench-browser.mjs MODEL [--threads N] [--prompt-tokens 128] [--gen-tokens 64] [--repeat 3] [--json]
//
// MODEL is a GGUF file anywhere on disk: scripts/demo-web.mjs's server (cross-origin isolated, so
// the page gets SharedArrayBuffer and compute workers) serves its folder at /models/ and a blank
// page; a fresh Chromium profile (--user-data-dir in a temporary folder) opens it, and the page
// loads the engine with the library's loadEngine (dist/browser/qwasm.js) from the URL, with the
// Cache API off (`cache: false`), on --threads threads (default: the worker's, one per core), a
// context of prompt + generated tokens, and the worker's default prefill chunk (64 tokens; `qwasm
// bench` uses min(prompt, 512)). One warm-up request (the same shape, 4 tokens) is not counted;
// then --repeat requests, greedy, ignoreEos, maxTokens --gen-tokens, each of a fresh prompt of
// random token ids (decoded to text and re-tokenized until it is exactly --prompt-tokens tokens:
// the page's API takes text) so that no prefix is reused. Every figure is the best of the runs; the
// engine's figures come from the run with the fastest decode, so both are one run's.
//
// What each figure includes:
//   load         from loadEngine's call to its return in the page: the worker's start, the header
//                preflight (Range requests), the download from 127.0.0.1 streamed into the model,
//                the compute workers' start.
//   first token  page, from engine.generate's call to the first delta with tokens that the page
//                receives: the request's message to the engine worker, tokenizing the prompt,
//                scheduling, prefill in chunks of 64 tokens, sampling, detokenizing, and the delta's
//                message back to the page.
//   prefill      page, the prompt's tokens over the time to first token.
//   decode       page, the tokens after the first over the time from the first delta the page
//                received to the last (forward steps, greedy sampling, detokenizer, stop check,
//                scheduler, stream, the delta's postMessage to the page and its delivery there).
//   engine cost  the engine's own time per decode step, timed inside the engine worker
//                (EngineStats.stepGaps/stepGapSeconds, read with BrowserEngine.stats(): from a
//                step's return to the next step's start: sampling, detokenizer, stop check, the
//                stream (the worker's delta postMessage when it runs in the gap), scheduler), as a
//                share of the engine's decode step (its own time + the forward step, forward.run,
//                beside it); counted from the first delta's snapshot (asked for as it arrives,
//                answered by the worker at its next free moment: a decode step or gap boundary)
//                to the end of the request, so only decode steps are in it. Beside it, the page's
//                decode time per token minus the engine's step + own time: what delivery to the
//                page adds to the rate it sees (about 0 while messages overlap the next step).
// `qwasm bench`'s forward-only, sampler, wasm memory and RSS lines have no page equivalent here.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const USAGE = "usage: node scripts/bench-browser.mjs MODEL [--threads N] [--prompt-tokens 128] [--gen-tokens 64] [--repeat 3] [--json]";
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// As test/browser/chromium.ts (the tests' copy): no GPU, no network beyond the page's server, nothing fetched in the background.
const chromiumArgs = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

function parseArgs(argv) {
  const o = { model: undefined, threads: undefined, promptTokens: 128, genTokens: 64, repeat: 3, json: false };
  const int = (name, v, least) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < least) throw new Error(`--${name} must be an integer >= ${least}, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--threads") o.threads = int("threads", argv[++i], 1);
    else if (a === "--prompt-tokens") o.promptTokens = int("prompt-tokens", argv[++i], 1);
    else if (a === "--gen-tokens") o.genTokens = int("gen-tokens", argv[++i], 2);
    else if (a === "--repeat") o.repeat = int("repeat", argv[++i], 1);
    else if (a === "--json") o.json = true;
    else if (a === "--help" || a === "-h") { console.log(USAGE); process.exit(0); }
    else if (a.startsWith("--")) throw new Error(`unknown option ${a}; ${USAGE}`);
    else if (o.model === undefined) o.model = resolve(a);
    else throw new Error(`one MODEL only; ${USAGE}`);
  }
  if (o.model === undefined) throw new Error(USAGE);
  if (!statSync(o.model, { throwIfNoEntry: false })?.isFile()) throw new Error(`no such file: ${o.model}`);
  return o;
}

/** bench.ts's prompt ids: regular token ids below 150000 (no special tokens). */
function randomIds(n, vocab, seed) {
  let x = seed;
  return Array.from({ length: n }, () => (x = (x * 1103515245 + 12345) >>> 0) % Math.min(vocab, 150000));
}

/** A text that the page's tokenizer reads as exactly n tokens, from random ids (decode, re-encode, cut, again). */
async function promptText(page, n, vocab, seed) {
  let ids = randomIds(n, vocab, seed);
  for (let round = 0; round < 20; round++) {
    const { text, count, again } = await page.evaluate(async ({ ids, n }) => {
      const e = window.benchEngine;
      const text = await e.detokenize(ids);
      const again = await e.tokenize(text);
      return { text, count: again.length, again: again.length > n ? again.slice(0, n) : again };
    }, { ids, n });
    if (count === n) return text;
    ids = count > n ? again : [...again, ...randomIds(n - count, vocab, seed + 7919 * (round + 1))];
  }
  throw new Error(`no text of exactly ${n} tokens from the random ids (seed ${seed})`);
}

/** One request in the page, timed as the page sees it, with the engine's stats from its first delta to its end. */
function timedRequest(page, prompt, options) {
  return page.evaluate(async ({ prompt, options }) => {
    const engine = window.benchEngine;
    const t0 = performance.now();
    const stream = engine.generate(prompt, options);
    let first = -1, last = -1, decodeTokens = 0, atFirst;
    for await (const delta of stream) {
      if (delta.tokens.length === 0) continue;
      const now = performance.now();
      if (first < 0) {
        first = now;
        atFirst = engine.stats(); // not awaited: the deltas keep their arrival times
      } else {
        decodeTokens += delta.tokens.length;
      }
      last = now;
    }
    const result = await stream;
    const [at, end] = [await atFirst, await engine.stats()];
    const steps = end.steps - at.steps, gaps = end.stepGaps - at.stepGaps;
    return {
      promptTokens: result.usage.promptTokens, completionTokens: result.usage.completionTokens,
      firstTokenMs: first - t0, decodeMs: last - first, decodeTokens, steps, gaps,
      stepMs: steps > 0 ? (1000 * (end.stepSeconds - at.stepSeconds)) / steps : 0,
      gapMs: gaps > 0 ? (1000 * (end.stepGapSeconds - at.stepGapSeconds)) / gaps : 0,
    };
  }, { prompt, options });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const { startDemoServer } = await import(pathToFileURL(join(root, "scripts", "demo-web.mjs")).href);
  const page0 = "<!doctype html><meta charset=utf-8><title>qwasm bench</title><body>bench</body>";
  const server = await startDemoServer({
    port: 0, models: dirname(o.model), quiet: true,
    routes: {
      "/bench.html": (_req, res) => res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page0),
      "/favicon.ico": (_req, res) => res.writeHead(204).end(),
    },
  });
  const profile = mkdtempSync(join(tmpdir(), "qwasm-bench-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath, args: chromiumArgs, headless: true });
    const version = context.browser()?.version() ?? (await import("node:child_process")).execFileSync(chromiumPath, ["--version"]).toString().trim();
    const page = context.pages()[0] ?? await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => { if (m.type() === "error") errors.push(`${m.text()} (${m.location().url})`); });
    await page.goto(`${server.url}/bench.html`);
    const contextLength = o.promptTokens + o.genTokens;
    const loaded = await page.evaluate(async ({ url, threads, contextLength }) => {
      const { loadEngine } = await import("/qwasm.js");
      const t0 = performance.now();
      window.benchEngine = await loadEngine(url, { threads, contextLength, cache: false });
      return { loadMs: performance.now() - t0, info: window.benchEngine.info, isolated: crossOriginIsolated };
    }, { url: `/models/${encodeURIComponent(basename(o.model))}`, threads: o.threads, contextLength });
    if (!loaded.isolated) throw new Error("the page is not cross-origin isolated");
    const vocab = 151936; // Qwen2's; only bounds the random ids (below 150000 either way)
    const request = { temperature: 0, maxTokens: o.genTokens, ignoreEos: true };
    // Warm-up (not counted): the same shape, a few tokens.
    await timedRequest(page, await promptText(page, o.promptTokens, vocab, 999), { ...request, maxTokens: Math.min(o.genTokens, 4) });
    const best = { firstTokenMs: Infinity, decodeMs: Infinity, gapMs: 0, stepMs: 0, steps: 0, gaps: 0 };
    const runs = [];
    for (let r = 0; r < o.repeat; r++) {
      const e = await timedRequest(page, await promptText(page, o.promptTokens, vocab, 12345 + r), request);
      runs.push(e);
      if (e.promptTokens !== o.promptTokens || e.completionTokens !== o.genTokens) {
        throw new Error(`run ${r + 1}: ${e.promptTokens} prompt and ${e.completionTokens} generated tokens, expected ${o.promptTokens} and ${o.genTokens}`);
      }
      best.firstTokenMs = Math.min(best.firstTokenMs, e.firstTokenMs);
      if (e.decodeTokens > 0 && e.decodeMs / e.decodeTokens < best.decodeMs) {
        best.decodeMs = e.decodeMs / e.decodeTokens;
        Object.assign(best, { gapMs: e.gapMs, stepMs: e.stepMs, steps: e.steps, gaps: e.gaps });
      }
    }
    await page.evaluate(() => window.benchEngine.dispose());
    if (errors.length > 0) throw new Error(`the page logged errors: ${errors.join("; ")}`);
    const info = loaded.info;
    const delivery = best.decodeMs - (best.stepMs + best.gapMs);
    const result = {
      model: o.model, browser: `Chromium ${version}`, threads: info.threads, threadsReason: info.threadsReason,
      promptTokens: o.promptTokens, genTokens: o.genTokens, repeat: o.repeat, sampling: {},
      loadSeconds: loaded.loadMs / 1000,
      timeToFirstTokenMs: best.firstTokenMs,
      prefillTokensPerSecond: (1000 * o.promptTokens) / best.firstTokenMs,
      decodeTokensPerSecond: 1000 / best.decodeMs,
      pageDecodeMsPerToken: best.decodeMs,
      engineOwnMsPerStep: best.gapMs,
      engineOwnPercent: (100 * best.gapMs) / (best.gapMs + best.stepMs),
      engineStepMs: best.stepMs,
      engineDecodeSteps: best.steps,
      engineGaps: best.gaps,
      deliveryMsPerToken: delivery,
      runs,
    };
    if (o.json) {
      console.log(JSON.stringify(result));
      return;
    }
    console.log([
      `model            ${result.model}`,
      `browser          ${result.browser}, headless, cross-origin isolated; the engine in its worker (loadEngine)`,
      `threads          ${result.threads} (${result.threadsReason})`,
      `load             ${result.loadSeconds.toFixed(2)} s: loadEngine in the page, from 127.0.0.1, no cache`,
      `first token      ${result.timeToFirstTokenMs.toFixed(1)} ms: page, from the request to the first delta it receives ` +
        `(the worker's message, tokenizing, scheduling, prefill of ${o.promptTokens} tokens, sampling, detokenizing, the delta's message)`,
      `prefill          ${result.prefillTokensPerSecond.toFixed(1)} tokens/s: page, ${o.promptTokens} prompt tokens over the time to first token`,
      `decode           ${result.decodeTokensPerSecond.toFixed(2)} tokens/s: page, ${o.genTokens - 1} tokens from the first delta ` +
        `it received to the last (forward steps, greedy sampling, detokenizer, stop check, scheduler, stream, postMessage to the page)`,
      `engine cost      ${result.engineOwnMsPerStep.toFixed(3)} ms per decode step (${result.engineOwnPercent.toFixed(1)}% of it): ` +
        `the engine's own time from a step's return to the next step's start (sampling, detokenizer, stop check, stream, ` +
        `scheduler), timed inside the engine worker over ${result.engineGaps} gaps, beside ${result.engineStepMs.toFixed(2)} ms in ` +
        `forward.run (${result.engineDecodeSteps} steps); page decode minus the engine's step and own time: ` +
        `${result.deliveryMsPerToken.toFixed(3)} ms per token (delivery to the page)`,
    ].join("\n"));
  } finally {
    await context?.close().catch(() => {});
    await server.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`bench-browser: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
