// Test helper for the kernels: one shared memory with the kernels instantiated over it, a bump
// allocator, and copies in and out. Offsets are byte addresses, as the kernels take them.
import { readFileSync } from "node:fs";
import type { KernelTestExports } from "../../build/kernels-exports.gen";
import { createSharedMemory, instantiateKernels } from "../../compute/kernels/module";

/** The test build's typed exports, plus any name by string (tests loop over names; `call` fails on a
 *  missing one). A harness over the library's kernels (`create`) lacks the test-only ones. */
export type TestKernels = KernelTestExports & Record<string, (...args: number[]) => number | void>;

let testModule: Promise<WebAssembly.Module> | undefined;

/** build/kernels-test.wasm: the library's kernels plus the references only tests call (assembly/test/). */
export function testKernelModule(): Promise<WebAssembly.Module> {
  testModule ??= (async () => {
    const url = new URL("../../build/kernels-test.wasm", import.meta.url);
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(url);
    } catch {
      throw new Error("build/kernels-test.wasm is missing: run node scripts/build.mjs (or npm run build:kernels)");
    }
    return WebAssembly.compile(bytes as BufferSource);
  })();
  return testModule;
}

const PAGE = 65536;

export class KernelHarness {
  readonly memory: WebAssembly.Memory;
  readonly k: TestKernels;
  /** Offset 0 stays unused so that a zero pointer is never a valid buffer. */
  private top = PAGE;

  private constructor(memory: WebAssembly.Memory, kernels: TestKernels) {
    this.memory = memory;
    this.k = kernels;
  }

  /** A fresh memory of `pages` 64 KiB pages (it grows on demand) with the kernels over it. */
  static async create(pages = 64): Promise<KernelHarness> {
    const memory = createSharedMemory(pages);
    return new KernelHarness(memory, await instantiateKernels(memory) as TestKernels);
  }

  /** The same over the test build (testKernelModule): the test-only references too. */
  static async createTest(pages = 64): Promise<KernelHarness> {
    const memory = createSharedMemory(pages);
    return new KernelHarness(memory, await instantiateKernels(memory, await testKernelModule()) as TestKernels);
  }

  /** Calls kernel `name`, failing loudly when the build lacks it. */
  call(name: string, ...args: number[]): number {
    const fn = this.k[name];
    if (typeof fn !== "function") throw new Error(`kernel export ${name} is missing; rebuild with npm run build:kernels`);
    return fn(...args) as number;
  }

  has(name: string): boolean {
    return typeof this.k[name] === "function";
  }

  /** Reserves `bytes` bytes aligned to `align`; the memory is grown as needed. */
  alloc(bytes: number, align = 64): number {
    const offset = Math.ceil(this.top / align) * align;
    const end = offset + bytes;
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return offset;
  }

  /** Frees everything allocated so far (the contents stay until overwritten). */
  reset(): void {
    this.top = PAGE;
  }

  // Views are made on demand: memory.buffer changes whenever the memory grows.
  u8(offset: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, offset, length);
  }
  f32(offset: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, length);
  }

  /** Copies bytes (any typed array) into fresh memory at an offset aligned to `align`. */
  put(data: ArrayBufferView, align = 64): number {
    const offset = this.alloc(data.byteLength, align);
    this.u8(offset, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return offset;
  }

  /** Fresh memory filled with `fill` (a canary: kernels must write every output they own). */
  fresh(bytes: number, fill = 0xa5, align = 64): number {
    const offset = this.alloc(bytes, align);
    this.u8(offset, bytes).fill(fill);
    return offset;
  }

  /** A copy of `length` float32 at offset. */
  getF32(offset: number, length: number): Float32Array {
    return this.f32(offset, length).slice();
  }

  /** A copy of `length` bytes at offset. */
  getBytes(offset: number, length: number): Uint8Array {
    return this.u8(offset, length).slice();
  }
}

export { rng } from "../random";

/** Standard normal samples from `rand` (Box-Muller). */
export function gaussian(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
}

/** Largest |a - b| / max(|b|, floor) over the arrays, and where it happens. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): { rel: number; at: number } {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let rel = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    const r = d === 0 ? 0 : d / Math.max(Math.abs(b[i]), floor);
    if (!(r <= rel)) { rel = r; at = i; } // NaN counts as the worst
  }
  return { rel, at };
}
