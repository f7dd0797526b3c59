// Loads the compiled AssemblyScript kernels over a shared WebAssembly.Memory.
// The bytes are embedded by scripts/build.mjs (build/kernels-wasm.gen.ts), so the same code works in
// Node, Deno, browsers and bundles without a file read. There are two builds of the same source:
// SIMD128, which every runtime takes, and relaxed SIMD (an i8 dot product for the many-token
// matmuls), chosen where the runtime validates it and a probe finds that it computes what the SIMD128
// build does: Node 20 refuses relaxed SIMD by default, and with --experimental-wasm-relaxed-simd
// gets i32x4.relaxed_dot_i8x16_i7x16_add_s wrong.
// The same two builds again import an unshared memory, for runtimes with no SharedArrayBuffer (edge
// isolates, pages that are not cross-origin isolated): one thread, the same choice between them.
import {
  KERNELS_RELAXED_WASM_BASE64, KERNELS_SINGLE_RELAXED_WASM_BASE64, KERNELS_SINGLE_WASM_BASE64, KERNELS_WASM_BASE64,
} from "../../build/kernels-wasm.gen";
import { activationRowBytes, WEIGHT_TYPE_INFOS } from "../../weights/gguf/types";
import { activationConverter, kernelSuffix, PACKED_MATMULS, X4_MATMULS } from "./dispatch";
import type { Kernels } from "./exports";

export type { Kernels } from "./exports";

/** Which build of the kernels runs. */
export type KernelBuild = "simd128" | "relaxed-simd" | "simd128-unshared" | "relaxed-simd-unshared";

export interface KernelChoice {
  module: WebAssembly.Module;
  build: KernelBuild;
  /** What limited the choice: why the relaxed build was not taken, or that memory is unshared
   *  (one thread); absent when neither. */
  reason?: string;
}

function decodeBase64(text: string): Uint8Array {
  if (typeof atob === "function") {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  throw new Error("no base64 decoder (atob) in this runtime");
}

const compiledBuilds = new Map<KernelBuild, Promise<WebAssembly.Module>>();

/** The module of one build, compiled once per process (rejects where the runtime lacks its features). */
export function compileKernelBuild(build: KernelBuild): Promise<WebAssembly.Module> {
  let module = compiledBuilds.get(build);
  if (!module) {
    const base64 = { "simd128": KERNELS_WASM_BASE64, "relaxed-simd": KERNELS_RELAXED_WASM_BASE64,
      "simd128-unshared": KERNELS_SINGLE_WASM_BASE64, "relaxed-simd-unshared": KERNELS_SINGLE_RELAXED_WASM_BASE64 }[build];
    module = WebAssembly.compile(decodeBase64(base64) as BufferSource);
    compiledBuilds.set(build, module);
  }
  return module;
}

/** (func (param v128 v128) (result v128) (i16x8.relaxed_dot_i8x16_i7x16_s (local.get 0) (local.get 1))) */
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x07, 0x01, 0x60, 0x02, 0x7b, 0x7b, 0x01, 0x7b, // type: (v128, v128) -> v128
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x0a, 0x0b, 0x01, 0x09, 0x00, 0x20, 0x00, 0x20, 0x01, 0xfd, 0x92, 0x02, 0x0b, // body
]);

/** Whether this runtime accepts relaxed-SIMD instructions (it may still compute them wrong). */
export function relaxedSimdValidates(): boolean {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

// ---- the correctness probe ----

/** Weight types probed, every quantized type of the weight-type table: export suffix, bytes per block
 *  of `block` weights, activation converter, activation bytes per block, and the offsets of the f16
 *  scales to set to sane values. */
export const PROBED = WEIGHT_TYPE_INFOS.filter((t) => t.blockSize > 1).map((t) => {
  if (t.activation === "f32") throw new Error(`${t.name}: a quantized type with f32 activations`);
  return [kernelSuffix(t.name), t.blockSize, t.typeSize, activationConverter(t.activation),
    activationRowBytes(t.activation, t.blockSize), t.f16Fields] as const;
});

/** The types whose x4 matmul (rows interleaved by four, compute/model/interleave.ts) is probed too. */
export const PROBED_X4 = (Object.keys(X4_MATMULS) as (keyof typeof X4_MATMULS)[]).map(kernelSuffix);

/** The types whose packed-layout matmul (compute/model/interleave.ts packBlocks) is probed too: any
 *  bytes are a packed block (Q8_0's with its d where x4 has them), so it runs on the same data. */
export const PROBED_PACKED = (Object.keys(PACKED_MATMULS) as (keyof typeof PACKED_MATMULS)[]).map(kernelSuffix);

type MatmulName = `matmul_${(typeof PROBED)[number][0]}` | (typeof X4_MATMULS)[keyof typeof X4_MATMULS][0]
  | (typeof PACKED_MATMULS)[keyof typeof PACKED_MATMULS][0];

/**
 * Runs every quantized matmul of `candidate` and of `reference` on the same fixed data (5 rows,
 * k = 512, 11 tokens: the tiles of eight and of three tokens, two-row and one-row tiles, and the
 * one-token path; the x4 matmuls on one group of 4 rows; the packed Q3_K matmul on the Q3_K data) in a scratch memory, and returns a description of the first disagreement beyond
 * f32 rounding, or undefined when they agree. Throws what instantiation or a kernel throws.
 */
export async function probeKernels(reference: WebAssembly.Module, candidate: WebAssembly.Module, shared = true): Promise<string | undefined> {
  const memory = new WebAssembly.Memory({ initial: 4, maximum: 4, shared });
  const imports = { env: { memory, abort: () => { throw new Error("kernel abort"); } } };
  const ref = (await WebAssembly.instantiate(reference, imports)).exports as unknown as Kernels;
  const cand = (await WebAssembly.instantiate(candidate, imports)).exports as unknown as Kernels;
  const bytes = new Uint8Array(memory.buffer);
  const view = new DataView(memory.buffer);
  let seed = 0x2545f491;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
  const rows = 5, k = 512, nTok = 11;
  const W = 1024, XF = 65536, X = 98304, OUT_REF = 131072, OUT_CAND = 196608, SCRATCH = 229376; // byte offsets
  for (let i = 0; i < nTok * k; i++) view.setFloat32(XF + 4 * i, next() * 2 - 1, true);
  // the file-layout matmuls on 5 rows, then the x4 ones (rows interleaved by four) on 4: there the
  // four rows' f16 fields lead each super-block of four blocks (assembly/quants/b32x4.ts)
  const probed = [...PROBED.map((e) => [e[0], e] as const), ...PROBED_X4.map((s) => [`${s}x4`, PROBED.find((e) => e[0] === s)!] as const),
    ...PROBED_PACKED.map((s) => [`${s}p`, PROBED.find((e) => e[0] === s)!] as const)];
  for (const [name, [suffix, block, blockBytes, convert, xBytes, halves]] of probed) {
    // q8_0p groups rows by four as x4 does, its d leading each super-block the same way
    const x4 = name === `${suffix}x4` || name === "q8_0p", n = x4 ? 4 : rows;
    const nb = k / block;
    for (let i = 0; i < n * nb * blockBytes; i++) bytes[W + i] = (next() * 256) | 0;
    for (let b = 0; b < n * nb; b++) {
      const p = W + b * blockBytes;
      // q8_0 quants in [-127, 127], as ggml's quantizer writes them (see assembly/quants/common.ts)
      if (suffix === "q8_0") for (let j = 2; j < 34; j++) if (bytes[p + j] === 0x80) bytes[p + j] = 0x81;
      for (const h of halves) {
        const at = x4 ? W + (b >> 2) * 4 * blockBytes + 4 * h + 2 * (b & 3) : p + h;
        view.setUint16(at, 0x2000 + ((next() * 0x400) | 0), true);
      }
    }
    const xStride = nb * xBytes;
    for (let t = 0; t < nTok; t++) ref[convert](XF + 4 * k * t, X + xStride * t, k);
    ref[`matmul_${name}` as MatmulName](W, X, OUT_REF, k, 0, n, nTok, xStride, n, SCRATCH);
    cand[`matmul_${name}` as MatmulName](W, X, OUT_CAND, k, 0, n, nTok, xStride, n, SCRATCH);
    const a = new Float32Array(memory.buffer, OUT_REF, n * nTok);
    const b = new Float32Array(memory.buffer, OUT_CAND, n * nTok);
    const scale = a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (let i = 0; i < a.length; i++) {
      if (!(Math.abs(a[i] - b[i]) <= 1e-5 * scale)) {
        return `matmul_${name} token ${Math.floor(i / n)} row ${i % n}: ${b[i]}, SIMD128 ${a[i]}`;
      }
    }
  }
  return undefined;
}

// ---- the choice ----

export interface KernelChoiceOptions {
  /** Whether the runtime accepts relaxed SIMD (default: validate a tiny relaxed module). */
  validates?: () => boolean;
  /** The relaxed module (default: the relaxed build, compiled). */
  relaxed?: () => Promise<WebAssembly.Module>;
  /** The probe (default: probeKernels). */
  probe?: (reference: WebAssembly.Module, candidate: WebAssembly.Module) => Promise<string | undefined>;
}

/** Picks the relaxed build when the runtime validates it, it compiles, and the probe finds it agrees
 *  with the SIMD128 build `plain`; else `plain`, with the reason. Never throws for the relaxed build. */
export async function chooseKernels(plain: WebAssembly.Module, options: KernelChoiceOptions = {}): Promise<KernelChoice> {
  const { validates = relaxedSimdValidates, relaxed = () => compileKernelBuild("relaxed-simd"), probe = probeKernels } = options;
  try {
    if (!validates()) return { module: plain, build: "simd128", reason: "the runtime does not validate relaxed SIMD" };
    const candidate = await relaxed();
    const mismatch = await probe(plain, candidate);
    if (mismatch !== undefined) return { module: plain, build: "simd128", reason: `the relaxed build computes wrong results: ${mismatch}` };
    return { module: candidate, build: "relaxed-simd" };
  } catch (e) {
    return { module: plain, build: "simd128", reason: `the relaxed build failed: ${(e as Error)?.message ?? e}` };
  }
}

let chosen: Promise<KernelChoice> | undefined;
let relaxedAllowed = true;

/**
 * Whether the choice may take the relaxed build at all (default true). Call before anything loads:
 * the choice is made once per process. The CLI turns it off for QWASM_RELAXED_SIMD=0.
 */
export function allowRelaxedSimd(allowed: boolean): void {
  relaxedAllowed = allowed;
}

/**
 * Whether memory can be shared with workers here: a SharedArrayBuffer global (absent in edge isolates
 * and in pages that are not cross-origin isolated) and a shared WebAssembly.Memory that constructs.
 */
export function sharedMemorySupported(): boolean {
  if (typeof SharedArrayBuffer === "undefined" || typeof Atomics === "undefined") return false;
  try {
    return new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    return false;
  }
}

/** The kernel build this process runs (chosen once; see chooseKernels). */
export function kernelChoice(): Promise<KernelChoice> {
  chosen ??= choosePair(sharedMemorySupported());
  return chosen;
}

/** SIMD128 or relaxed, over a shared memory or (no SharedArrayBuffer) an unshared one. */
async function choosePair(shared: boolean): Promise<KernelChoice> {
  const plain = await compileKernelBuild(shared ? "simd128" : "simd128-unshared");
  const choice: KernelChoice = !relaxedAllowed
    ? { module: plain, build: "simd128", reason: "relaxed SIMD was turned off (QWASM_RELAXED_SIMD=0)" }
    : await chooseKernels(plain, shared ? {} : {
      relaxed: () => compileKernelBuild("relaxed-simd-unshared"),
      probe: (reference, candidate) => probeKernels(reference, candidate, false),
    });
  if (shared) return choice;
  const unshared = "no SharedArrayBuffer here: one thread, unshared memory";
  return choice.build === "relaxed-simd"
    ? { module: choice.module, build: "relaxed-simd-unshared", reason: unshared }
    : { module: choice.module, build: "simd128-unshared", reason: `${unshared}; ${choice.reason}` };
}

/** The compiled kernel module, chosen and compiled once per process and shared by every instance
 *  (the worker pool posts it to its workers). */
export async function kernelModule(): Promise<WebAssembly.Module> {
  return (await kernelChoice()).module;
}

/** "simd128" or "relaxed-simd": which build kernelModule() gives (for benchmarks and diagnostics). */
export async function kernelBuild(): Promise<KernelBuild> {
  return (await kernelChoice()).build;
}

/** A shared memory that the kernels can import; sizes in 64 KiB pages (65536 pages = 4 GiB). */
export function createSharedMemory(initialPages: number, maximumPages = 65536): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: initialPages, maximum: maximumPages, shared: true });
}

/** The memory the chosen build imports: shared where workers can share it, unshared elsewhere. */
export function createKernelMemory(initialPages: number, maximumPages = 65536): WebAssembly.Memory {
  return sharedMemorySupported() ? createSharedMemory(initialPages, maximumPages)
    : new WebAssembly.Memory({ initial: initialPages, maximum: maximumPages });
}

/** Instantiates the kernels (the chosen build, or `module`) over `memory`. Instantiation writes
 *  nothing into the memory. */
export async function instantiateKernels(memory: WebAssembly.Memory, module?: WebAssembly.Module): Promise<Kernels> {
  const instance = await WebAssembly.instantiate(module ?? await kernelModule(), {
    env: {
      memory,
      abort: () => { throw new Error("kernel abort"); },
    },
  });
  return instance.exports as unknown as Kernels;
}
