// A/B of two kernel builds in one process, for speed changes on a shared machine: both builds are
// instantiated over one memory and timed on the same operands, interleaved (A, B, A, B, ...), each
// figure the best of its rounds, so that load from other processes hits both alike. Prints GB/s of
// weights for A and B and the ratio B/A per type, and whether B's outputs are bit-identical to A's.
//   node scripts/bench-ab.mjs --a DIR_A [--b DIR_B] [type ...] [--relaxed] [--tokens N] [--rounds N]
//        [--rows N] [--k N]
// DIR_A / DIR_B hold kernels.wasm and kernels-relaxed.wasm (B defaults to build/). To keep a
// baseline: `cp build/kernels*.wasm /tmp/base/` before changing assembly/, then rebuild.
// Types: q4_0 q4_1 q5_0 q5_1 q8_0 iq4_nl q2_k q3_k q4_k q5_k q6_k, and the layouts the loader makes:
// q4_0x4 q4_1x4 q5_0x4 q5_1x4 iq4_nlx4 (rows interleaved by four) and q8_0p (packed). Shape: 4864 x
// 896 for the block-32 types (Qwen2-0.5B's ffn_up), 4864 x 1024 for the K-quants, or --rows/--k.
// Every call gets the matmul's scratch (matmulScratchBytes), as in the model.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import v8 from "node:v8";
import { takeOption } from "./options.mjs";

// Node 20 needs the flag; Node 22 and later have relaxed SIMD on and V8 13 (Node 24) no longer knows it
if (Number(process.versions.node.split(".")[0]) < 22) v8.setFlagsFromString("--experimental-wasm-relaxed-simd");

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (name, dflt) => takeOption(args, name, dflt);
const dirA = opt("--a", null);
const dirB = opt("--b", join(root, "build"));
const nTok = Number(opt("--tokens", 1));
const rounds = Number(opt("--rounds", 7));
const rowsOpt = opt("--rows", null), kOpt = opt("--k", null);
const relaxed = args.includes("--relaxed");
if (relaxed) args.splice(args.indexOf("--relaxed"), 1);
if (!dirA) throw new Error("usage: node scripts/bench-ab.mjs --a DIR_A [--b DIR_B] [type ...] [--relaxed] [--tokens N]");

// name: [block size, bytes per block, activation converter, activation bytes per block, f16 offsets]
const TYPES = {
  q4_0: [32, 18, "quantize_q8_0", 34, [0]],
  q4_1: [32, 20, "quantize_q8_1", 36, [0, 2]],
  q5_0: [32, 22, "quantize_q8_0", 34, [0]],
  q5_1: [32, 24, "quantize_q8_1", 36, [0, 2]],
  q8_0: [32, 34, "quantize_q8_0", 34, [0]],
  iq4_nl: [32, 18, "quantize_q8_0", 34, [0]],
  q2_k: [256, 84, "quantize_q8_K", 292, [80, 82]],
  q3_k: [256, 110, "quantize_q8_K", 292, [108]],
  q4_k: [256, 144, "quantize_q8_K", 292, [0, 2]],
  q5_k: [256, 176, "quantize_q8_K", 292, [0, 2]],
  q6_k: [256, 210, "quantize_q8_K", 292, [208]],
  // rows grouped by four: the four rows' d (and m) lead each super-block of four blocks
  q4_0x4: [32, 18, "quantize_q8_0", 34, [0], true],
  q4_1x4: [32, 20, "quantize_q8_1", 36, [0, 8], true],
  q5_0x4: [32, 22, "quantize_q8_0", 34, [0], true],
  q5_1x4: [32, 24, "quantize_q8_1", 36, [0, 8], true],
  iq4_nlx4: [32, 18, "quantize_q8_0", 34, [0], true],
  q8_0p: [32, 34, "quantize_q8_0", 34, [0], true],
};
const selected = args.length ? args : ["q5_0", "q8_0", "q4_0", "q6_k", "q4_k", "q5_k", "iq4_nl", "q5_1"];

const memory = new WebAssembly.Memory({ initial: 2048, maximum: 65536, shared: true });
const file = relaxed ? "kernels-relaxed.wasm" : "kernels.wasm";
const load = async (dir) => (await WebAssembly.instantiate(readFileSync(join(dir, file)), {
  env: { memory, abort: () => { throw new Error("kernel abort"); } },
})).instance.exports;
const A = await load(dirA), B = await load(dirB);

let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

/** Calls per batch so that a batch takes about 25 ms. */
function batchSize(fn) {
  for (let i = 0; i < 10; i++) fn();
  let n = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    if (performance.now() - t0 >= 25) return n;
    n *= 2;
  }
}
/** Seconds per call of one batch of n calls, in CPU time of this process. */
function batch(fn, n) {
  const t0 = cpuMs();
  for (let i = 0; i < n; i++) fn();
  return (cpuMs() - t0) / n / 1000;
}

let top = 65536;
const alloc = (bytes) => {
  const off = Math.ceil(top / 64) * 64;
  top = off + bytes;
  if (top > memory.buffer.byteLength) memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536));
  return off;
};

console.log(`A ${join(dirA, file)}  B ${join(dirB, file)}; one thread, node ${process.version}, ${nTok} token(s), ` +
  `best of ${rounds} interleaved rounds`);
for (const name of selected) {
  const spec = TYPES[name];
  if (!spec) throw new Error(`unknown type ${name}; known: ${Object.keys(TYPES).join(", ")}`);
  const [bs, tb, conv, xb, halves, grouped] = spec;
  const rows = Number(rowsOpt ?? 4864), k = Number(kOpt ?? (bs === 256 ? 1024 : 896));
  top = 65536;
  const rowBytes = (k / bs) * tb, wBytes = rows * rowBytes;
  const w = alloc(wBytes);
  const u8 = new Uint8Array(memory.buffer, w, wBytes);
  for (let i = 0; i < wBytes; i++) u8[i] = (rand() * 256) | 0;
  const dv = new DataView(memory.buffer);
  for (let b = 0; b < rows * k / bs; b++) {
    const at = grouped ? w + (b >> 2) * 4 * tb + 2 * (b & 3) : w + b * tb;
    for (const [j, o] of halves.entries()) dv.setUint16(at + o, A.f32_to_f16((j ? -0.05 : 0.01) * (0.5 + rand())), true);
  }
  const xf = alloc(nTok * k * 4);
  const f = new Float32Array(memory.buffer, xf, nTok * k);
  for (let i = 0; i < f.length; i++) f[i] = rand() * 2 - 1;
  const xStride = (k / bs) * xb, x = alloc(nTok * xStride);
  for (let t = 0; t < nTok; t++) A[conv](xf + t * k * 4, x + t * xStride, k);
  const outA = alloc(nTok * rows * 4), outB = alloc(nTok * rows * 4);
  const scratch = alloc(288 * Math.ceil(k / 32)); // compute/kernels/dispatch.ts matmulScratchBytes
  const fa = () => A[`matmul_${name}`](w, x, outA, k, 0, rows, nTok, xStride, rows, scratch);
  const fb = () => B[`matmul_${name}`](w, x, outB, k, 0, rows, nTok, xStride, rows, scratch);
  fa(); fb();
  const same = Buffer.compare(Buffer.from(memory.buffer, outA, nTok * rows * 4), Buffer.from(memory.buffer, outB, nTok * rows * 4)) === 0;
  const n = Math.max(batchSize(fa), batchSize(fb));
  let ta = Infinity, tbest = Infinity;
  for (let r = 0; r < rounds; r++) {
    ta = Math.min(ta, batch(fa, n));
    tbest = Math.min(tbest, batch(fb, n));
  }
  const gb = (t) => (wBytes / t / 1e9).toFixed(2).padStart(6);
  console.log(`${name.padEnd(7)} ${rows}x${k}  A ${gb(ta)} GB/s  B ${gb(tbest)} GB/s  B/A ${(ta / tbest).toFixed(3)}  ` +
    `${same ? "outputs identical" : "OUTPUTS DIFFER"}`);
}
