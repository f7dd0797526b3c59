// Single-thread speed of the K-quant matmul kernels: GB/s of weights streamed for a matvec (one token)
// and for small token tiles, on random blocks. Loads build/kernels.wasm directly (npm run build:kernels),
// or with --relaxed build/kernels-relaxed.wasm (Node 20 needs --experimental-wasm-relaxed-simd for it).
// The blocks' f16 scales (d, dmin) are random normal halves; with --subnormal-scales every one is a
// random subnormal half instead, as most Q6_K and many Q4_K/Q5_K super-block scales of real weights are
// (d = the largest sub-block scale / 63 or / 127: 1e-5 to 1e-4 for weights of std 0.01-0.03).
// --wasm FILE benches another build of the kernels (an A/B against a copy of a build before a change).
//   node scripts/bench-kquants.mjs [type ...] [--relaxed] [--subnormal-scales] [--wasm FILE]   types: q2_k q3_k q4_k q5_k q6_k q3_kp q5_kp q6_kp
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const TYPES = {
  q2_k: [84, [80, 82]], q3_k: [110, [108]], q4_k: [144, [0, 2]], q5_k: [176, [0, 2]], q6_k: [210, [208]],
  // Q3_K, Q5_K and Q6_K in the loader's packed layouts (q3_k.ts, q5_k.ts, q6_k.ts; random bytes are valid packed blocks)
  q3_kp: [110, [108]], q5_kp: [176, [0, 2]], q6_kp: [210, [208]] };
const SHAPES = [[4864, 1024], [896, 4864]]; // rows x k (k a multiple of 256)
const TOKENS = [1, 2, 4, 16, 64];

const argv = process.argv.slice(2);
const relaxed = argv.includes("--relaxed");
const subnormal = argv.includes("--subnormal-scales");
const wasmAt = argv.indexOf("--wasm");
const wasmFile = wasmAt >= 0 ? argv[wasmAt + 1] : join(root, "build", relaxed ? "kernels-relaxed.wasm" : "kernels.wasm");
const memory = new WebAssembly.Memory({ initial: 2048, maximum: 65536, shared: true });
const { instance } = await WebAssembly.instantiate(readFileSync(wasmFile), {
  env: { memory, abort: () => { throw new Error("kernel abort"); } },
});
const K = instance.exports;

let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);

// CPU time of this thread (user + system), so that other processes on the machine disturb less.
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

/** Seconds per call: the best of 5 rounds of at least minMs each. */
function bench(fn, minMs = 150) {
  for (let i = 0; i < 3; i++) fn();
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    let reps = 0;
    const t0 = cpuMs();
    let t = t0;
    while (t - t0 < minMs) { fn(); reps++; t = cpuMs(); }
    best = Math.min(best, (t - t0) / reps / 1000);
  }
  return best;
}

const names = argv.filter((a, i) => !a.startsWith("--") && argv[i - 1] !== "--wasm");
const selected = names.length ? names : Object.keys(TYPES);
console.log(`${relaxed ? "relaxed-simd" : "simd128"} (${wasmFile}), ${subnormal ? "subnormal" : "normal"} block scales`);
console.log("type  rows x k      tokens  ms/call   weight GB/s  (GB/s x tokens)");
for (const name of selected) {
  const [typeSize, halves] = TYPES[name];
  for (const [rows, k] of SHAPES) {
    const nb = k / 256;
    const wBytes = rows * nb * typeSize;
    const w = 1 << 20;
    const bytes = new Uint8Array(memory.buffer, w, wBytes);
    for (let i = 0; i < wBytes; i++) bytes[i] = (rand() * 256) | 0;
    const dv = new DataView(memory.buffer);
    for (let b = 0; b < rows * nb; b++) for (const o of halves) dv.setUint16(w + b * typeSize + o, subnormal ? 1 + ((rand() * 0x3ff) | 0) : 0x2000 + ((rand() * 0x400) | 0), true);
    const maxTok = Math.max(...TOKENS);
    const xf = w + wBytes + 4096;
    const xStride = nb * 292;
    const xq = xf + 4 * k * maxTok + 4096;
    const f = new Float32Array(memory.buffer, xf, k * maxTok);
    for (let i = 0; i < f.length; i++) f[i] = rand() * 2 - 1;
    for (let t = 0; t < maxTok; t++) K.quantize_q8_K(xf + 4 * k * t, xq + xStride * t, k);
    const out = xq + xStride * maxTok + 4096;
    for (const nTok of TOKENS) {
      const s = bench(() => K[`matmul_${name}`](w, xq, out, k, 0, rows, nTok, xStride, rows));
      const gbs = wBytes / s / 1e9;
      console.log(`${name}  ${String(rows).padStart(4)} x ${String(k).padEnd(5)}  ${String(nTok).padStart(6)}  ${(s * 1e3).toFixed(3).padStart(7)}   ${gbs.toFixed(2).padStart(9)}    ${(gbs * nTok).toFixed(2).padStart(7)}`);
    }
  }
}

// Activation quantization, for scale: f32 in, Q8_K out.
{
  const k = 4864 * 16, src = 1 << 20, dst = src + 4 * k + 4096;
  const f = new Float32Array(memory.buffer, src, k);
  for (let i = 0; i < k; i++) f[i] = rand() * 2 - 1;
  const simd = bench(() => K.quantize_q8_K(src, dst, k));
  const ref = bench(() => K.quantize_q8_K_ref(src, dst, k));
  console.log(`quantize_q8_K ${(4 * k / simd / 1e9).toFixed(2)} GB/s of f32 in (quantize_q8_K_ref ${(4 * k / ref / 1e9).toFixed(2)})`);
}
