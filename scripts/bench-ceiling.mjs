// How fast can a batched decode step go on this machine? One thread, multiply-adds per second of:
//   - the peak: independent dot products and adds, nothing else (SIMD128: the kernels' dot_peak;
//     relaxed: scripts/ceiling/loops.ts relaxed_peak, the relaxed tiles' instruction pattern);
//   - the ideal many-token loop (scripts/ceiling/loops.ts): a 4864 x 896 matmul times 8 tokens on
//     weights and activations already decoded and laid out for the dot products, so only the
//     arithmetic, the loads and one f32 multiply-add per four blocks are left;
//   - qwasm's Q4_0 kernels (build/kernels.wasm, build/kernels-relaxed.wasm) on the same shape, for
//     8 tokens and for 1.
// and the tokens/s each rate would give the 0.5B shape (--macs multiply-adds per token) at --threads
// threads if matmuls were all a decode step did: for the 8-token rows, 8 streams together; for the
// 1-token rows, one stream. Node 20's relaxed-SIMD flag is turned on here.
//   node scripts/bench-ceiling.mjs [--threads 2] [--macs 493.9e6] [--ms 400]
// Needs `npm run build:kernels` (build/) and the devDependency assemblyscript (compiles the loops).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import v8 from "node:v8";

v8.setFlagsFromString("--experimental-wasm-relaxed-simd");

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i < 0 ? dflt : Number(args[i + 1]);
};
const threads = opt("--threads", 2);
const macsPerToken = opt("--macs", 493.9e6); // Qwen2-0.5B: 24 x 14.9e6 in the layers + 151936 x 896 LM head
const minMs = opt("--ms", 400);

// ---- build the loops (SIMD128 and relaxed) ----
const work = mkdtempSync(join(tmpdir(), "qwasm-ceiling-"));
const asc = join(root, "node_modules", "assemblyscript", "bin", "asc.js");
const compile = (relaxed) => {
  const out = join(work, relaxed ? "loops-relaxed.wasm" : "loops.wasm");
  execFileSync(process.execPath, [asc, join(root, "scripts", "ceiling", "loops.ts"), "-O3", "--runtime", "stub", "--noAssert",
    "--importMemory", "--sharedMemory", "--initialMemory", "1", "--maximumMemory", "65536",
    "--enable", "simd", "--enable", "threads", ...(relaxed ? ["--enable", "relaxed-simd"] : []), "-o", out], { stdio: "inherit" });
  return readFileSync(out);
};
const loopBytes = { simd128: compile(false), relaxed: compile(true) };
rmSync(work, { recursive: true, force: true });

const memory = new WebAssembly.Memory({ initial: 2048, maximum: 65536, shared: true });
const imports = { env: { memory, abort: () => { throw new Error("abort"); } } };
const instantiate = async (bytes) => (await WebAssembly.instantiate(bytes, imports)).instance.exports;
const loops = { simd128: await instantiate(loopBytes.simd128), relaxed: await instantiate(loopBytes.relaxed) };
const kernels = {
  simd128: await instantiate(readFileSync(join(root, "build", "kernels.wasm"))),
  relaxed: await instantiate(readFileSync(join(root, "build", "kernels-relaxed.wasm"))),
};

// ---- timing: CPU time of this thread, best of short batches over about minMs ----
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
function seconds(fn) {
  for (let i = 0; i < 5; i++) fn();
  let n = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    if (performance.now() - t0 >= 20) break;
    n *= 2;
  }
  let best = Infinity;
  const end = performance.now() + minMs;
  while (performance.now() < end) {
    const t0 = cpuMs();
    for (let i = 0; i < n; i++) fn();
    best = Math.min(best, (cpuMs() - t0) / n);
  }
  return best / 1000;
}

// ---- data ----
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
let top = 1 << 16;
const alloc = (bytes) => {
  const off = Math.ceil(top / 64) * 64;
  top = off + bytes;
  if (top > memory.buffer.byteLength) memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536));
  return off;
};
const rows = 4864, k = 896, nTok = 8;
const macs = rows * k * nTok;

/** An ideal-loop operand: `count` rows of k/128 groups, 8-bit values (i16 lanes for SIMD128), scales 0.01. */
function idealOperand(build, count, weights) {
  const gb = loops[build].group_bytes(), data = gb - 16, ng = k / 128;
  const p = alloc(count * ng * gb);
  const u8 = new Uint8Array(memory.buffer), dv = new DataView(memory.buffer);
  for (let g = 0; g < count * ng; g++) {
    const base = p + g * gb;
    for (let i = 0; i < (build === "relaxed" ? data : data / 2); i++) {
      const v = weights ? (rand() * 16) | 0 : ((rand() * 255) | 0) - 127; // u4 weights, i8 activations
      if (build === "relaxed") u8[base + i] = v & 255;
      else dv.setInt16(base + 2 * i, weights ? v - 8 : v, true);
    }
    for (let j = 0; j < 4; j++) dv.setFloat32(base + data + 4 * j, 0.01, true);
  }
  return { p, stride: ng * gb };
}

/** Q4_0 weights (rows x k) and q8_0 activations (nTok x k) for the kernels. */
function q4Operands(K) {
  const nb = k / 32, w = alloc(rows * nb * 18);
  const u8 = new Uint8Array(memory.buffer), dv = new DataView(memory.buffer);
  for (let i = 0; i < rows * nb * 18; i++) u8[w + i] = (rand() * 256) | 0;
  for (let b = 0; b < rows * nb; b++) dv.setUint16(w + 18 * b, K.f32_to_f16(0.01), true);
  const xf = alloc(nTok * k * 4), x = alloc(nTok * nb * 34);
  const f32 = new Float32Array(memory.buffer, xf, nTok * k);
  for (let i = 0; i < f32.length; i++) f32[i] = rand() * 2 - 1;
  for (let t = 0; t < nTok; t++) K.quantize_q8_0(xf + 4 * k * t, x + nb * 34 * t, k);
  return { w, x, xStride: nb * 34 };
}

const results = [];
const record = (what, rate) => results.push([what, rate]);

let n = 1 << 20;
record("peak SIMD128: dot_i16x8 + add (kernels' dot_peak)", (64 * n) / seconds(() => kernels.simd128.dot_peak(n)));
record("peak relaxed: 2 x relaxed_dot_i8x16_i7x16 + adds", (128 * n) / seconds(() => loops.relaxed.relaxed_peak(n)));
for (const build of ["simd128", "relaxed"]) {
  top = 1 << 16;
  const w = idealOperand(build, rows, true), x = idealOperand(build, nTok, false);
  const out = alloc(4 * rows * nTok);
  record(`ideal loop ${build}, 8 tokens (no decoding)`, macs / seconds(() => loops[build].ideal(w.p, x.p, out, k, rows, nTok, x.stride)));
}
for (const build of ["simd128", "relaxed"]) {
  top = 1 << 16;
  const K = kernels[build];
  const { w, x, xStride } = q4Operands(K);
  const out = alloc(4 * rows * nTok);
  record(`qwasm q4_0 ${build}, 8 tokens`, macs / seconds(() => K.matmul_q4_0(w, x, out, k, 0, rows, nTok, xStride, rows)));
  record(`qwasm q4_0 ${build}, 1 token`, (macs / nTok) / seconds(() => K.matmul_q4_0(w, x, out, k, 0, rows, 1, xStride, rows)));
}

console.log(`one thread, node ${process.version}, matmul ${rows} x ${k}; tokens/s = ${threads} threads x the rate / ` +
  `${(macsPerToken / 1e6).toFixed(1)}e6 multiply-adds per token, as if matmuls were all a decode step did`);
console.log(`${"".padEnd(52)} ${"multiply-adds/s".padStart(16)}  ${"tokens/s".padStart(9)}`);
for (const [what, rate] of results) {
  console.log(`${what.padEnd(52)} ${`${(rate / 1e9).toFixed(1)}e9`.padStart(16)}  ${((threads * rate) / macsPerToken).toFixed(0).padStart(9)}`);
}
