// Small file helpers for CLI commands, on top of the runtime adapters.
import { openFile } from "../runtime/index";

/** The whole content of a (small) file. */
export async function readFile(path: string): Promise<Uint8Array> {
  const file = await openFile(path);
  try {
    return await file.read(0, file.size);
  } finally {
    await file.close();
  }
}
