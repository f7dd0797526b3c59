// Loads the compiled AssemblyScript kernels over a shared WebAssembly.Memory.
// The bytes are embedded by scripts/build.mjs (build/kernels-wasm.gen.ts), so the same code works in
// Node, Deno, browsers and bundles without a file read.
import { KERNELS_WASM_BASE64 } from "../../build/kernels-wasm.gen";

/** The kernel exports: every function takes and returns numbers (byte offsets, sizes, scalars). */
export type Kernels = Record<string, (...args: number[]) => number>;

let compiled: Promise<WebAssembly.Module> | undefined;

function decodeBase64(text: string): Uint8Array {
  if (typeof atob === "function") {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  throw new Error("no base64 decoder (atob) in this runtime");
}

/** The compiled kernel module, compiled once per process and shared by every instance. */
export function kernelModule(): Promise<WebAssembly.Module> {
  compiled ??= WebAssembly.compile(decodeBase64(KERNELS_WASM_BASE64) as BufferSource);
  return compiled;
}

/** A shared memory that the kernels can import; sizes in 64 KiB pages (65536 pages = 4 GiB). */
export function createSharedMemory(initialPages: number, maximumPages = 65536): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: initialPages, maximum: maximumPages, shared: true });
}

/** Instantiates the kernels over `memory`. Instantiation writes nothing into the memory. */
export async function instantiateKernels(memory: WebAssembly.Memory): Promise<Kernels> {
  const instance = await WebAssembly.instantiate(await kernelModule(), {
    env: {
      memory,
      abort: () => { throw new Error("kernel abort"); },
    },
  });
  return instance.exports as unknown as Kernels;
}
