// File-system helpers beyond reading and writing (Node and Deno): exists, rename, make a folder.
import { runtimeName } from "./index";

declare const Deno: {
  stat(path: string): Promise<unknown>;
  rename(from: string, to: string): Promise<void>;
  mkdir(path: string, options: { recursive: boolean }): Promise<void>;
};

export async function fileExists(path: string): Promise<boolean> {
  try {
    if (runtimeName() === "deno") await Deno.stat(path);
    else await (await import("node:fs/promises")).stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Moves a file into place (atomic on one file system: readers never see a half-written file). */
export async function renameFile(from: string, to: string): Promise<void> {
  if (runtimeName() === "deno") await Deno.rename(from, to);
  else await (await import("node:fs/promises")).rename(from, to);
}

export async function makeDir(path: string): Promise<void> {
  if (runtimeName() === "deno") await Deno.mkdir(path, { recursive: true });
  else await (await import("node:fs/promises")).mkdir(path, { recursive: true });
}
