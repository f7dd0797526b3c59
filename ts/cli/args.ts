// A small argument parser for the CLI: `--name value`, `--name=value`, boolean `--flag`, positionals.
import { QwasmError } from "../errors";

export interface ParsedArgs {
  positionals: string[];
  options: Map<string, string | true>;
}

/** Parses argv; `booleans` lists the flags that take no value. */
export function parseArgs(argv: string[], booleans: readonly string[] = []): ParsedArgs {
  const positionals: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") { positionals.push(...argv.slice(i + 1)); break; }
    if (!arg.startsWith("--")) { positionals.push(arg); continue; }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (eq >= 0) options.set(name, arg.slice(eq + 1));
    else if (booleans.includes(name)) options.set(name, true);
    else if (i + 1 < argv.length) options.set(name, argv[++i]);
    else throw new QwasmError("INVALID_ARGUMENT", `option --${name} needs a value`);
  }
  return { positionals, options };
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
