// Split GGUF files, as llama.cpp's gguf-split writes them (Qwen ships its large GGUFs this way):
// every part is a whole GGUF file with its own header, metadata and tensor table, named
// `<prefix>-00001-of-00003.gguf`. The first part carries the model's metadata; every part carries
// `split.no` (UINT16, 0-based), `split.count` (UINT16) and `split.tensors.count` (INT32, the tensors
// of all parts together). A tensor lies wholly in one part, at an offset in that part's data section.
// This module names the parts and checks that a set of parts belongs together; reader.ts opens them.
import { QwasmError } from "../../platform/errors";
import type { GGUFMetadata } from "./metadata";

export const SPLIT_NO = "split.no";
export const SPLIT_COUNT = "split.count";
export const SPLIT_TENSORS_COUNT = "split.tensors.count";
export const SPLIT_KEYS: readonly string[] = [SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS_COUNT];

/** A set of parts that does not make one split model; `file` names the part it is about. */
export class SplitGGUFError extends QwasmError {
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super("GGUF_INVALID", `split GGUF: ${message}`, options);
    this.name = "SplitGGUFError";
    this.file = file;
  }
}

const PART_SUFFIX = /-(\d{5})-of-(\d{5})\.gguf$/i;

/** `<prefix>-00002-of-00003.gguf` for split.no 1 of 3 (llama.cpp's llama_split_path). */
export function splitPartName(prefix: string, no: number, count: number): string {
  return `${prefix}-${String(no + 1).padStart(5, "0")}-of-${String(count).padStart(5, "0")}.gguf`;
}

/** A path or URL without its query and fragment (which stay on every part's name). */
function pathOf(name: string): { path: string; rest: string } {
  const cut = /^[a-z][a-z0-9+.-]*:\/\//i.test(name) ? name.search(/[?#]/) : -1;
  return cut < 0 ? { path: name, rest: "" } : { path: name.slice(0, cut), rest: name.slice(cut) };
}

/** The prefix, part (0-based) and count a split part's file name (a path or URL) says, or undefined. */
export function parseSplitName(name: string): { prefix: string; no: number; count: number } | undefined {
  const { path } = pathOf(name);
  const m = PART_SUFFIX.exec(path);
  if (!m) return undefined;
  const no = Number(m[1]) - 1;
  const count = Number(m[2]);
  if (no < 0 || count < 1) return undefined;
  return { prefix: path.slice(0, m.index), no, count };
}

/** The names of all `count` parts, from the name of one of them (query and fragment kept), or undefined. */
export function splitSiblingNames(name: string, count: number): string[] | undefined {
  const parsed = parseSplitName(name);
  if (!parsed) return undefined;
  const { rest } = pathOf(name);
  return Array.from({ length: count }, (_, no) => splitPartName(parsed.prefix, no, count) + rest);
}

/** The last path segment of a prefix, so that the same parts at two places compare equal. */
function baseName(prefix: string): string {
  return prefix.slice(prefix.search(/[^/\\]*$/));
}

export interface SplitKeys {
  /** 0-based. */
  no: number;
  count: number;
  /** Tensors in all parts together, when the part says. */
  tensorsCount?: number;
}

/**
 * The split keys of a part's metadata; undefined for a whole file (no split.count, or a count of 0
 * or 1: gguf-split --merge leaves split.count 0 in the merged file).
 */
export function splitKeysOf(metadata: GGUFMetadata, file: string): SplitKeys | undefined {
  const read = (key: string): number | undefined => {
    if (!metadata.has(key)) return undefined;
    try {
      return metadata.getU32(key);
    } catch (e) {
      throw new SplitGGUFError(file, `${file}: ${(e as Error).message}`, { cause: e });
    }
  };
  const count = read(SPLIT_COUNT);
  if (count === undefined || count <= 1) return undefined;
  const no = read(SPLIT_NO);
  if (no === undefined) throw new SplitGGUFError(file, `${file} has ${SPLIT_COUNT} ${count} but no ${SPLIT_NO}`);
  return { no, count, tensorsCount: read(SPLIT_TENSORS_COUNT) };
}

/** What checkSplitParts needs to know of a part. */
export interface SplitPartInfo {
  /** Path, URL or file name (`part N` when it has none). */
  name: string;
  metadata: GGUFMetadata;
  tensorNames: readonly string[];
}

function list(names: string[]): string {
  return names.length <= 1 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

/**
 * Checks that `parts` (in any order) are all the parts of one split model, or one whole file: every
 * part has the split keys, the same split.count and split.tensors.count, split.no unique and in range,
 * none missing, names (where they follow the pattern) agree with split.no and share one prefix, no
 * tensor is in two parts and the parts hold split.tensors.count tensors. Returns the indices of
 * `parts` in split.no order. Every refusal is a SplitGGUFError naming the file and what is wrong.
 */
export function checkSplitParts(parts: readonly SplitPartInfo[]): number[] {
  if (parts.length === 0) throw new QwasmError("INVALID_ARGUMENT", "openGGUF: the list of parts is empty; give at least one GGUF file");
  const keys = parts.map((p) => splitKeysOf(p.metadata, p.name));
  if (parts.length === 1 && keys[0] === undefined) return [0];

  const whole = parts.findIndex((_, i) => keys[i] === undefined);
  if (whole >= 0) {
    throw new SplitGGUFError(parts[whole].name, `${parts[whole].name} is a whole GGUF file (no ${SPLIT_COUNT}), not a part ` +
      "of a split model: give either one whole file or all the parts of one split model");
  }
  const k = keys as SplitKeys[];
  const count = k[0].count;
  for (let i = 1; i < parts.length; i++) {
    if (k[i].count !== count) {
      throw new SplitGGUFError(parts[i].name, `${parts[0].name} says ${SPLIT_COUNT} ${count}, but ${parts[i].name} says ` +
        `${k[i].count}: they are not parts of one model`);
    }
    if (k[i].tensorsCount !== k[0].tensorsCount) {
      throw new SplitGGUFError(parts[i].name, `${parts[0].name} says ${SPLIT_TENSORS_COUNT} ${k[0].tensorsCount ?? "(none)"}, ` +
        `but ${parts[i].name} says ${k[i].tensorsCount ?? "(none)"}: they are not parts of one model`);
    }
  }

  // Names that follow the pattern must agree with the metadata and share one prefix.
  let named: { index: number; prefix: string } | undefined;
  for (let i = 0; i < parts.length; i++) {
    const parsed = parseSplitName(parts[i].name);
    if (!parsed) continue;
    if (parsed.no !== k[i].no || parsed.count !== count) {
      throw new SplitGGUFError(parts[i].name, `${parts[i].name} is named part ${parsed.no + 1} of ${parsed.count}, but its ` +
        `metadata says part ${k[i].no + 1} of ${count} (${SPLIT_NO} ${k[i].no}, ${SPLIT_COUNT} ${count})`);
    }
    if (named && baseName(named.prefix) !== baseName(parsed.prefix)) {
      throw new SplitGGUFError(parts[i].name, `${parts[i].name} and ${parts[named.index].name} have different names ` +
        `("${baseName(parsed.prefix)}" and "${baseName(named.prefix)}"): parts of different models?`);
    }
    named ??= { index: i, prefix: parsed.prefix };
  }

  const byNo = new Map<number, number>();
  for (let i = 0; i < parts.length; i++) {
    const no = k[i].no;
    if (no >= count) {
      throw new SplitGGUFError(parts[i].name, `${parts[i].name} has ${SPLIT_NO} ${no}, outside 0..${count - 1} of ${SPLIT_COUNT} ${count}`);
    }
    const other = byNo.get(no);
    if (other !== undefined) {
      throw new SplitGGUFError(parts[i].name, `${parts[other].name} and ${parts[i].name} are both part ${no + 1} of ${count} (${SPLIT_NO} ${no})`);
    }
    byNo.set(no, i);
  }
  if (byNo.size < count) {
    const missing: string[] = [];
    for (let no = 0; no < count; no++) {
      if (byNo.has(no)) continue;
      missing.push(named ? splitPartName(baseName(named.prefix), no, count) : `part ${no + 1}`);
    }
    const first = parts[byNo.values().next().value!].name;
    throw new SplitGGUFError(first, `${missing.length} of the ${count} parts ${missing.length === 1 ? "is" : "are"} missing: ` +
      `${list(missing)} (given: ${list(parts.map((p) => p.name))})`);
  }

  const order = Array.from({ length: count }, (_, no) => byNo.get(no)!);
  const holder = new Map<string, number>();
  let total = 0;
  for (const i of order) {
    for (const name of parts[i].tensorNames) {
      const other = holder.get(name);
      if (other !== undefined) {
        throw new SplitGGUFError(parts[i].name, `tensor ${name} is in both ${parts[other].name} and ${parts[i].name}`);
      }
      holder.set(name, i);
    }
    total += parts[i].tensorNames.length;
  }
  const expected = k[0].tensorsCount;
  if (expected !== undefined && total !== expected) {
    throw new SplitGGUFError(parts[order[0]].name, `the ${count} parts hold ${total} tensors, but ${SPLIT_TENSORS_COUNT} is ` +
      `${expected}: ${total < expected ? `${expected - total} tensor${expected - total === 1 ? " is" : "s are"} missing` : "extra tensors"}`);
  }
  return order;
}
