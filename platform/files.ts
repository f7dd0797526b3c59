// File-system helpers beyond reading and writing (Node and Deno): exists, rename, make a folder, and
// opening a file with its failures as typed errors.
import { QwasmError } from "./errors";
import { openFile, runtimeName, type RandomAccessFile } from "./index";

declare const Deno: {
  stat(path: string | URL): Promise<unknown>;
  rename(from: string, to: string): Promise<void>;
  mkdir(path: string, options: { recursive: boolean }): Promise<void>;
  remove(path: string): Promise<void>;
};

export async function fileExists(path: string | URL): Promise<boolean> {
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

/** Removes a file; nothing happens when there is none. */
export async function removeFile(path: string): Promise<void> {
  if (runtimeName() === "deno") await Deno.remove(path).catch(() => {});
  else await (await import("node:fs/promises")).rm(path, { force: true });
}

/** The absolute, normalized path, and its folder (to compare two paths, to check a folder exists). */
export async function absolutePath(path: string): Promise<{ path: string; folder: string }> {
  const { resolve, dirname } = await import("node:path"); // Deno has node:path too
  const absolute = resolve(path);
  return { path: absolute, folder: dirname(absolute) };
}

export async function makeDir(path: string): Promise<void> {
  if (runtimeName() === "deno") await Deno.mkdir(path, { recursive: true });
  else await (await import("node:fs/promises")).mkdir(path, { recursive: true });
}

/**
 * Opens a local file for reading, with the failures a user can cause (no such file, a directory, no
 * permission) as QwasmErrors that name the path: FILE_NOT_FOUND or FILE_UNREADABLE. Node opens a
 * directory without complaint and fails at the first read, so reads are checked the same way.
 */
export async function openLocalFile(path: string | URL): Promise<RandomAccessFile> {
  let file: RandomAccessFile;
  try {
    file = await openFile(path);
  } catch (e) {
    throw fileError(path, e);
  }
  return {
    size: file.size,
    read: (offset, length, into) => file.read(offset, length, into).catch((e: unknown) => { throw fileError(path, e); }),
    close: () => file.close(),
  };
}

/** A file-system error (Node's `code`, Deno's error class name) as a QwasmError naming the path. */
export function fileError(path: string | URL, error: unknown): QwasmError {
  if (error instanceof QwasmError) return error;
  const shown = path instanceof URL && path.protocol === "file:" ? decodeURIComponent(path.pathname) : String(path);
  const { code, name } = (error ?? {}) as { code?: unknown; name?: unknown };
  const reason = code === "ENOENT" || name === "NotFound" ? "no such file"
    : code === "EISDIR" || name === "IsADirectory" ? "it is a directory, not a file"
    : code === "EACCES" || code === "EPERM" || name === "PermissionDenied" ? "permission denied"
    : code === "ENOTDIR" || name === "NotADirectory" ? "a part of the path is not a directory"
    : undefined;
  const detail = reason ?? firstLine(error);
  return new QwasmError(code === "ENOENT" || name === "NotFound" ? "FILE_NOT_FOUND" : "FILE_UNREADABLE",
    `cannot read ${shown}: ${detail}${typeof code === "string" && reason ? ` (${code})` : ""}`, { cause: error });
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}
