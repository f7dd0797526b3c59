// `qwasm inspect MODEL [--json] [--full]`: a GGUF file's metadata and tensor table, with totals.
// Only the header is read, so this is quick even for a large model or a URL.
import { parseArgs } from "../args";
import { errorReport } from "../errors";
import { GGUFValueType, valueTypeName, type GGUFArray, type GGUFEntry } from "../../weights/gguf/metadata";
import { openGGUF, type GGUFFile } from "../../weights/gguf/reader";
import { typeInfo } from "../../weights/gguf/types";

export const help = `usage: qwasm inspect MODEL [--json] [--full]

Prints the metadata and the tensor table (name, type, dims, bytes) of a GGUF file, with totals.
MODEL is a file path or an http(s) URL; only the header is read. For a split model (gguf-split's
NAME-00001-of-00003.gguf, ...; give any part) it lists the parts, and the tensor table says which
part holds each tensor.

  --json   print one JSON object instead of text
  --full   print long arrays and strings in full instead of their beginning`;

/** An extra section (the integrator adds the Qwen2 config this way). */
export interface InspectSection {
  title: string;
  /** Lines for the text report. */
  text: string[];
  /** The value in the JSON report, under `title` in camelCase ("qwen2 config" → "qwen2Config"). */
  json: unknown;
}

export interface InspectHooks {
  describeConfig?: (file: GGUFFile) => InspectSection | undefined;
  /** Where the report goes; default console.log. */
  print?: (text: string) => void;
}

/** Array items shown before "…" unless --full. */
const ARRAY_HEAD = 8;
/** String characters shown in the text report unless --full. */
const STRING_HEAD = 160;

export async function main(argv: string[], hooks: InspectHooks = {}): Promise<number> {
  const print = hooks.print ?? ((text: string) => console.log(text));
  let args;
  try {
    args = parseArgs(argv, ["json", "full", "help"], help);
  } catch (e) {
    console.error(`qwasm inspect: ${(e as Error).message}`);
    return 2;
  }
  if (args.options.has("help")) {
    print(help);
    return 0;
  }
  if (args.positionals.length !== 1) {
    console.error(`qwasm inspect: give one MODEL, got ${args.positionals.length} (see qwasm inspect --help)`);
    return 2;
  }
  const path = args.positionals[0];
  const full = args.options.has("full");

  let file: GGUFFile;
  try {
    file = await openGGUF(path);
  } catch (e) {
    // A bad file, or one that cannot be opened (no such file, a directory, HTTP errors): the
    // message names the path; one line, like every command's errors (cli/errors.ts).
    console.error(errorReport(e, process.env.QWASM_DEBUG === "1" || process.argv.includes("--verbose")).trimEnd());
    return 1;
  }
  try {
    const extra = hooks.describeConfig?.(file);
    if (args.options.has("json")) print(JSON.stringify(jsonReport(path, file, full, extra), jsonReplacer, 2));
    else print(textReport(path, file, full, extra).join("\n"));
    return 0;
  } finally {
    await file.close();
  }
}

// --- totals

interface TypeTotal { tensors: number; elements: number; bytes: number }

function totalsOf(file: GGUFFile) {
  const byType = new Map<string, TypeTotal>();
  let elements = 0;
  let bytes = 0;
  for (const t of file.tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const name = typeLabel(t.type);
    const total = byType.get(name) ?? { tensors: 0, elements: 0, bytes: 0 };
    total.tensors++;
    total.elements += n;
    total.bytes += t.nbytes;
    byType.set(name, total);
    elements += n;
    bytes += t.nbytes;
  }
  return { tensors: file.tensors.length, elements, bytes, byType };
}

function typeLabel(type: number): string {
  return typeInfo(type)?.name ?? `type ${type}`;
}

// --- values

/** The shortest decimal that reads back as the same float32. */
function formatF32(v: number): string {
  for (let digits = 1; digits < 9; digits++) {
    const s = v.toPrecision(digits);
    if (Math.fround(Number(s)) === v) return String(Number(s));
  }
  return String(v);
}

function formatScalar(type: number, value: unknown, full: boolean): string {
  if (type === GGUFValueType.STRING) {
    const s = value as string;
    const shown = JSON.stringify(full || s.length <= STRING_HEAD ? s : s.slice(0, STRING_HEAD));
    return full || s.length <= STRING_HEAD ? shown : `${shown}… (${s.length} chars)`;
  }
  if (type === GGUFValueType.FLOAT32) return formatF32(value as number);
  return String(value);
}

function formatArray(array: GGUFArray, full: boolean): string {
  const n = array.items.length;
  const shown = full ? n : Math.min(n, ARRAY_HEAD);
  const parts: string[] = [];
  for (let i = 0; i < shown; i++) {
    const item = array.items[i];
    parts.push(array.itemType === GGUFValueType.ARRAY
      ? formatArray(item as GGUFArray, full)
      : formatScalar(array.itemType, item, full));
  }
  if (shown < n) parts.push("…");
  return `[${valueTypeName(array.itemType)} × ${n}] ${parts.join(", ")}`;
}

function formatEntry(entry: GGUFEntry, full: boolean): string {
  return entry.type === GGUFValueType.ARRAY
    ? formatArray(entry.value as GGUFArray, full)
    : formatScalar(entry.type, entry.value, full);
}

function jsonArray(array: GGUFArray, full: boolean): unknown {
  const n = array.items.length;
  const items = Array.from(array.items.slice(0, full ? n : ARRAY_HEAD) as ArrayLike<unknown>,
    (item) => (array.itemType === GGUFValueType.ARRAY ? jsonArray(item as GGUFArray, full) : item));
  return { itemType: valueTypeName(array.itemType), length: n, items, ...(items.length < n ? { truncated: true } : {}) };
}

/** bigints become strings (JSON has no 64-bit integers). */
function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

// --- reports

/** A JSON key without spaces: "qwen2 config" → "qwen2Config". */
function camelCase(title: string): string {
  return title.trim().split(/\s+/).map((w, i) => (i === 0 ? w : w[0].toUpperCase() + w.slice(1))).join("");
}

function textReport(path: string, file: GGUFFile, full: boolean, extra?: InspectSection): string[] {
  const lines: string[] = [];
  const size = file.fileSize === undefined ? "size unknown" : `${file.fileSize} bytes`;
  const split = file.parts.length > 1;
  lines.push(split
    ? `${path}: GGUF v${file.version}, split in ${file.parts.length} parts, ${size} in all`
    : `${path}: GGUF v${file.version}, ${size}, alignment ${file.alignment}, tensor data at ${file.dataOffset}`);
  if (split) {
    lines.push("", `parts (${file.parts.length}):`);
    const rows = file.parts.map((p) => [String(p.no + 1), p.name, String(p.tensors.length), String(p.tensorDataBytes),
      p.fileSize === undefined ? "?" : String(p.fileSize)]);
    const header = ["part", "file", "tensors", "tensor bytes", "file bytes"];
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
    const format = (r: string[]) => `  ${r[0].padStart(widths[0])}  ${r[1].padEnd(widths[1])}  ${r[2].padStart(widths[2])}  ${r[3].padStart(widths[3])}  ${r[4].padStart(widths[4])}`;
    lines.push(format(header), ...rows.map(format));
  }

  lines.push("", `metadata (${file.metadata.size} keys):`);
  const keyWidth = Math.max(0, ...[...file.metadata.keys()].map((k) => k.length));
  for (const [key, entry] of file.metadata) {
    const type = entry.type === GGUFValueType.ARRAY ? "ARRAY" : valueTypeName(entry.type);
    lines.push(`  ${key.padEnd(keyWidth)}  ${type.padEnd(7)}  ${formatEntry(entry, full)}`);
  }

  if (extra) lines.push("", `${extra.title}:`, ...extra.text.map((l) => `  ${l}`));

  lines.push("", `tensors (${file.tensors.length}):`);
  const rows = file.tensors.map((t) => [t.name, typeLabel(t.type), t.dims.join(" x "), String(t.nbytes),
    ...(split ? [String(file.partOf(t).no + 1)] : [])]);
  const header = ["name", "type", "dims", "bytes", ...(split ? ["part"] : [])];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const format = (r: string[]) => `  ${r[0].padEnd(widths[0])}  ${r[1].padEnd(widths[1])}  ${r[2].padEnd(widths[2])}  ${r[3].padStart(widths[3])}` +
    (split ? `  ${r[4].padStart(widths[4])}` : "");
  lines.push(format(header), ...rows.map(format));

  const totals = totalsOf(file);
  lines.push("", `totals: ${totals.tensors} tensors, ${totals.elements} elements, ${totals.bytes} bytes of tensor data`);
  for (const [type, t] of totals.byType) {
    lines.push(`  ${type.padEnd(8)} ${String(t.tensors).padStart(5)} tensors ${String(t.elements).padStart(14)} elements ${String(t.bytes).padStart(14)} bytes`);
  }
  return lines;
}

function jsonReport(path: string, file: GGUFFile, full: boolean, extra?: InspectSection): unknown {
  const metadata: Record<string, unknown> = {};
  for (const [key, entry] of file.metadata) {
    metadata[key] = entry.type === GGUFValueType.ARRAY
      ? { type: "ARRAY", ...(jsonArray(entry.value as GGUFArray, full) as object) }
      : { type: valueTypeName(entry.type), value: entry.value };
  }
  const totals = totalsOf(file);
  return {
    file: path,
    version: file.version,
    fileSize: file.fileSize ?? null,
    alignment: file.alignment,
    dataOffset: file.dataOffset,
    ...(file.parts.length > 1 ? {
      parts: file.parts.map((p) => ({
        no: p.no, file: p.name, tensors: p.tensors.length, tensorBytes: p.tensorDataBytes, fileSize: p.fileSize ?? null,
        dataOffset: p.dataOffset, alignment: p.alignment,
      })),
    } : {}),
    metadata,
    ...(extra ? { [camelCase(extra.title)]: extra.json } : {}),
    tensors: file.tensors.map((t) => ({
      name: t.name, type: typeLabel(t.type), typeId: t.type, dims: t.dims, offset: t.offset, bytes: t.nbytes,
      ...(file.parts.length > 1 ? { part: file.partOf(t).no } : {}),
    })),
    totals: { ...totals, byType: Object.fromEntries(totals.byType) },
  };
}
