// A/B micro-benchmark of the prefill attention op, one thread, Qwen2-0.5B's attention shape (14 query
// heads on 2 KV heads of 64, pages of 16 positions in a shuffled pool): one prefill chunk of --chunk
// tokens (default 512) at the end of an N-token prompt (positions N-chunk .. N-1, the chunk that costs
// most), run as the forward step runs it: the non-flash attention_paged_* with one item per KV head
// (all the chunk's tokens), and flash_attention_paged_* with one item per (KV head, tile of --tile
// tokens). The two are interleaved (old, new, old, new, ...) and each figure is the best of --repeat;
// the ratio old/new is what to read on a shared machine. Reads build/kernels.wasm (or --relaxed).
// With --against FILE (another build of the kernels, e.g. a worktree's build/kernels-relaxed.wasm), the
// "old" side is that build's flash attention instead of attention_paged, and the two builds' outputs
// are compared bit for bit (an A/B of a change to the flash kernel). K and V are N(0, 1), the queries
// N(0, --q-sigma²) (default 2: scores of std 2 after the 1/8 scale); --q-sigma 40 gives sharp attention
// (scores spread over a few hundred, most probabilities far below 1e-30), as trained models have in
// some heads.
//   node scripts/bench-attention.mjs [--tokens 1024,4096,8192] [--kv f32,f16,q8_0] [--chunk 512]
//                                    [--tile 16] [--repeat 3] [--relaxed] [--against FILE] [--q-sigma 2]
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i < 0 ? dflt : args[i + 1];
};
const sizes = opt("--tokens", "1024,4096,8192").split(",").map(Number);
const kvTypes = opt("--kv", "f32,f16,q8_0").split(",");
const chunk = Number(opt("--chunk", 512));
const tile = Number(opt("--tile", 16));
const repeat = Number(opt("--repeat", 3));
const relaxed = args.includes("--relaxed");
const against = opt("--against", undefined);
const qSigma = Number(opt("--q-sigma", 2));

const nHeads = 14, nKVHeads = 2, headDim = 64, pageSize = 16;
const group = nHeads / nKVHeads;
const qStride = nHeads * headDim;
const kvFloats = nKVHeads * headDim;
const ROW_BYTES = { f32: 4 * kvFloats, f16: 2 * kvFloats, q8_0: (kvFloats / 32) * 34 };
const KV_ID = { f32: 0, f16: 1, q8_0: 2 };
const FLASH_BLOCK = 64;

const memory = new WebAssembly.Memory({ initial: 256, maximum: 65536, shared: true });
const { instance } = await WebAssembly.instantiate(readFileSync(join(root, "build", relaxed ? "kernels-relaxed.wasm" : "kernels.wasm")), {
  env: { memory, abort: () => { throw new Error("kernel abort"); } },
});
const k = instance.exports;
const kb = against === undefined ? undefined : (await WebAssembly.instantiate(readFileSync(against), {
  env: { memory, abort: () => { throw new Error("kernel abort"); } },
})).instance.exports;

let top = 65536;
const alloc = (bytes) => {
  const at = Math.ceil(top / 64) * 64;
  top = at + bytes;
  const have = memory.buffer.byteLength;
  if (top > have) memory.grow(Math.ceil((top - have) / 65536));
  return at;
};
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
const fill = (at, n, sigma) => { const a = new Float32Array(memory.buffer, at, n); for (let i = 0; i < n; i++) a[i] = sigma * gauss(); };

/** CPU milliseconds of fn (one thread: CPU time is the kernel's time, whatever else runs). */
function cpuMs(fn) {
  const t0 = process.cpuUsage();
  fn();
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / 1000;
}

console.log(`prefill attention, one thread, chunk of ${chunk} tokens at the end of the prompt, flash tiles of ${tile}` +
  `${relaxed ? ", relaxed SIMD" : ""}, queries of std ${qSigma}; best of ${repeat}, interleaved`);
for (const kvType of kvTypes) {
  for (const N of sizes) {
    top = 65536;
    const pos0 = N - chunk;
    const nPages = Math.ceil(N / pageSize);
    const rowBytes = ROW_BYTES[kvType];
    const order = Array.from({ length: nPages }, (_, i) => i);
    for (let i = nPages - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
    const table = alloc(4 * nPages);
    new Int32Array(memory.buffer, table, nPages).set(order);
    const kPool = alloc(nPages * pageSize * rowBytes), vPool = alloc(nPages * pageSize * rowBytes);
    // K and V of every position, stored through the kernels' own converter
    const src = alloc(4 * kvFloats * 256);
    for (let p0 = 0; p0 < N; p0 += 256) {
      const n = Math.min(256, N - p0);
      fill(src, n * kvFloats, 1);
      k.kv_store_paged(src, kPool, table, pageSize, p0, n, kvFloats, rowBytes, KV_ID[kvType]);
      fill(src, n * kvFloats, 1);
      k.kv_store_paged(src, vPool, table, pageSize, p0, n, kvFloats, rowBytes, KV_ID[kvType]);
    }
    const q = alloc(4 * chunk * qStride);
    fill(q, chunk * qStride, qSigma);
    const out = alloc(4 * chunk * qStride);
    const scratch = alloc(Math.max(4 * (group * (headDim + N) + 4 * headDim),
      4 * (group * tile * (2 * headDim + 4) + FLASH_BLOCK * (2 + 2 * headDim))));
    const scale = Math.fround(1 / Math.sqrt(headDim));
    const flashOf = (kk) => () => {
      for (let g = 0; g < nKVHeads; g++) {
        for (let t0 = 0; t0 < chunk; t0 += tile) {
          const n = Math.min(tile, chunk - t0);
          kk[`flash_attention_paged_${kvType}`](q + 4 * t0 * qStride, kPool, vPool, table, pageSize, out + 4 * t0 * qStride,
            scratch, n, pos0 + t0, nHeads, nKVHeads, headDim, qStride, rowBytes, scale, g * group, (g + 1) * group);
        }
      }
    };
    const old = kb ? flashOf(kb) : () => {
      for (let g = 0; g < nKVHeads; g++) {
        k[`attention_paged_${kvType}`](q, kPool, vPool, table, pageSize, out, scratch, chunk, pos0, nHeads, nKVHeads, headDim,
          qStride, rowBytes, scale, g * group, (g + 1) * group);
      }
    };
    const flash = flashOf(k);
    let same = "";
    if (kb) {
      old();
      const a = new Uint8Array(memory.buffer, out, 4 * chunk * qStride).slice();
      flash();
      same = Buffer.compare(a, new Uint8Array(memory.buffer, out, 4 * chunk * qStride)) === 0 ? ", outputs bit-identical" : ", OUTPUTS DIFFER";
    }
    flash(); // warm-up (and the outputs of both agree: see test/kernels/flash.test.ts)
    let bestOld = Infinity, bestNew = Infinity;
    for (let r = 0; r < repeat; r++) {
      bestOld = Math.min(bestOld, cpuMs(old));
      bestNew = Math.min(bestNew, cpuMs(flash));
    }
    console.log(`${kvType.padEnd(5)} N=${String(N).padStart(6)}: ${kb ? "flash (--against)" : "attention_paged"} ${bestOld.toFixed(1).padStart(8)} ms, ` +
      `flash ${bestNew.toFixed(1).padStart(8)} ms per layer, old/new ${(bestOld / bestNew).toFixed(2)}x${same}`);
  }
}
