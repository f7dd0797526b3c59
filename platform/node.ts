// File access in Node (and Bun), behind the interfaces of ./index.
import { open } from "node:fs/promises";
import { availableParallelism, cpus } from "node:os";
import type { RandomAccessFile, WritableFile } from "./file-types";

export async function openFileNode(path: string | URL): Promise<RandomAccessFile> {
  const handle = await open(path, "r");
  const { size } = await handle.stat();
  return {
    size,
    async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
      // into: read there (a fresh buffer per chunk cost more than the read: 16 MiB zeroed and
      // faulted in each time, then collected; 1.6 GB of tensors took 5.7 s of a 10.7 s load)
      const bytes = into && into.length >= length ? into.subarray(0, length) : new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(bytes, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === length ? bytes : bytes.subarray(0, done);
    },
    close: () => handle.close(),
  };
}

export async function createFileNode(path: string | URL): Promise<WritableFile> {
  const handle = await open(path, "w");
  return {
    async write(chunk: Uint8Array): Promise<void> {
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.length - done);
        done += bytesWritten;
      }
    },
    close: () => handle.close(),
  };
}

/**
 * Turns on Node 20's --experimental-wasm-relaxed-simd for this process (Node 22 and later have it
 * on). Only for a process qwasm owns (the CLI): the flag is process-wide. Must run before any
 * WebAssembly is compiled. A runtime without node:v8, or one that drops the flag, keeps its own
 * default; the kernels' probe decides either way.
 */
export async function enableRelaxedSimdFlag(): Promise<void> {
  try {
    (await import("node:v8")).setFlagsFromString("--experimental-wasm-relaxed-simd");
  } catch {
    // no node:v8 here
  }
}

/** os.availableParallelism() (the CPUs this process may run on), or the CPU count before Node 18.14. */
export function availableCoresNode(): number {
  return typeof availableParallelism === "function" ? availableParallelism() : Math.max(1, cpus().length);
}

/** Free and total RAM (os.freemem is MemAvailable on Linux), and `ulimit -v` from /proc/self/limits. */
export async function hostMemoryNode(): Promise<{ available: number; total: number; limits?: string }> {
  const { freemem, totalmem } = await import("node:os");
  const { readFile } = await import("node:fs/promises");
  let limits: string | undefined;
  try {
    limits = await readFile("/proc/self/limits", "utf8");
  } catch {
    // not Linux: no address space limit known
  }
  return { available: freemem(), total: totalmem(), limits };
}
