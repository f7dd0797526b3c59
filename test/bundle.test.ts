// The library's bundles stay within a size budget and carry no test-only code: not the GGUF fuzzer or
// the synthetic-model generator (tools/, the CLI's), not the scalar reference codecs (weights/quant),
// and no test-only kernel in the embedded wasm (the contiguous attention_*, copy_f32, softmax_f32,
// exp_f32 live in build/kernels-test.wasm). Builds nothing: it reads dist/ as scripts/build.mjs left
// it, and the runner skips it, saying so, where dist/ is not built.
import { existsSync, readFileSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";

const root = new URL("../", import.meta.url);
const dist = (path: string) => new URL(`dist/${path}`, root);

/** Bytes allowed per bundle: about 10% over what it was when the budget was set (the four embedded
 *  kernel builds are most of index.js and engine-worker.js). Raise one on purpose, never by habit. */
const BUDGETS: Record<string, number> = {
  // Raised on purpose (session 4): the one-token paths of the mixes' types and the flash-attention
  // prefill grew each kernel build from 140,747 to 197,611 bytes (x4 builds, base64), and
  // constrained decoding, tools and logprobs added about 50 KB. Again (session 10): the matmuls over
  // rows interleaved by four (assembly/quants/b32x4.ts, five types) grew each build from 190,903 to
  // 237,441 bytes; one variant of each loop (the scratch required, else the scalar reference) kept
  // it from 268,806. Again (session 13): the packed layouts loaded Q3_K, Q5_K, Q8_0 and Q6_K matrices
  // take (sessions 11-13: their matmuls, readers and Q6_K's packer) grew the builds to 285,301 (SIMD128) and 278,641 bytes (relaxed).
  "index.js": 2_170_000, // 1,970,595 when raised (session 13); 1,791,287 with six x4 types, 1,731,978 with five (1,462,203 before, 1,083,275 when set)
  // Raised on purpose (session 5): the decode step's fused ops (the per-token work spread over the
  // workers) took the forward step from 29,906 to 33,499 bytes. Again (session 17): the ops' item
  // functions built once per runner (no closures per step: test/model/step-allocation.test.ts) took
  // it from 35,917 to 42,436.
  "compute-worker.js": 47_000, // 42,436 when raised (33,499 in session 5, 27,874 when set)
  "browser/qwasm.js": 20_000, // 18,052
  "browser/engine-worker.js": 2_160_000, // 1,963,742 when raised (session 13, the packed layouts); 1,784,434 (session 10, six x4 types; 1,450,294 before, 1,072,166 when set)
};

/** Names that only test-only code defines. */
const JS_MARKERS = [
  "fuzzGGUF", "synthFuzzSeeds", "writeSynthQwen2", "QWEN2_PRESETS", // tools/
  "vecDot_q4_0_q8_0", "dequantize_q4_K", // the scalar codecs of weights/quant
];
const TEST_KERNELS = ["attention_f32", "attention_f16", "attention_q8_0", "copy_f32", "softmax_f32", "exp_f32", "exp_neg_f32"];

/** The export names of a wasm module, from its export section. */
function wasmExportNames(bytes: Uint8Array): string[] {
  if (bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) throw new Error("not a wasm module");
  let p = 8;
  const leb = () => {
    let r = 0, shift = 0, b;
    do { b = bytes[p++]; r += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
    return r;
  };
  const names: string[] = [];
  while (p < bytes.length) {
    const id = bytes[p++];
    const size = leb();
    const end = p + size;
    if (id === 7) {
      for (let n = leb(), i = 0; i < n; i++) {
        const len = leb();
        names.push(new TextDecoder().decode(bytes.subarray(p, p + len)));
        p += len + 1; // name, kind
        leb(); // index
      }
    }
    p = end;
  }
  return names;
}

/** The wasm modules embedded in a bundle as base64 string literals. */
function embeddedModules(text: string): Uint8Array[] {
  return [...text.matchAll(/"(AGFzbQ[A-Za-z0-9+/=]{1000,})"/g)].map((m) => new Uint8Array(Buffer.from(m[1], "base64")));
}

const built = existsSync(dist("index.js")) && existsSync(dist("browser/qwasm.js"));

describe.skipIf(!built)(built ? "library bundles" : "library bundles (skipped: dist/ is not built: node scripts/build.mjs)", () => {
  it.for(Object.keys(BUDGETS))("dist/%s is within its size budget", (path) => {
    const size = statSync(dist(path)).size;
    expect(size <= BUDGETS[path], `dist/${path} is ${size} bytes, over its budget of ${BUDGETS[path]}: ` +
      "something new is bundled (see test/bundle.test.ts for what must stay out); raise the budget only on purpose").toBe(true);
  });

  it.for(Object.keys(BUDGETS))("dist/%s holds no test-only code", (path) => {
    const text = readFileSync(dist(path), "utf8");
    const found = JS_MARKERS.filter((m) => text.includes(m));
    expect(found, `dist/${path} contains test-only code (${found.join(", ")}): the library must not import tools/ or the scalar codecs`).toEqual([]);
  });

  it.for(["index.js", "browser/engine-worker.js"])("the kernels embedded in dist/%s export no test-only kernel", (path) => {
    const modules = embeddedModules(readFileSync(dist(path), "utf8"));
    expect(modules.length).toBe(4); // SIMD128 and relaxed, over shared and unshared memory
    for (const bytes of modules) {
      const names = wasmExportNames(bytes);
      expect(names).toContain("attention_paged_f32");
      expect(names.filter((n) => TEST_KERNELS.includes(n)), `dist/${path} embeds test-only kernels`).toEqual([]);
    }
  });

  it("the markers are real names: the CLI bundle (which has tools/) and the test build hold them", (ctx) => {
    const testBuild = new URL("build/kernels-test.wasm", root);
    if (!existsSync(testBuild) || !existsSync(dist("cli.js"))) ctx.skip("build/kernels-test.wasm or dist/cli.js is not built");
    const cli = readFileSync(dist("cli.js"), "utf8");
    expect(JS_MARKERS.filter((m) => !cli.includes(m))).toEqual([]);
    const names = wasmExportNames(new Uint8Array(readFileSync(testBuild)));
    expect(TEST_KERNELS.filter((n) => !names.includes(n))).toEqual([]);
  });
});
