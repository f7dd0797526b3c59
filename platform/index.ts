// The runtime adapters' front door: the only module that asks which runtime it is running in. Code
// elsewhere calls these functions and never touches `node:` modules or the `Deno` global itself.

import type { RandomAccessFile, WritableFile } from "./file-types";

export type { RandomAccessFile, WritableFile } from "./file-types";

export type RuntimeName = "deno" | "node" | "browser";

declare const Deno: unknown;

/** Which runtime this is, by feature test (Deno first: it also provides `process`; Bun reads as node). */
export function runtimeName(): RuntimeName {
  if (typeof Deno !== "undefined") return "deno";
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (proc?.versions?.node) return "node";
  return "browser";
}

function noFiles(path: string | URL): never {
  throw new Error(`cannot open ${String(path)}: this runtime has no file system; pass a URL, bytes or a stream`);
}

/** Opens a local file for reading (Node, Bun, Deno). */
export async function openFile(path: string | URL): Promise<RandomAccessFile> {
  switch (runtimeName()) {
    case "deno": return (await import("./deno")).openFileDeno(path);
    case "node": return (await import("./node")).openFileNode(path);
    default: return noFiles(path);
  }
}

/** Creates (or truncates) a local file for writing (Node, Bun, Deno). */
export async function createFile(path: string | URL): Promise<WritableFile> {
  switch (runtimeName()) {
    case "deno": return (await import("./deno")).createFileDeno(path);
    case "node": return (await import("./node")).createFileNode(path);
    default: return noFiles(path);
  }
}

/**
 * The cores this process may use: navigator.hardwareConcurrency where the runtime has it (Deno,
 * Bun, browsers, Node 21+), else Node's os.availableParallelism() (Node 20 has no navigator).
 */
export async function availableCores(): Promise<number> {
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  if (typeof n === "number" && n >= 1) return n;
  if (runtimeName() === "node") return (await import("./node")).availableCoresNode();
  return 1;
}
