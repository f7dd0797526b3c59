// qwasm logits: the logits of every position of a token-id prompt, as raw float32 or top-10 JSON.
import { QwasmError } from "../../errors";
import { prefill } from "../../model/model";
import { createFile } from "../../runtime/index";
import { numberOption, parseArgs, stringOption } from "../args";
import { loadForCli } from "../load";
import { readFile } from "../io";

export const help = `qwasm logits MODEL (--ids 1,2,3 | --ids-file F.json) [--out F.f32] [--threads N] [--oversubscribe]

Runs the token ids through the model in one pass (no BOS is added) and prints, per position, the
top 10 logits as JSON. With --out, writes the logits of every position instead: n_tokens x n_vocab
float32 little-endian, position-major.`;

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["oversubscribe"], help);
  const [modelPath] = args.positionals;
  if (!modelPath) throw new QwasmError("INVALID_ARGUMENT", "logits needs a MODEL path");
  const idsText = stringOption(args, "ids");
  const idsFile = stringOption(args, "ids-file");
  if ((idsText === undefined) === (idsFile === undefined)) {
    throw new QwasmError("INVALID_ARGUMENT", "give exactly one of --ids or --ids-file");
  }
  const ids: unknown = idsText !== undefined
    // An empty item is no id (Number("") would be token 0).
    ? idsText.split(",").map((s) => (s.trim() === "" ? NaN : Number(s.trim())))
    : parseJSON(new TextDecoder().decode(await readFile(idsFile!)));
  if (!Array.isArray(ids) || ids.length === 0 || !ids.every((v) => Number.isInteger(v) && v >= 0)) {
    const given = idsText !== undefined ? `--ids ${JSON.stringify(idsText.slice(0, 80))}` : `--ids-file ${idsFile}`;
    throw new QwasmError("INVALID_ARGUMENT", `${given}: the ids must be a non-empty list of non-negative integers`);
  }
  const { model } = await loadForCli(modelPath, {
    contextLength: ids.length, maxTokens: Math.min(ids.length, 512), threads: numberOption(args, "threads"), oversubscribe: args.options.has("oversubscribe"),
  });
  const logits = await prefill(model.forward, ids, 0, true);
  const vocab = model.config.vocabSize;
  const out = stringOption(args, "out");
  if (out !== undefined) {
    const file = await createFile(out);
    await file.write(new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
    await file.close();
    process.stderr.write(`wrote ${ids.length} x ${vocab} float32 logits to ${out}\n`);
  } else {
    const positions = [];
    for (let i = 0; i < ids.length; i++) {
      const row = logits.subarray(i * vocab, (i + 1) * vocab);
      const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b).slice(0, 10);
      positions.push({ pos: i, token: ids[i], top: order.map((id) => [id, row[id]]) });
    }
    process.stdout.write(JSON.stringify({ n_vocab: vocab, positions }) + "\n");
  }
  await model.dispose();
  return 0;
}

function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
