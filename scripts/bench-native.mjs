// Native llama.cpp on the same GGUF and the same measurement as `qwasm bench`, for the ratios the
// README quotes: a warm-up request first (not counted), then a fresh random prompt of regular token
// ids per run; prefill = prompt tokens over the time to the first generated token, decode = the
// tokens after the first over the time from the first to the last (greedy). Best of --repeat runs.
//
// llama.cpp comes from node-llama-cpp's prebuilt CPU binaries (npm packages, no download, no build),
// installed outside this project (they are 700 MB and not a dependency of qwasm):
//   npm install --prefix DIR --ignore-scripts node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1
// llama.cpp picks the best CPU variant the machine runs (libggml-cpu-*.so: haswell = AVX2, zen4 and
// skylakex = AVX-512, alderlake = AVX2 + AVX-VNNI, ...). --variant haswell copies the binaries to a
// temporary folder without the higher variants, so that llama.cpp runs its AVX2 build (the issue
// tracker's "native llama.cpp (AVX2)").
//   node scripts/bench-native.mjs MODEL --llama-cpp DIR [--threads N] [--prompt-tokens 128]
//        [--gen-tokens 64] [--repeat 3] [--variant haswell] [--flash-attention auto|on|off]
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { takeOption } from "./options.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => takeOption(args, name, dflt);
const dir = opt("--llama-cpp", undefined);
const threads = Number(opt("--threads", 1));
const promptTokens = Number(opt("--prompt-tokens", 128));
const genTokens = Number(opt("--gen-tokens", 64));
const repeat = Number(opt("--repeat", 3));
const variant = opt("--variant", undefined);
const flash = opt("--flash-attention", "auto");
if (!["auto", "on", "off"].includes(flash)) throw new Error(`--flash-attention: auto, on or off, got ${flash}`);
const modelPath = args[0];
if (!dir || !modelPath) {
  console.error("usage: node scripts/bench-native.mjs MODEL --llama-cpp DIR [--threads N] [--prompt-tokens 128] [--gen-tokens 64] [--repeat 3] [--variant haswell] [--flash-attention auto|on|off]");
  process.exit(2);
}

let root = resolve(dir, "node_modules");
let temp;
if (variant) {
  // node-llama-cpp and its binaries copied, every other package linked: the chosen variant is the
  // best CPU backend left in the copy.
  temp = mkdtempSync(join(tmpdir(), "bench-native-"));
  const nm = join(temp, "node_modules");
  mkdirSync(join(nm, "@node-llama-cpp"), { recursive: true });
  for (const name of readdirSync(root)) {
    if (name === "node-llama-cpp" || name === "@node-llama-cpp") continue;
    symlinkSync(join(root, name), join(nm, name));
  }
  cpSync(join(root, "node-llama-cpp"), join(nm, "node-llama-cpp"), { recursive: true });
  cpSync(join(root, "@node-llama-cpp/linux-x64"), join(nm, "@node-llama-cpp/linux-x64"), { recursive: true });
  const bins = join(temp, "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64");
  const keep = new Set({ haswell: ["haswell", "ivybridge", "piledriver", "sandybridge", "sse42", "x64"] }[variant] ?? []);
  if (keep.size === 0) throw new Error(`--variant: only haswell is known (the AVX2 build)`);
  for (const f of readdirSync(bins)) {
    const m = /^libggml-cpu-(.+)\.so$/.exec(f);
    if (m && !keep.has(m[1])) rmSync(join(bins, f));
  }
  root = nm;
}
const entry = join(root, "node-llama-cpp/dist/index.js");
if (!existsSync(entry)) throw new Error(`no node-llama-cpp in ${dir} (see the install line at the top of this script)`);
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: threads });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: promptTokens + genTokens + 16, threads: { ideal: threads, min: threads }, batchSize: 512,
  flashAttention: { auto: "auto", on: true, off: false }[flash] });
const sequence = context.getSequence();
// The CPU backend llama.cpp loaded: the libggml-cpu-*.so mapped into this process (Linux).
const backend = [...new Set(readFileSync("/proc/self/maps", "utf8").match(/libggml-cpu-[\w-]+\.so/g) ?? ["(none found)"])].join(", ");

let seed = 20261203;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
const eog = new Set([model.tokens.eos, model.tokens.eot].filter((t) => t != null));
const regular = 151643; // Qwen2's regular token ids lie below <|endoftext|>

async function once() {
  await sequence.clearHistory();
  const prompt = Array.from({ length: promptTokens }, () => Math.floor(rand() * regular));
  const t0 = performance.now();
  await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1));
  let first = 0, n = 0;
  for await (const token of sequence.evaluate(prompt.slice(-1), { temperature: 0 })) {
    if (n === 0) first = performance.now();
    n++;
    if (n === genTokens || eog.has(token)) break;
  }
  const end = performance.now();
  return { prefill: promptTokens / ((first - t0) / 1000), decode: (n - 1) / ((end - first) / 1000), ttft: first - t0, n };
}

await once(); // warm-up
const runs = [];
for (let r = 0; r < repeat; r++) runs.push(await once());
const best = (k, hi = true) => runs.map((x) => x[k]).reduce((a, b) => (hi ? Math.max(a, b) : Math.min(a, b)));
const fmt = (v) => v.toFixed(1);
console.log(`model            ${modelPath}`);
console.log(`native           llama.cpp from node-llama-cpp ${(await import(pathToFileURL(join(root, "node-llama-cpp/package.json")).href, { with: { type: "json" } })).default.version}, CPU variants ${variant ? `up to ${variant}` : "all"}, loaded ${backend}, ${threads} thread(s)`);
console.log(`context          ${context.contextSize} positions, flash attention ${flash} (node-llama-cpp's flashAttention: ${context.flashAttention}), batch 512`);
console.log(`first token      ${fmt(best("ttft", false))} ms (prompt of ${promptTokens} tokens)`);
console.log(`prefill          ${fmt(best("prefill"))} tokens/s: ${promptTokens} prompt tokens over the time to the first generated token`);
console.log(`decode           ${fmt(best("decode"))} tokens/s: ${Math.min(...runs.map((x) => x.n)) - 1} tokens after the first, greedy`);
console.log(`runs             ${runs.map((x) => `${fmt(x.prefill)}/${fmt(x.decode)}`).join(" ")} (prefill/decode, best of ${repeat} above)`);
await context.dispose();
await model.dispose();
await llama.dispose();
if (temp) rmSync(temp, { recursive: true, force: true });
