// Speed of the load-time packers, one thread: the kernels' in-place wasm packers (pack_q3_k,
// pack_q5_k, pack_q6_k, pack_q8_0, interleave_x4; build/kernels.wasm) against the JavaScript packers of
// compute/model/interleave.ts (packQ3K, packQ5K, packQ6K, packQ8_0, interleaveRows4, bundled with esbuild),
// on a matrix the size of the 1.5B's LM head (151936 x 1536). Prints GB/s of weights rewritten, each of
// three rounds (the first touches fresh pages). Build first: npm run build:kernels (or npm install).
//   node scripts/bench-pack.mjs
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bundled = await build({ entryPoints: [join(root, "compute/model/interleave.ts")], bundle: true, format: "esm", write: false, logLevel: "error" });
const js = await import(`data:text/javascript;base64,${Buffer.from(bundled.outputFiles[0].text).toString("base64")}`);

const rows = 151936, cols = 1536;
const memory = new WebAssembly.Memory({ initial: 4096, maximum: 65536, shared: true });
const { instance } = await WebAssembly.instantiate(readFileSync(join(root, "build", "kernels.wasm")), {
  env: { memory, abort: () => { throw new Error("kernel abort"); } },
});
const K = instance.exports;
const W = 65536;
const x4 = (type, blockBytes) => (w, scratch) => {
  const t = js.x4Layout(type);
  K.interleave_x4(w, rows, cols, blockBytes, t.qsAt, t.hasMin, t.plane, scratch);
};
// [type, bytes per block, weights per block, wasm (w, scratch), JavaScript (u8, w)]
const PACKERS = [
  ["Q6_K", 210, 256, "pack_q6_k", (w) => K.pack_q6_k(w, rows * cols / 256), "packQ6K", (u8, w) => js.packQ6K(u8, w, rows, cols)],
  ["Q3_K", 110, 256, "pack_q3_k", (w) => K.pack_q3_k(w, rows * cols / 256), "packQ3K", (u8, w) => js.packQ3K(u8, w, rows, cols)],
  ["Q5_K", 176, 256, "pack_q5_k", (w) => K.pack_q5_k(w, rows * cols / 256), "packQ5K", (u8, w) => js.packQ5K(u8, w, rows, cols)],
  ["Q8_0", 34, 32, "pack_q8_0", (w, s) => K.pack_q8_0(w, rows, cols, s), "packQ8_0", (u8, w) => js.packQ8_0(u8, w, rows, cols)],
  ["Q4_0 x4", 18, 32, "interleave_x4", x4(2, 18), "interleaveRows4", (u8, w) => js.interleaveRows4(u8, w, rows, cols, 2)],
  ["Q5_0 x4", 22, 32, "interleave_x4", x4(6, 22), "interleaveRows4", (u8, w) => js.interleaveRows4(u8, w, rows, cols, 6)],
];
for (const [type, blockBytes, blockSize, wasmName, wasm, jsName, packJS] of PACKERS) {
  const n = rows * (cols / blockSize) * blockBytes;
  const S = W + n + 4096; // the scratch: four rows
  const end = S + 4 * (cols / blockSize) * blockBytes;
  if (memory.buffer.byteLength < end) memory.grow(Math.ceil((end - memory.buffer.byteLength) / 65536));
  const u8 = new Uint8Array(memory.buffer);
  for (let i = 0; i < n; i++) u8[W + i] = (i * 2654435761) >>> 24;
  const time = (label, fn) => {
    const runs = [];
    for (let r = 0; r < 3; r++) { const t = performance.now(); fn(); runs.push(performance.now() - t); }
    console.log(`${type} ${label}: ${(n / 1e6).toFixed(0)} MB in ${runs.map((ms) => ms.toFixed(0)).join(", ")} ms: ` +
      `${runs.map((ms) => (n / ms / 1e6).toFixed(2)).join(", ")} GB/s`);
  };
  time(`${wasmName} (wasm)`, () => wasm(W, S));
  time(`${jsName} (JavaScript)`, () => packJS(new Uint8Array(memory.buffer), W));
}
