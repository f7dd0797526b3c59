// qwasm run: generate from a prompt (raw text or a chat message), streaming text to stdout and the
// speed to stderr.
import { kernelBuild } from "../../compute/kernels/module";
import { QwasmError } from "../../platform/errors";
import { constraintText } from "../../engine/constrain/request";
import { createEngine } from "../../engine/engine";
import { numberOption, parseArgs, stringOption, kvTypeOption, maxShardBytesOption } from "../args";
import { progressBar } from "../load";
import { resolveModelPath } from "../default-model";
import { readFile } from "../io";
import type { RequestOptions } from "../../engine/types";

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
  --json-schema FILE constrain the output to JSON matching the JSON Schema in FILE (stops when the
                     value is complete; an unsupported keyword is an UNSUPPORTED_SCHEMA error)
  --grammar FILE     constrain the output to the GBNF grammar in FILE (llama.cpp's notation, start
                     rule root)
  --context N        context length (default: the model's, at most 4096)
  --kv-type T        KV cache type: f32 (default), f16 (half the memory) or q8_0 (about a quarter)
  --threads N        compute threads (default: the cores available)
  --oversubscribe    allow more threads than cores (default: capped at the cores, with a warning)
  --max-shard-mb N   most MiB of one WebAssembly memory (default and at most 4096); a bigger model is
                     placed over several by layers (smaller values force more)

Prefill and decode tokens/s go to stderr.`;

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["ignore-eos", "oversubscribe"], help);
  const prompt = stringOption(args, "prompt");
  const chat = stringOption(args, "chat");
  if ((prompt === undefined) === (chat === undefined)) {
    throw new QwasmError("INVALID_ARGUMENT", "give exactly one of --prompt or --chat");
  }
  const constraint = await constraintOptions(stringOption(args, "json-schema"), stringOption(args, "grammar"));
  const modelPath = await resolveModelPath(args.positionals[0]);
  const t0 = performance.now();
  const engine = await createEngine(modelPath, {
    maxSequences: 1,
    contextLength: numberOption(args, "context"),
    kvType: kvTypeOption(args),
    threads: numberOption(args, "threads"), oversubscribe: args.options.has("oversubscribe"),
    maxShardBytes: maxShardBytesOption(args),
    onProgress: progressBar(),
  });
  const loadMs = performance.now() - t0;
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  try {
    const options = {
      maxTokens: numberOption(args, "max-tokens", 128),
      temperature: numberOption(args, "temperature", chat !== undefined ? 0.8 : 0),
      topK: numberOption(args, "top-k", 40),
      topP: numberOption(args, "top-p", 0.95),
      minP: numberOption(args, "min-p", 0.05),
      seed: numberOption(args, "seed", 0),
      ignoreEos: args.options.has("ignore-eos"),
      signal: abort.signal,
      ...constraint,
    };
    const stream = chat !== undefined ? engine.chat([{ role: "user", content: chat }], options) : engine.generate(prompt!, options);
    for await (const delta of stream) process.stdout.write(delta.text);
    const result = await stream;
    process.stdout.write("\n");
    const { promptTokens, completionTokens } = result.usage;
    const prefillMs = result.timings.timeToFirstTokenMs;
    const decodeMs = result.timings.totalMs - prefillMs;
    const rate = (n: number, ms: number) => (ms > 0 ? (1000 * n) / ms : 0).toFixed(2);
    const threads = engine.info.threads;
    process.stderr.write(`load ${(loadMs / 1000).toFixed(2)} s; prefill ${promptTokens} tokens, ` +
      `${rate(promptTokens, prefillMs)} tokens/s; decode ${completionTokens} tokens, ` +
      `${rate(Math.max(0, completionTokens - 1), decodeMs)} tokens/s (${threads} thread${threads > 1 ? "s" : ""}, ` +
      `${await kernelBuild()} kernels); ` +
      `finish: ${result.finishReason}\n`);
  } finally {
    process.off("SIGINT", onSigint);
    await engine.dispose();
  }
  return 0;
}

/** --json-schema FILE / --grammar FILE as request options (read and checked before the model loads). */
export async function constraintOptions(schemaFile: string | undefined, grammarFile: string | undefined): Promise<Pick<RequestOptions, "responseFormat" | "grammar">> {
  if (schemaFile !== undefined && grammarFile !== undefined) throw new QwasmError("INVALID_ARGUMENT", "give --json-schema or --grammar, not both");
  if (grammarFile !== undefined) return { grammar: new TextDecoder().decode(await readFile(grammarFile)) };
  if (schemaFile === undefined) return {};
  let schema: unknown;
  try {
    schema = JSON.parse(new TextDecoder().decode(await readFile(schemaFile)));
  } catch (e) {
    if (e instanceof QwasmError) throw e;
    throw new QwasmError("INVALID_ARGUMENT", `--json-schema ${schemaFile} is not JSON: ${(e as Error).message}`);
  }
  const responseFormat = { type: "json_schema" as const, json_schema: { name: "schema", schema: schema as object, strict: true } };
  constraintText({ responseFormat }); // an unsupported keyword fails now, not after loading the model
  return { responseFormat };
}
