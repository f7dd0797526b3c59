// qwasm logits: the logits of every position of a token-id prompt, as raw float32 or top-10 JSON.
import { QwasmError } from "../../platform/errors";
import { prefill } from "../../compute/model/model";
import { createFile } from "../../platform/index";
import { maxShardBytesOption, numberOption, parseArgs, stringOption } from "../args";
import { loadForCli } from "../load";
import { readFile } from "../io";

export const help = `qwasm logits MODEL (--ids 1,2,3 | --ids-file F.json) [--out F.f32] [--threads N] [--oversubscribe] [--experts]
            [--max-shard-mb N]

Runs the token ids through the model in one pass (no BOS is added) and prints, per position, the
top 10 logits as JSON. With --out, writes the logits of every position instead: n_tokens x n_vocab
float32 little-endian, position-major.
With --experts (qwen2moe models), the JSON also holds "experts": per layer and position, the experts
chosen (by descending weight) and the router logits of all experts, sorted descending.
--max-shard-mb N places the model over WebAssembly memories of at most N MiB (default 4096).`;

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["oversubscribe", "experts"], help);
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
    maxShardBytes: maxShardBytesOption(args),
  });
  const wantExperts = args.options.has("experts");
  if (wantExperts && !model.config.moe) {
    await model.dispose();
    throw new QwasmError("INVALID_ARGUMENT", `--experts needs a mixture-of-experts (qwen2moe) model; this one is ${model.config.architecture}`);
  }
  const experts = wantExperts ? expertRouting(model.config.nLayers, model.config.moe!.nExperts, model.config.moe!.nExpertsUsed) : undefined;
  const logits = await prefill(model.forward, ids, 0, true, experts && (() => experts.add(model.forward.lastExperts()!)));
  const vocab = model.config.vocabSize;
  const out = stringOption(args, "out");
  if (out !== undefined) {
    const file = await createFile(out);
    await file.write(new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
    await file.close();
    process.stderr.write(`wrote ${ids.length} x ${vocab} float32 logits to ${out}\n`);
    if (experts) process.stdout.write(JSON.stringify({ experts: experts.layers }) + "\n");
  } else {
    const positions = [];
    for (let i = 0; i < ids.length; i++) {
      const row = logits.subarray(i * vocab, (i + 1) * vocab);
      const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b).slice(0, 10);
      positions.push({ pos: i, token: ids[i], top: order.map((id) => [id, row[id]]) });
    }
    process.stdout.write(JSON.stringify({ n_vocab: vocab, positions, ...(experts ? { experts: experts.layers } : {}) }) + "\n");
  }
  await model.dispose();
  return 0;
}

/** Collects the routing of each step (Qwen2Forward.lastExperts) per layer, position after position. */
function expertRouting(nLayers: number, nExperts: number, nUsed: number) {
  const layers = Array.from({ length: nLayers }, (_, layer) => ({
    layer, n_expert: nExperts, n_used: nUsed, positions: [] as { experts: number[]; router: [number, number][] }[],
  }));
  return {
    layers,
    add({ nTok, experts, router }: { nTok: number; experts: Int32Array; router: Float32Array }) {
      for (const l of layers) {
        for (let t = 0; t < nTok; t++) {
          const row = (l.layer * nTok + t);
          const logits = Array.from(router.subarray(row * nExperts, (row + 1) * nExperts), (v, e): [number, number] => [e, v]);
          l.positions.push({
            experts: Array.from(experts.subarray(row * nUsed, (row + 1) * nUsed)),
            router: logits.sort((a, b) => b[1] - a[1] || a[0] - b[0]),
          });
        }
      }
    },
  };
}

function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
