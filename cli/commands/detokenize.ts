// `qwasm detokenize MODEL (--ids 1,2,3 | --jsonl) [--skip-special]`: token ids back to text.
import { QwasmError } from "../../platform/errors";
import { parseArgs, stringOption } from "../args";
import { loadTokenizerForCli, stdinLines } from "./tokenize";

export const help = `qwasm detokenize MODEL (--ids 1,2,3 | --jsonl) [--skip-special]

Prints the text of token ids. MODEL is a GGUF file (path or URL; only its header is read) or a
Hugging Face tokenizer.json.

  --ids L          comma-separated ids (a JSON array works too)
  --jsonl          read one JSON array of ids per line from stdin, print one JSON string per line
  --skip-special   leave out control tokens such as <|im_end|> (default: render their text)`;

function parseIds(text: string, where: string): number[] {
  const trimmed = text.trim();
  const parts = trimmed.startsWith("[") ? safeJSON(trimmed) : trimmed === "" ? [] : trimmed.split(/[\s,]+/).map(Number);
  if (!Array.isArray(parts) || !parts.every((id) => Number.isInteger(id) && id >= 0)) {
    throw new QwasmError("INVALID_ARGUMENT", `${where} is not a list of token ids: ${JSON.stringify(text.slice(0, 80))}`);
  }
  return parts as number[];
}

function safeJSON(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["skip-special", "jsonl"], help);
  const ids = stringOption(args, "ids");
  const jsonl = args.options.has("jsonl");
  if (args.positionals.length !== 1 || (ids !== undefined) === jsonl) {
    throw new QwasmError("INVALID_ARGUMENT", "give MODEL and exactly one of --ids or --jsonl");
  }
  const tokenizer = await loadTokenizerForCli(args.positionals[0]);
  const skipSpecial = args.options.has("skip-special");
  if (!jsonl) {
    process.stdout.write(tokenizer.decode(parseIds(ids!, "--ids"), { skipSpecial }) + "\n");
    return 0;
  }
  let lineNumber = 0;
  for await (const line of stdinLines()) {
    lineNumber++;
    if (line.trim() === "") continue;
    process.stdout.write(JSON.stringify(tokenizer.decode(parseIds(line, `stdin line ${lineNumber}`), { skipSpecial })) + "\n");
  }
  return 0;
}
