// Loading a model for a CLI command: the weights into the shared memory, the tokenizer from the same
// file's metadata, and a progress bar on stderr when it is a terminal.
import type { GGUFReadProgress } from "../weights/gguf/reader";
import { loadQwen2, type LoadOptions, type Qwen2Model } from "../compute/model/model";
import { tokenizerFromMetadata, type Tokenizer } from "../engine/tokenizer";
import { chatTemplateFromMetadata } from "../engine/tokenizer/from-model";
import { progressReporter } from "./progress";

export interface CliModel {
  model: Qwen2Model;
  tokenizer: Tokenizer;
  chatTemplate?: string;
  loadMs: number;
}

/** The loading bar on stderr when it is a terminal (a pipe or a log gets nothing). */
export function progressBar(): ((p: GGUFReadProgress) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  const report = progressReporter("loading");
  return (p) => report(p.loadedBytes, p.totalBytes);
}

export async function loadForCli(path: string, options: LoadOptions = {}): Promise<CliModel> {
  const t0 = performance.now();
  const model = await loadQwen2(path, { onProgress: progressBar(), ...options });
  const tokenizer = tokenizerFromMetadata(model.file.metadata);
  return { model, tokenizer, chatTemplate: chatTemplateFromMetadata(model.file.metadata), loadMs: performance.now() - t0 };
}
