// Speed of the load-time packers, one thread: the kernels' in-place wasm packers (pack_q5_k,
// pack_q6_k, build/kernels.wasm) against the JavaScript packers of compute/model/interleave.ts
// (packQ5K, packQ6K, bundled here with esbuild), on a matrix the size of the 1.5B's Q6_K LM head
// (151936 x 1536; Q5_K: the same number of weights). Prints GB/s of weights rewritten, each of three
// rounds (the first touches fresh pages). Build first: npm run build:kernels (or npm install).
//   node scripts/bench-pack.mjs
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bundled = await build({ entryPoints: [join(root, "compute/model/interleave.ts")], bundle: true, format: "esm", write: false, logLevel: "error" });
const js = await import(`data:text/javascript;base64,${Buffer.from(bundled.outputFiles[0].text).toString("base64")}`);

const rows = 151936, cols = 1536, blocks = rows * cols / 256;
const memory = new WebAssembly.Memory({ initial: 4096, maximum: 65536, shared: true });
const { instance } = await WebAssembly.instantiate(readFileSync(join(root, "build", "kernels.wasm")), {
  env: { memory, abort: () => { throw new Error("kernel abort"); } },
});
const W = 65536;
for (const [type, blockBytes, wasm, packJS] of [["Q6_K", 210, "pack_q6_k", js.packQ6K], ["Q5_K", 176, "pack_q5_k", js.packQ5K]]) {
  const n = blocks * blockBytes;
  if (memory.buffer.byteLength < W + n) memory.grow(Math.ceil((W + n - memory.buffer.byteLength) / 65536));
  const u8 = new Uint8Array(memory.buffer);
  for (let i = 0; i < n; i++) u8[W + i] = (i * 2654435761) >>> 24;
  const time = (label, fn) => {
    const runs = [];
    for (let r = 0; r < 3; r++) { const t = performance.now(); fn(); runs.push(performance.now() - t); }
    console.log(`${type} ${label}: ${(n / 1e6).toFixed(0)} MB in ${runs.map((ms) => ms.toFixed(0)).join(", ")} ms: ` +
      `${runs.map((ms) => (n / ms / 1e6).toFixed(2)).join(", ")} GB/s`);
  };
  time(`${wasm} (wasm)`, () => instance.exports[wasm](W, blocks));
  time(`pack${type.replace("_", "")} (JavaScript)`, () => packJS(new Uint8Array(memory.buffer), W, rows, cols));
}
