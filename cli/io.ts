// Small file helpers for CLI commands, on top of the runtime adapters.
import { openLocalFile } from "../platform/files";

/** The whole content of a (small) file; FILE_NOT_FOUND / FILE_UNREADABLE naming the path. */
export async function readFile(path: string): Promise<Uint8Array> {
  const file = await openLocalFile(path);
  try {
    return await file.read(0, file.size);
  } finally {
    await file.close();
  }
}
