// In-process A/B of the forward decode step of two builds of the library (for changes to the forward
// step on a shared machine): each build's dist/index.js loads the model with its own worker pool in
// one process, both prefill the same 128-token prompt, then rounds of decode steps (forward.step + an
// argmax) alternate between them (A B, B A, ...), so that load from other processes hits both alike.
// Prints the best and the median ms/token of each side. Build both first (`node scripts/build.mjs`;
// keep the old one in a git worktree). With --prefill N, the rounds are one N-token prefill each
// (prefill() in chunks of up to 512 tokens) and the last chunk's logits of A and B are compared bit
// for bit. With --decode-at N, both sides first prefill the same N-token prompt (random regular ids,
// as `bench` makes them), and the decode steps run at positions N .. N + steps (attention over a long
// context; each round rewrites the same positions). --kv-type f32|f16|q8_0 picks the KV cache type.
//   node --experimental-wasm-relaxed-simd scripts/bench-forward-ab.mjs --a DIR_A [--b DIR_B] MODEL
//        [--threads 2] [--rounds 12] [--steps 16] [--prefill N | --decode-at N] [--kv-type f32]
// DIR_A / DIR_B are checkouts holding dist/ (B defaults to this one). Node 20 needs the flag for the
// relaxed build, which the CLI takes by default; without it both sides run the SIMD128 build.
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { takeOption } from "./options.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => takeOption(args, name, dflt);
const dirA = opt("--a", undefined);
const dirB = opt("--b", join(dirname(fileURLToPath(import.meta.url)), ".."));
const threads = Number(opt("--threads", 2));
const rounds = Number(opt("--rounds", 12));
const steps = Number(opt("--steps", 16));
const prefillTokens = Number(opt("--prefill", 0));
const decodeAt = Number(opt("--decode-at", 0));
const kvType = opt("--kv-type", "f32");
const model = args[0];
if (!dirA || !model) {
  console.error("usage: node scripts/bench-forward-ab.mjs --a DIR_A [--b DIR_B] MODEL [--threads N] [--rounds N] [--steps N]");
  process.exit(2);
}
const lib = (dir) => import(pathToFileURL(resolve(dir, "dist/index.js")).href);
const [A, B] = [await lib(dirA), await lib(dirB)];
// --prefill N: rounds of one N-token prefill (forward.step in chunks of up to 512, the last chunk's
// logits compared bit for bit between A and B) instead of decode steps.
const options = prefillTokens > 0
  ? { threads, kvType, contextLength: prefillTokens + 16, maxTokens: Math.min(prefillTokens, 512) }
  : decodeAt > 0
    ? { threads, kvType, contextLength: decodeAt + steps, maxTokens: Math.min(decodeAt, 512) }
    : { threads, kvType, contextLength: 1024, maxTokens: 128 };
const sides = [{ name: "A", lib: A, model: await A.loadQwen2(model, options) }, { name: "B", lib: B, model: await B.loadQwen2(model, options) }];
const prompt = Array.from({ length: 128 }, (_, i) => (i * 7919) % sides[0].model.config.vocabSize);
for (const side of sides) {
  await side.model.forward.step(prompt.slice(0, options.maxTokens), 0); // warm-up
  side.pos = prompt.length;
  side.times = [];
  if (decodeAt > 0) {
    // the same long prompt on both sides (as bench's randomPrompt), decode steps after it
    let x = 12345;
    const vocab = side.model.config.vocabSize;
    await side.lib.prefill(side.model.forward, Array.from({ length: decodeAt }, () => (x = (x * 1103515245 + 12345) >>> 0) % Math.min(vocab, 150000)), 0);
    side.pos = decodeAt;
  }
}
async function runPrefill(side) {
  const tokens = Array.from({ length: prefillTokens }, (_, i) => (1000 + i * 7919) % side.model.config.vocabSize);
  const t0 = performance.now();
  side.last = await side.lib.prefill(side.model.forward, tokens, 0);
  side.times.push((performance.now() - t0) / prefillTokens);
}
async function run(side) {
  if (prefillTokens > 0) return runPrefill(side);
  let token = 5;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    if (side.pos >= options.contextLength) side.pos = decodeAt > 0 ? decodeAt : prompt.length; // rewrites later positions: same work
    token = side.lib.argmax(await side.model.forward.step([token], side.pos++));
  }
  side.times.push((performance.now() - t0) / steps);
}
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? sides : [...sides].reverse();
  for (const side of order) await run(side);
}
const stat = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  const f = (ms) => `${ms.toFixed(2)} ms (${(1000 / ms).toFixed(1)} tokens/s)`;
  return `best ${f(s[0])}, median ${f(s[s.length >> 1])}`;
};
console.log(prefillTokens > 0
  ? `${model}, ${threads} thread(s), ${rounds} rounds of a ${prefillTokens}-token prefill (forward.step in chunks of ${options.maxTokens}; ms per prompt token), ${await B.kernelBuild()} kernels`
  : `${model}, ${threads} thread(s), ${rounds} rounds of ${steps} decode steps (forward.step + argmax)` +
    `${decodeAt > 0 ? ` after a ${decodeAt}-token prompt` : ""}, ${kvType} KV, ${await B.kernelBuild()} kernels`);
for (const side of sides) console.log(`  ${side.name} (${side.name === "A" ? dirA : dirB}): ${stat(side.times)}`);
if (prefillTokens > 0) {
  const [a, b] = sides.map((side) => new Uint32Array(side.last.buffer, side.last.byteOffset, side.last.length));
  console.log(`  last chunk's logits: ${a.length === b.length && a.every((v, i) => v === b[i]) ? "bit-identical" : "DIFFER"}`);
}
for (const side of sides) await side.model.dispose();
