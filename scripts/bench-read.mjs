// What loading a model's tensors costs on this machine, apart from the model: the library's
// GGUF reader (dist/index.js openGGUF + readTensorData, as loadQwen2 reads) into a fresh shared
// WebAssembly memory, then into the same memory again (its pages touched), and the cost of a first
// touch alone (one byte written per 4 KiB page of another fresh memory, in microseconds per page).
// Build first (npm install or node scripts/build.mjs).
//   node scripts/bench-read.mjs MODEL.gguf
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { openGGUF } = await import(join(root, "dist", "index.js"));
const path = process.argv[2];
if (!path) throw new Error("usage: node scripts/bench-read.mjs MODEL.gguf");
const file = await openGGUF(path);
const bytes = file.tensorDataBytes;
const pages = Math.ceil((bytes + 65536) / 65536);
const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
for (const label of ["fresh pages", "touched pages"]) {
  let at = 0;
  const t = performance.now();
  await file.readTensorData((tensor) => { const d = new Uint8Array(memory.buffer, at, tensor.nbytes); at += tensor.nbytes; return d; });
  const ms = performance.now() - t;
  console.log(`readTensorData into ${label}: ${(bytes / 1e9).toFixed(2)} GB in ${ms.toFixed(0)} ms: ${(bytes / ms / 1e6).toFixed(2)} GB/s`);
}
await file.close();
const fresh = new Uint8Array(new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer);
const t = performance.now();
for (let i = 0; i < fresh.length; i += 4096) fresh[i] = 1;
const ms = performance.now() - t;
console.log(`first touch: ${fresh.length / 4096} pages in ${ms.toFixed(0)} ms: ${(1000 * ms / (fresh.length / 4096)).toFixed(2)} us per page`);
