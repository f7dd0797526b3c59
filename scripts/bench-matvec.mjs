// Micro-benchmark of the matmul kernels, one thread: a 4864 x 896 weight matrix (Qwen2-0.5B's
// ffn_up) times one token (GB/s of weights streamed) and times 8 tokens (tokens/s).
// Reads build/kernels.wasm directly (run `npm run build:kernels` first), or with --relaxed
// build/kernels-relaxed.wasm (Node 20 needs --experimental-wasm-relaxed-simd for it; Deno runs it):
//   node scripts/bench-matvec.mjs [type ...] [--rows N] [--k N] [--ms N] [--tokens N] [--relaxed]
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

// name: [block size, bytes per block, activation converter, activation bytes per block]
const TYPES = {
  f32: [1, 4, null, 4],
  f16: [1, 2, "convert_f32_f16", 2],
  bf16: [1, 2, "convert_f32_bf16", 2],
  q8_0: [32, 34, "quantize_q8_0", 34],
  q4_0: [32, 18, "quantize_q8_0", 34],
  q4_1: [32, 20, "quantize_q8_1", 36],
  q5_0: [32, 22, "quantize_q8_0", 34],
  q5_1: [32, 24, "quantize_q8_1", 36],
  iq4_nl: [32, 18, "quantize_q8_0", 34],
  // rows interleaved by four, as the loader lays out these types (assembly/quants/b32x4.ts)
  q4_0x4: [32, 18, "quantize_q8_0", 34],
  q4_1x4: [32, 20, "quantize_q8_1", 36],
  q5_0x4: [32, 22, "quantize_q8_0", 34],
  q5_1x4: [32, 24, "quantize_q8_1", 36],
  iq4_nlx4: [32, 18, "quantize_q8_0", 34],
  // Q8_0 packed at load (assembly/quants/q8_0p.ts): rows grouped by four, the d leading as in x4
  q8_0p: [32, 34, "quantize_q8_0", 34],
};

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(args[i + 1]);
  args.splice(i, 2);
  return v;
};
const rows = opt("--rows", 4864);
const k = opt("--k", 896);
const minMs = opt("--ms", 400);
const manyTokens = opt("--tokens", 8);
const relaxed = args.includes("--relaxed");
if (relaxed) args.splice(args.indexOf("--relaxed"), 1);
const selected = args.length ? args : Object.keys(TYPES);

const memory = new WebAssembly.Memory({ initial: 2048, maximum: 65536, shared: true });
const wasmFile = join(root, "build", relaxed ? "kernels-relaxed.wasm" : "kernels.wasm");
const { instance } = await WebAssembly.instantiate(readFileSync(wasmFile), {
  env: { memory, abort: () => { throw new Error("kernel abort"); } },
});
const kx = instance.exports;

let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);

/** f32 to IEEE half bits, by the kernels' own conversion. */
const toHalf = (f) => kx.f32_to_f16(f);

/** Seconds per call of `fn`, warmed up: the best of many short batches over about minMs, timed in
 *  CPU time of this process, so that other load on the machine inflates the figure as little as
 *  possible (one thread: CPU time is the kernel's time). */
function time(fn) {
  const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; }; // ms
  for (let i = 0; i < 20; i++) fn();
  let n = 1;
  for (;;) { // calls per batch of about 20 ms
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    if (performance.now() - t0 >= 20) break;
    n *= 2;
  }
  let best = Infinity;
  const end = performance.now() + minMs;
  while (performance.now() < end) {
    const t0 = cpu();
    for (let i = 0; i < n; i++) fn();
    best = Math.min(best, (cpu() - t0) / n);
  }
  return best / 1000;
}

let top = 65536;
const alloc = (bytes) => {
  const off = Math.ceil(top / 64) * 64;
  top = off + bytes;
  if (top > memory.buffer.byteLength) memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536));
  return off;
};

console.log(`matmul ${rows} x ${k}, one thread, ${typeof Deno === "object" ? `deno ${Deno.version.deno}` : `node ${process.version}`}, ` +
  `${relaxed ? "relaxed-simd" : "simd128"} (${wasmFile})`);
for (const name of selected) {
  const spec = TYPES[name];
  if (!spec) throw new Error(`unknown type ${name}; known: ${Object.keys(TYPES).join(", ")}`);
  const [bs, tb, conv, xb] = spec;
  const fn = kx[`matmul_${name}`];
  if (!fn) { console.log(`${name.padEnd(7)} (not built)`); continue; }
  top = 65536;
  const rowBytes = (k / bs) * tb;
  const wBytes = rows * rowBytes;
  const w = alloc(wBytes);
  const wu8 = new Uint8Array(memory.buffer, w, wBytes);
  for (let i = 0; i < wBytes; i++) wu8[i] = (rand() * 256) | 0;
  const dv = new DataView(memory.buffer);
  if (name === "f32") for (let i = 0; i < rows * k; i++) dv.setFloat32(w + 4 * i, rand() - 0.5, true);
  else if (name === "f16") for (let i = 0; i < rows * k; i++) dv.setUint16(w + 2 * i, toHalf(rand() - 0.5), true);
  else if (name === "bf16") {
    const f = new Float32Array(1), u = new Uint32Array(f.buffer);
    for (let i = 0; i < rows * k; i++) { f[0] = rand() - 0.5; dv.setUint16(w + 2 * i, u[0] >>> 16, true); }
  }
  else {
    const hasMin = name.startsWith("q4_1") || name.startsWith("q5_1");
    for (let b = 0; b < rows * k / bs; b++) {
      // x4: the four rows' d (and m) lead each super-block of four blocks
      const grouped = name.endsWith("x4") || name === "q8_0p";
      const at = grouped ? w + (b >> 2) * 4 * tb + 2 * (b & 3) : w + b * tb;
      const mAt = grouped ? at + 8 : at + 2;
      dv.setUint16(at, toHalf(0.01 * (0.5 + rand())), true);
      if (hasMin) dv.setUint16(mAt, toHalf(-0.05 * rand()), true);
    }
  }
  const nTokMax = Math.max(8, manyTokens);
  const xf = alloc(nTokMax * k * 4);
  const xf32 = new Float32Array(memory.buffer, xf, nTokMax * k);
  for (let i = 0; i < xf32.length; i++) xf32[i] = rand() * 2 - 1;
  const xStride = (k / bs) * xb;
  const x = conv ? alloc(nTokMax * xStride) : xf;
  if (conv) for (let t = 0; t < nTokMax; t++) kx[conv](xf + t * k * 4, x + t * xStride, k);
  const out = alloc(nTokMax * rows * 4);
  const scratch = alloc(288 * Math.ceil(k / 32)); // the matmul's scratch (compute/kernels/dispatch.ts matmulScratchBytes)
  const t1 = time(() => fn(w, x, out, k, 0, rows, 1, xStride, rows, scratch));
  const tn = time(() => fn(w, x, out, k, 0, rows, manyTokens, xStride, rows, scratch));
  console.log(`${name.padEnd(7)} 1 token: ${(wBytes / t1 / 1e9).toFixed(2).padStart(6)} GB/s (${(t1 * 1e6).toFixed(0)} us)` +
    `   ${manyTokens} tokens: ${(manyTokens / tn).toFixed(0).padStart(6)} tokens/s (${(tn * 1e6).toFixed(0)} us, ${(wBytes / tn / 1e9).toFixed(2)} GB/s)`);
}
