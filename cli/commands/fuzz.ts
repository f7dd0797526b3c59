// qwasm fuzz: a mutation-fuzzing campaign against the GGUF reader and the Qwen2 loader's checks.
import { QwasmError } from "../../platform/errors";
import { formatFuzzTally, fuzzGGUF, synthFuzzSeeds, type FuzzSeed } from "../../tools/fuzz";
import { readQwen2Vocabulary } from "../../tools/synth";
import { numberOption, parseArgs } from "../args";
import { readFile } from "../io";

export const help = `qwasm fuzz [--cases N] [--seed S] [--seconds T] [--case K] [--timeout MS] [FILES...]

Fuzzes the GGUF reader: each case mutates a seed file (bit flips, boundary bytes, truncation, huge
counts and lengths, offsets past the end, overlapping tensors, wrong type ids, nested arrays,
duplicated and removed regions) and reads it from bytes, from a stream of random chunks and in small
prefixes, then reads its tensor data and maps the Qwen2 config, tensors and tokenizer. Every case
must end in success or a qwasm error, within the time limit, and the reads must agree.

Seeds: small synthetic Qwen2 models (one per weight type), plus FILES (e.g. ../shared/fixtures/mini/*.gguf).

  --cases N       cases to run (default 1000; no limit when only --seconds is given)
  --seconds T     stop starting cases after T seconds
  --seed S        campaign seed (default 1); case K is the same on every run with the same FILES
  --case K        run only case K (to replay a finding)
  --timeout MS    a case that takes longer is a finding (default 2000)

Prints the tally: ok, refusals by error code, crashes (non-qwasm exceptions, hangs, slow cases,
reads that disagree, oversized allocations) and the slowest case. Exits 1 if there was any crash.`;

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, [], help);
  const seconds = numberOption(args, "seconds");
  const replay = numberOption(args, "case");
  const cases = replay !== undefined ? 1 : numberOption(args, "cases", seconds !== undefined ? Number.MAX_SAFE_INTEGER : 1000)!;
  const seed = numberOption(args, "seed", 1)!;
  const caseTimeoutMs = numberOption(args, "timeout", 2000)!;
  for (const [name, v] of [["cases", cases], ["seed", seed], ["case", replay ?? 0]] as const) {
    if (!(Number.isSafeInteger(v) && v >= 0)) throw new QwasmError("INVALID_ARGUMENT", `option --${name} must be an integer >= 0, got ${v}`);
  }
  if (seconds !== undefined && !(seconds > 0)) throw new QwasmError("INVALID_ARGUMENT", `option --seconds must be > 0, got ${seconds}`);
  if (!(caseTimeoutMs > 0)) throw new QwasmError("INVALID_ARGUMENT", `option --timeout must be > 0, got ${caseTimeoutMs}`);

  const seeds: FuzzSeed[] = [];
  try {
    seeds.push(...await synthFuzzSeeds(await readQwen2Vocabulary()));
  } catch (error) {
    if (!(error instanceof QwasmError) || args.positionals.length === 0) throw error;
    process.stderr.write(`qwasm fuzz: no synthetic seeds (${error.message}); fuzzing FILES only\n`);
  }
  for (const path of args.positionals) seeds.push({ name: path.split(/[\\/]/).pop()!, bytes: await readFile(path) });

  process.stderr.write(`fuzzing ${seeds.length} seed files (${seeds.map((s) => s.name).join(", ")})\n`);
  const tally = await fuzzGGUF(seeds, {
    cases, seconds, seed, first: replay ?? 0, caseTimeoutMs,
    memory: () => { const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; },
    onFinding: (f) => process.stderr.write(`${f.kind.toUpperCase()} ${f.label}\n  ${f.message}\n`),
    onCase: replay === undefined ? undefined : (label, outcome, ms) => process.stdout.write(`${label} -> ${outcome} (${ms.toFixed(1)} ms)\n`),
  });
  process.stdout.write(formatFuzzTally(tally) + "\n");

  return Object.values(tally.findingCounts).some((n) => n > 0) ? 1 : 0;
}
