// qwasm run: generate from a prompt (raw text or a chat message), streaming text to stdout and the
// speed to stderr.
import { QwasmError } from "../../errors";
import { generate } from "../../engine/generate";
import { renderChatTokens } from "../../engine/chat-template";
import { numberOption, parseArgs, stringOption } from "../args";
import { loadForCli } from "../load";
import { resolveModelPath } from "../default-model";

export const help = `qwasm run [MODEL] (--prompt T | --chat T) [options]

Generates text. --prompt runs the raw text; --chat wraps it as a user message in the model's chat
template. MODEL defaults to the built-in synthetic model (created on first use).

  --max-tokens N     most tokens to generate (default 128)
  --temperature T    0 = greedy (default 0.8 for --chat, 0 for --prompt)
  --top-k K          keep the K most likely tokens (default 40)
  --top-p P          nucleus sampling (default 0.95)
  --min-p P          drop tokens below P x the top probability (default 0.05)
  --seed S           PRNG seed (default 0)
  --ignore-eos       keep going past end-of-generation tokens
  --context N        context length (default: the model's, at most 4096)
  --threads N        compute threads (default: the cores available)

Prefill and decode tokens/s go to stderr.`;

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["ignore-eos"]);
  const prompt = stringOption(args, "prompt");
  const chat = stringOption(args, "chat");
  if ((prompt === undefined) === (chat === undefined)) {
    throw new QwasmError("INVALID_ARGUMENT", "give exactly one of --prompt or --chat\n\n" + help);
  }
  const modelPath = await resolveModelPath(args.positionals[0]);
  const { model, tokenizer, chatTemplate, loadMs } = await loadForCli(modelPath, {
    contextLength: numberOption(args, "context"), threads: numberOption(args, "threads"),
  });
  const ids = chat !== undefined
    ? renderChatTokens(tokenizer, [{ role: "user", content: chat }], { template: chatTemplate })
    : tokenizer.encode(prompt!);

  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  let stats;
  for await (const chunk of generate(model, tokenizer, ids, {
    maxTokens: numberOption(args, "max-tokens", 128),
    temperature: numberOption(args, "temperature", chat !== undefined ? 0.8 : 0),
    topK: numberOption(args, "top-k", 40),
    topP: numberOption(args, "top-p", 0.95),
    minP: numberOption(args, "min-p", 0.05),
    seed: numberOption(args, "seed", 0),
    ignoreEos: args.options.has("ignore-eos"),
    signal: abort.signal,
  })) {
    if (chunk.text) process.stdout.write(chunk.text);
    if (chunk.stats) stats = chunk.stats;
  }
  process.off("SIGINT", onSigint);
  process.stdout.write("\n");
  if (stats) {
    const rate = (n: number, ms: number) => (ms > 0 ? (1000 * n) / ms : 0).toFixed(2);
    process.stderr.write(`load ${(loadMs / 1000).toFixed(2)} s; prefill ${stats.promptTokens} tokens, ` +
      `${rate(stats.promptTokens, stats.prefillMs)} tokens/s; decode ${stats.completionTokens} tokens, ` +
      `${rate(Math.max(0, stats.completionTokens - 1), stats.decodeMs)} tokens/s (${model.forward.threads} thread${model.forward.threads > 1 ? "s" : ""})\n`);
  }
  await model.dispose();
  return 0;
}
