// A small strict argument parser for the CLI: `--name value`, `--name=value`, boolean `--flag`,
// positionals. A command passes its help text: the options it documents are the options it takes, so
// a misspelt one (`--max-token 3`) is refused with the closest known name instead of being ignored.
import { QwasmError } from "../platform/errors";

export interface ParsedArgs {
  positionals: string[];
  options: Map<string, string | true>;
}

/**
 * Parses argv; `booleans` lists the flags that take no value. With `help`, every `--option` must be
 * one that the help text names (else INVALID_ARGUMENT with a suggestion); without, any is kept.
 */
export function parseArgs(argv: string[], booleans: readonly string[] = [], help?: string): ParsedArgs {
  const known = help === undefined ? undefined : optionsOf(help, booleans);
  const positionals: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") { positionals.push(...argv.slice(i + 1)); break; }
    if (!arg.startsWith("--")) { positionals.push(arg); continue; }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (known && !known.has(name)) throw unknownOption(name, known, help!);
    if (eq >= 0) options.set(name, arg.slice(eq + 1));
    else if (booleans.includes(name)) options.set(name, true);
    else if (i + 1 < argv.length) options.set(name, argv[++i]);
    else throw new QwasmError("INVALID_ARGUMENT", `option --${name} needs a value`);
  }
  return { positionals, options };
}

/** The command a help text is about: "run" for "qwasm run [MODEL] ...". */
export function commandOf(help: string): string {
  return /qwasm ([a-z][a-z-]*)/.exec(help)?.[1] ?? "";
}

/** Every `--name` a help text mentions, plus the boolean flags. */
function optionsOf(help: string, booleans: readonly string[]): Set<string> {
  const names = new Set(booleans);
  for (const m of help.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)) names.add(m[1]);
  names.add("help");
  return names;
}

function unknownOption(name: string, known: Set<string>, help: string): QwasmError {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) { best = candidate; bestDistance = d; }
  }
  // A suggestion only when it is close: at most a third of the name's letters differ.
  const close = best !== undefined && bestDistance <= Math.max(1, Math.floor(name.length / 3));
  return new QwasmError("INVALID_ARGUMENT",
    `unknown option --${name}${close ? `; did you mean --${best}?` : ""} (see qwasm ${commandOf(help)} --help)`);
}

/** Levenshtein distance: insertions, deletions and substitutions. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length];
}

export function stringOption(args: ParsedArgs, name: string): string | undefined {
  const v = args.options.get(name);
  if (v === true) throw new QwasmError("INVALID_ARGUMENT", `option --${name} needs a value`);
  return v;
}

export function numberOption(args: ParsedArgs, name: string, fallback?: number): number | undefined {
  const v = stringOption(args, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new QwasmError("INVALID_ARGUMENT", `option --${name} must be a number, got "${v}"`);
  return n;
}

const KV_TYPES = ["f32", "f16", "q8_0"] as const;

/** --kv-type: the KV cache's element type (default f32, as llama.cpp's conformance fixtures were made;
 *  f16 halves the cache, q8_0 takes about a quarter). */
export function kvTypeOption(args: ParsedArgs): (typeof KV_TYPES)[number] | undefined {
  const v = stringOption(args, "kv-type");
  if (v === undefined) return undefined;
  const t = KV_TYPES.find((k) => k === v);
  if (!t) throw new QwasmError("INVALID_ARGUMENT", `option --kv-type must be one of ${KV_TYPES.join(", ")}, got "${v}"`);
  return t;
}

/** --max-shard-mb N: most MiB of one WebAssembly memory (1..4096), as LoadOptions.maxShardBytes. */
export function maxShardBytesOption(args: ParsedArgs): number | undefined {
  const mb = numberOption(args, "max-shard-mb");
  if (mb === undefined) return undefined;
  if (!Number.isInteger(mb) || mb < 1 || mb > 4096) {
    throw new QwasmError("INVALID_ARGUMENT", `option --max-shard-mb must be a whole number of MiB from 1 to 4096 (one WebAssembly memory), got ${mb}`);
  }
  return mb * 2 ** 20;
}
