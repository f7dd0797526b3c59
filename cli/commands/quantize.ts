// qwasm quantize: a Qwen2 GGUF (F32, F16 or BF16) to a quantized one, byte-identical to llama-quantize
// without an imatrix (weights/quantize.ts).
import { numberOption, parseArgs, stringOption } from "../args";
import { QwasmError } from "../../platform/errors";
import { absolutePath, fileExists, openLocalFile, removeFile, renameFile } from "../../platform/files";
import { availableCores } from "../../platform/index";
import { progressReporter } from "../progress";
import { planSummary, quantizeFtype, quantizeGGUF } from "../../tools/quantize";

export const help = `usage: qwasm quantize IN.gguf OUT.gguf TYPE [--pure] [--output-type T] [--token-embedding-type T]
                      [--allow-requantize] [--threads N] [--quiet]

Quantizes a Qwen2 or Qwen2-MoE GGUF (F32, F16 or BF16 weights) as llama.cpp's llama-quantize does
without an importance matrix: the same per-tensor types and the same bytes. The output is written
tensor by tensor (into OUT.gguf.partial, renamed when complete), so a 7B F16 input needs the memory
of a few tensors; progress goes to stderr.

TYPE is an ftype mix or a plain type:
  Q4_K_M Q4_K_S Q5_K_M Q5_K_S Q3_K_M Q3_K_S Q3_K_L Q2_K Q6_K IQ4_NL
                     llama-quantize's mixes: more bits for attn_v, ffn_down and the output tensor in
                     chosen layers; rows that are not a multiple of 256 fall back (Q4_K -> Q5_0,
                     Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0); a tied token_embd is treated as
                     the output tensor (Q6_K, or Q8_0 when its rows do not fit Q6_K)
  Q4_K Q5_K Q3_K     the same as Q4_K_M, Q5_K_M, Q3_K_M (as in llama-quantize)
  Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
                     every matrix in the type, the output tensor (or tied token_embd) in Q6_K
  F16 BF16 F32       every matrix converted
Norms, biases, the MoE router (ffn_gate_inp) and every 1-D tensor stay as they are. IQ2_*, IQ3_XXS,
IQ1_* and Q2_K_S need an imatrix, which qwasm does not take.

  --pure                     every quantizable tensor in TYPE's base type, token_embd included
                             (llama-quantize --pure)
  --output-type T            type of output.weight (and of a tied token_embd): F32 F16 BF16 Q4_0
                             Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL
  --token-embedding-type T   type of token_embd.weight (same types)
  --allow-requantize         accept an input whose matrices are already quantized (they are
                             dequantized first; accuracy suffers)
  --threads N                workers quantizing rows in parallel (default: the cores); the output
                             is the same for any N
  --quiet                    no progress and no summary`;

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["pure", "allow-requantize", "quiet"], help);
  if (args.positionals.length !== 3) {
    throw new QwasmError("INVALID_ARGUMENT", `qwasm quantize needs IN.gguf OUT.gguf TYPE, got ${args.positionals.length} argument(s)`);
  }
  const [input, output, type] = args.positionals;
  const out = await absolutePath(output);
  if ((await absolutePath(input)).path === out.path) {
    throw new QwasmError("INVALID_ARGUMENT", `the output ${output} is the input: quantize reads the input while it writes, so they must differ`);
  }
  quantizeFtype(type); // an unknown or imatrix type is refused before any file is touched
  if (!(await fileExists(out.folder))) {
    throw new QwasmError("INVALID_ARGUMENT", `cannot write ${output}: the folder ${out.folder} does not exist`);
  }
  const file = await openLocalFile(input); // FILE_NOT_FOUND / FILE_UNREADABLE; quantizeGGUF closes it
  const quiet = args.options.has("quiet");
  const threads = numberOption(args, "threads") ?? await availableCores();
  const partial = `${output}.partial`;
  const started = performance.now();
  // progress only where it helps: files of 64 MiB and more
  const bar = quiet ? undefined : progressReporter("quantizing");
  const report = bar && ((written: number, total: number) => { if (total >= 64 * 2 ** 20) bar(written, total); });
  let result;
  try {
    result = await quantizeGGUF(file, partial, {
      type,
      pure: args.options.has("pure"),
      outputType: stringOption(args, "output-type"),
      tokenEmbeddingType: stringOption(args, "token-embedding-type"),
      allowRequantize: args.options.has("allow-requantize"),
      threads,
    }, report);
    await renameFile(partial, output);
  } catch (e) {
    await removeFile(partial);
    throw e;
  }
  if (!quiet) {
    const { plan, layout } = result;
    const fallbacks = plan.tensors.filter((t) => t.fallback);
    process.stderr.write(`${output}: ${plan.ftypeName} (general.file_type ${plan.ftype}), ${plan.tensors.length} tensors: ` +
      `${planSummary(plan)}; ${layout.fileSize} bytes, ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
    if (fallbacks.length > 0) {
      process.stderr.write(`  ${fallbacks.length} tensor(s) fell back to a type whose block fits their rows, e.g. ${fallbacks[0].name}: ${fallbacks[0].fallback}\n`);
    }
  }
  return 0;
}
