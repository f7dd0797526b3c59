// File access in Deno, behind the interfaces of ./index.
import type { RandomAccessFile, WritableFile } from "./file-types";

// The few Deno APIs used here, declared so that the project type-checks without Deno's types.
interface DenoFsFile {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  seek(offset: number, whence: number): Promise<number>;
  stat(): Promise<{ size: number }>;
  close(): void;
}
declare const Deno: {
  open(path: string | URL, options: { read?: boolean; write?: boolean; create?: boolean; truncate?: boolean }): Promise<DenoFsFile>;
  SeekMode: { Start: number };
  systemMemoryInfo?(): { total: number; free: number; available: number };
  readTextFile?(path: string): Promise<string>;
};

export async function openFileDeno(path: string | URL): Promise<RandomAccessFile> {
  const file = await Deno.open(path, { read: true });
  const { size } = await file.stat();
  // seek + read is not atomic: reads are queued one after another.
  let queue: Promise<unknown> = Promise.resolve();
  async function readAt(offset: number, length: number): Promise<Uint8Array> {
    const bytes = new Uint8Array(length);
    await file.seek(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < length) {
      const n = await file.read(bytes.subarray(done));
      if (n === null || n === 0) break;
      done += n;
    }
    return done === length ? bytes : bytes.subarray(0, done);
  }
  return {
    size,
    read(offset: number, length: number): Promise<Uint8Array> {
      const result = queue.then(() => readAt(offset, length));
      queue = result.catch(() => undefined);
      return result;
    },
    close: async () => file.close(),
  };
}

export async function createFileDeno(path: string | URL): Promise<WritableFile> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  return {
    async write(chunk: Uint8Array): Promise<void> {
      let done = 0;
      while (done < chunk.length) done += await file.write(chunk.subarray(done));
    },
    close: async () => file.close(),
  };
}

/** Deno.systemMemoryInfo (needs --allow-sys) and /proc/self/limits (needs --allow-read); what is not
 *  allowed stays unknown. */
export async function hostMemoryDeno(): Promise<{ available?: number; total?: number; limits?: string }> {
  let info: { total: number; available: number } | undefined;
  try {
    info = Deno.systemMemoryInfo?.();
  } catch {
    // no --allow-sys
  }
  let limits: string | undefined;
  try {
    limits = await Deno.readTextFile?.("/proc/self/limits");
  } catch {
    // no --allow-read, or not Linux
  }
  return { available: info?.available, total: info?.total, limits };
}
