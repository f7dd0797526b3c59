// JavaScript heap allocated per decode step, and where: V8's sampling heap profiler (an allocation
// sampled every 64 bytes on average, objects that a minor or major GC collected included) over
// --steps decode steps, after a prefill and --warm steps for the JIT. Without --engine, the steps are
// forward.step + an argmax (the forward pass alone, its logits copied); with --engine, a greedy
// engine request (generateTokens), sampled from its first streamed token on: the forward steps, the
// sampler, detokenizer, stream and scheduler. On the main thread only: with --threads > 1 the compute
// workers' own heaps are not counted. Prints KiB per step and the largest allocation sites
// (function:line:column of the bundle, with two callers).
//   node --experimental-wasm-relaxed-simd scripts/bench-alloc.mjs MODEL [--threads 1] [--engine]
//        [--steps 50] [--warm 20] [--top 15] [--arena-start BYTES]
// --arena-start lays the model out from that byte of its memory (LoadOptions.arenaStart, a multiple
// of 64 KiB): past 1 GiB every offset is a number V8 boxes wherever a kernel call takes it tagged.
import { Session } from "node:inspector/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { takeOption } from "./options.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => takeOption(args, name, dflt);
const threads = Number(opt("--threads", 1));
const steps = Number(opt("--steps", 50));
const warm = Number(opt("--warm", 20));
const top = Number(opt("--top", 15));
const arenaStart = opt("--arena-start", undefined);
const engineMode = args.includes("--engine");
const model = args.filter((a) => a !== "--engine")[0];
if (!model) {
  console.error("usage: node scripts/bench-alloc.mjs MODEL [--threads N] [--engine] [--steps N] [--warm N] [--top N]");
  process.exit(2);
}
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { createEngine, prefill, argmax } = await import(pathToFileURL(join(root, "dist", "index.js")).href);

const engine = await createEngine(model, { threads, maxSequences: 1, contextLength: 64 + 2 * (warm + steps) + 16, maxTokens: 64,
  ...(arenaStart === undefined ? {} : { arenaStart: Number(arenaStart) }) });
const forward = engine.model.forward;
const vocab = engine.model.config.vocabSize;
const prompt = Array.from({ length: 64 }, (_, i) => (1000 + i * 7) % vocab);
const session = new Session();
session.connect();
await session.post("HeapProfiler.enable");
const start = () => session.post("HeapProfiler.startSampling", {
  samplingInterval: 64, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true,
});

if (engineMode) {
  // Warm-up request, then the measured one (sampling from its first token).
  for await (const _ of engine.generateTokens(prompt, { maxTokens: warm, ignoreEos: true, temperature: 0 })) { /* drain */ }
  let first = true;
  for await (const _ of engine.generateTokens(prompt.map((t) => (t + 1) % vocab), { maxTokens: steps + 1, ignoreEos: true, temperature: 0 })) {
    if (first) { first = false; await start(); }
  }
} else {
  let token = argmax(await prefill(forward, prompt));
  let pos = prompt.length;
  for (let i = 0; i < warm; i++) token = argmax(await forward.step([token], pos++));
  await start();
  for (let i = 0; i < steps; i++) token = argmax(await forward.step([token], pos++));
}
const { profile } = await session.post("HeapProfiler.stopSampling");
const sites = new Map();
// The profiler's own start (HeapProfiler.startSampling's reply, ~110 KB in node:inspector's
// Session.post) is not a step's: its subtree is left out.
const walk = (node, callers) => {
  const f = node.callFrame;
  if (f.url === "node:inspector" || f.url === "node:inspector/promises") return;
  const here = `${f.functionName || "(anonymous)"}:${f.lineNumber + 1}:${f.columnNumber + 1}`;
  if (node.selfSize > 0) {
    const key = [here, ...callers.slice(0, 2)].join(" < ");
    sites.set(key, (sites.get(key) ?? 0) + node.selfSize);
  }
  for (const child of node.children) walk(child, [here, ...callers]);
};
walk(profile.head, []);
const total = [...sites.values()].reduce((a, b) => a + b, 0);
console.log(`${model}, ${engine.info.threads} thread(s), ${engineMode ? "engine (greedy request)" : "forward.step + argmax"}: ` +
  `${(total / steps / 1024).toFixed(1)} KiB of JavaScript heap per decode step (${steps} steps, main thread)`);
for (const [site, bytes] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${(bytes / steps).toFixed(0).padStart(8)} B/step  ${site}`);
}
session.disconnect();
await engine.dispose();
