// `qwasm tokenize MODEL (--text T | --file F | --jsonl) [--special]`: text to token ids, as JSON.
import { QwasmError } from "../../platform/errors";
import { Tokenizer, loadTokenizerFromModel, type TokenizerJSON } from "../../engine/tokenizer";
import { parseArgs, stringOption } from "../args";
import { readFile } from "../io";

export const help = `qwasm tokenize MODEL (--text T | --file F | --jsonl) [--special]

Prints the token ids of a text as a JSON array. MODEL is a GGUF file (path or URL; only its header
is read) or a Hugging Face tokenizer.json.

  --text T     the text
  --file F     the text is the content of file F (UTF-8)
  --jsonl      read one JSON string per line from stdin, print one JSON array per line
  --special    parse special-token text such as "<|im_start|>" into its id (off: it stays text)`;

/** The tokenizer of a GGUF model, or of a tokenizer.json file (path ending in .json). */
export async function loadTokenizerForCli(path: string): Promise<Tokenizer> {
  if (/\.json$/i.test(path)) {
    const bytes = await readFile(path);
    let json: TokenizerJSON;
    try {
      json = JSON.parse(new TextDecoder().decode(bytes)) as TokenizerJSON;
    } catch (e) {
      throw new QwasmError("TOKENIZER_INVALID", `${path} is not a JSON file: ${(e as Error).message}`, { cause: e });
    }
    return Tokenizer.fromTokenizerJSON(json);
  }
  return (await loadTokenizerFromModel(path)).tokenizer;
}

/** Lines of stdin, as they arrive. */
export async function* stdinLines(): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of process.stdin as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline).replace(/\r$/, "");
      buffered = buffered.slice(newline + 1);
    }
  }
  buffered += decoder.decode();
  if (buffered.length > 0) yield buffered;
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["special", "jsonl"], help);
  const text = stringOption(args, "text");
  const file = stringOption(args, "file");
  const jsonl = args.options.has("jsonl");
  if (args.positionals.length !== 1 || [text !== undefined, file !== undefined, jsonl].filter(Boolean).length !== 1) {
    throw new QwasmError("INVALID_ARGUMENT", "give MODEL and exactly one of --text, --file or --jsonl");
  }
  const tokenizer = await loadTokenizerForCli(args.positionals[0]);
  const special = args.options.has("special");
  if (!jsonl) {
    const input = text ?? new TextDecoder().decode(await readFile(file!));
    process.stdout.write(JSON.stringify(tokenizer.encode(input, { special })) + "\n");
    return 0;
  }
  let lineNumber = 0;
  for await (const line of stdinLines()) {
    lineNumber++;
    if (line.trim() === "") continue;
    let input: unknown;
    try {
      input = JSON.parse(line);
    } catch {
      input = undefined;
    }
    if (typeof input !== "string") {
      throw new QwasmError("INVALID_ARGUMENT", `stdin line ${lineNumber} is not a JSON string (--jsonl reads one per line)`);
    }
    process.stdout.write(JSON.stringify(tokenizer.encode(input, { special })) + "\n");
  }
  return 0;
}
