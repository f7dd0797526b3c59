// GBNF (llama.cpp's grammar notation, grammars/README.md there) parsed into a byte-level grammar:
// every terminal is a set of bytes, so a matcher walks UTF-8 text byte by byte, the way token bytes
// come. Character classes over code points become alternatives of UTF-8 byte-range sequences.
//
// Supported: `name ::= alternatives` (the start rule is `root`), `|`, sequences, "literals" and
// [classes] / [^negated] with ranges and escapes (\n \r \t \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH),
// `.` (any character, newline included), ( groups ), and the repetitions * + ? {m} {m,} {m,n}; comments from `#`.
// Rules may span lines (a rule ends where the next `name ::=` starts). Left recursion is refused,
// as in llama.cpp.
import { QwasmError } from "../../platform/errors";

/** Program words: a rule index (>= 0), END (the end of an alternative), or a byte set (<= -2). */
export const END = -1;

/**
 * A compiled grammar. `program` holds every alternative of every rule as a run of elements ended by
 * END; `alternatives[r]` are the start positions of rule r's alternatives; byte set s is the 256
 * bits at `byteSets[8s .. 8s+8)` and a program word -2 - s stands for it.
 */
export class Grammar {
  /** Masks computed for a matcher state, per token vocabulary (see ./matcher). */
  readonly maskCache = new WeakMap<object, Map<string, Uint32Array>>();

  constructor(
    readonly program: Int32Array,
    readonly alternatives: Int32Array[],
    readonly byteSets: Uint32Array,
    readonly ruleNames: string[],
    readonly root: number,
  ) {}

  /** Whether byte b is in the set that program word w (<= -2) stands for. */
  hasByte(word: number, b: number): boolean {
    return ((this.byteSets[(-2 - word) * 8 + (b >>> 5)] >>> (b & 31)) & 1) === 1;
  }
}

type Expr =
  | { t: "bytes"; bytes: number[] }                      // a literal, as UTF-8
  | { t: "class"; ranges: [number, number][] }           // code point ranges, already complemented
  | { t: "ref"; name: string; at: number }
  | { t: "seq"; items: Expr[] }
  | { t: "alt"; items: Expr[] }
  | { t: "rep"; item: Expr; min: number; max: number };  // max Infinity: unbounded

const MAX_REPEAT = 10000;

/** Parses GBNF text into a Grammar; a syntax error or an undefined rule throws INVALID_GRAMMAR. */
export function compileGrammar(text: string, options: { root?: string } = {}): Grammar {
  if (typeof text !== "string") throw new QwasmError("INVALID_GRAMMAR", "the grammar must be a string of GBNF text");
  const rules = new GbnfParser(text).parse();
  return lower(rules, options.root ?? "root", text);
}

class GbnfParser {
  private pos = 0;
  constructor(private readonly src: string) {}

  parse(): Map<string, { expr: Expr; at: number }> {
    const rules = new Map<string, { expr: Expr; at: number }>();
    this.space();
    while (this.pos < this.src.length) {
      const at = this.pos;
      const name = this.name();
      if (!name) this.fail("expected a rule name");
      this.space();
      if (!this.src.startsWith("::=", this.pos)) this.fail(`expected "::=" after the rule name ${name}`);
      this.pos += 3;
      this.space();
      if (rules.has(name)) this.fail(`rule ${name} is defined twice`, at);
      rules.set(name, { expr: this.alternatives(), at });
      this.space();
    }
    return rules;
  }

  private alternatives(): Expr {
    const items = [this.sequence()];
    while (this.src[this.pos] === "|") {
      this.pos++;
      this.space();
      items.push(this.sequence());
    }
    return items.length === 1 ? items[0] : { t: "alt", items };
  }

  private sequence(): Expr {
    const items: Expr[] = [];
    for (;;) {
      this.space();
      const c = this.src[this.pos];
      if (c === undefined || c === "|" || c === ")") break;
      if (this.atRuleStart()) break;
      let term = this.term();
      this.space();
      for (;;) {
        const q = this.src[this.pos];
        if (q === "*") { this.pos++; term = { t: "rep", item: term, min: 0, max: Infinity }; }
        else if (q === "+") { this.pos++; term = { t: "rep", item: term, min: 1, max: Infinity }; }
        else if (q === "?") { this.pos++; term = { t: "rep", item: term, min: 0, max: 1 }; }
        else if (q === "{") term = this.braces(term);
        else break;
        this.space();
      }
      items.push(term);
    }
    return items.length === 1 ? items[0] : { t: "seq", items };
  }

  private braces(item: Expr): Expr {
    const m = /^\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}/.exec(this.src.slice(this.pos, this.pos + 40));
    if (!m) this.fail("expected a repetition {m}, {m,} or {m,n}");
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3]);
    if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT)) this.fail(`repetition counts above ${MAX_REPEAT} are not supported`);
    if (max < min) this.fail(`repetition {${min},${max}}: the maximum is below the minimum`);
    this.pos += m[0].length;
    return { t: "rep", item, min, max };
  }

  private term(): Expr {
    const c = this.src[this.pos];
    if (c === '"') return this.literal();
    if (c === "[") return this.charClass();
    if (c === ".") { this.pos++; return { t: "class", ranges: complement([]) }; }
    if (c === "(") {
      this.pos++;
      this.space();
      const inner = this.alternatives();
      this.space();
      if (this.src[this.pos] !== ")") this.fail('expected ")"');
      this.pos++;
      return inner;
    }
    const at = this.pos;
    const name = this.name();
    if (name) return { t: "ref", name, at };
    this.fail(`unexpected ${JSON.stringify(c)}`);
  }

  private literal(): Expr {
    this.pos++; // "
    const bytes: number[] = [];
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined || c === "\n") this.fail("unterminated string literal");
      if (c === '"') { this.pos++; break; }
      bytes.push(...utf8(this.char()));
    }
    return { t: "bytes", bytes };
  }

  private charClass(): Expr {
    this.pos++; // [
    const negated = this.src[this.pos] === "^";
    if (negated) this.pos++;
    const ranges: [number, number][] = [];
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined) this.fail("unterminated character class");
      if (c === "]") { this.pos++; break; }
      const lo = this.char();
      let hi = lo;
      if (this.src[this.pos] === "-" && this.src[this.pos + 1] !== "]") {
        this.pos++;
        hi = this.char();
        if (hi < lo) this.fail(`character range ${hex(lo)}-${hex(hi)} is reversed`);
      }
      ranges.push([lo, hi]);
    }
    return { t: "class", ranges: negated ? complement(ranges) : normalize(ranges) };
  }

  /** One character of a literal or class, escapes decoded; returns its code point. */
  private char(): number {
    const c = this.src.codePointAt(this.pos)!;
    if (c !== 0x5c) { this.pos += c > 0xffff ? 2 : 1; return c; }
    const e = this.src[this.pos + 1];
    const simple: Record<string, number> = { n: 10, r: 13, t: 9, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45, "/": 47, "^": 94 };
    if (e in simple) { this.pos += 2; return simple[e]; }
    const digits = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    if (digits === 0) this.fail(`unknown escape \\${e ?? ""}`);
    const h = this.src.slice(this.pos + 2, this.pos + 2 + digits);
    if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(h)) this.fail(`\\${e} needs ${digits} hex digits`);
    const cp = parseInt(h, 16);
    if (cp > 0x10ffff) this.fail(`\\${e}${h} is past U+10FFFF`);
    this.pos += 2 + digits;
    return cp;
  }

  private name(): string {
    const m = /^[a-zA-Z0-9_-]+/.exec(this.src.slice(this.pos, this.pos + 256));
    if (!m) return "";
    this.pos += m[0].length;
    return m[0];
  }

  private atRuleStart(): boolean {
    return /^[a-zA-Z0-9_-]+[ \t]*::=/.test(this.src.slice(this.pos, this.pos + 300));
  }

  /** Skips white space (newlines too) and # comments. */
  private space(): void {
    const src = this.src;
    for (;;) {
      const c = src[this.pos];
      if (c === " " || c === "\t" || c === "\n" || c === "\r") this.pos++;
      else if (c === "#") { while (this.pos < src.length && src[this.pos] !== "\n") this.pos++; }
      else return;
    }
  }

  private fail(message: string, at = this.pos): never {
    throw new QwasmError("INVALID_GRAMMAR", `grammar ${where(this.src, at)}: ${message}`);
  }
}

function where(src: string, at: number): string {
  const before = src.slice(0, at);
  const line = before.split("\n").length;
  return `line ${line} column ${at - before.lastIndexOf("\n")}`;
}

function hex(cp: number): string {
  return "U+" + cp.toString(16).toUpperCase().padStart(4, "0");
}

export function utf8(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 63)];
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
}

/** Sorted, merged ranges without the surrogates (which UTF-8 cannot encode). */
function normalize(ranges: [number, number][]): [number, number][] {
  const split: [number, number][] = [];
  for (const [lo, hi] of ranges) {
    if (lo < 0xd800) split.push([lo, Math.min(hi, 0xd7ff)]);
    if (hi > 0xdfff) split.push([Math.max(lo, 0xe000), hi]);
  }
  split.sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const r of split) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

/** Every code point not in the ranges (surrogates excluded). */
export function complement(ranges: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  let next = 0;
  for (const [lo, hi] of normalize(ranges)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= 0x10ffff) out.push([next, 0x10ffff]);
  return normalize(out);
}

/** The code point range lo..hi as UTF-8: sequences of byte ranges (the regex-syntax crate's split). */
function utf8Sequences(lo: number, hi: number, out: [number, number][][]): void {
  if (lo > hi) return;
  for (const max of [0x7f, 0x7ff, 0xffff]) {
    if (lo <= max && hi > max) { utf8Sequences(lo, max, out); utf8Sequences(max + 1, hi, out); return; }
  }
  if (hi <= 0x7f) { out.push([[lo, hi]]); return; }
  const n = utf8(lo).length;
  for (let i = 1; i < n; i++) {
    const m = (1 << (6 * i)) - 1;
    if ((lo & ~m) !== (hi & ~m)) {
      if ((lo & m) !== 0) { utf8Sequences(lo, lo | m, out); utf8Sequences((lo | m) + 1, hi, out); return; }
      if ((hi & m) !== m) { utf8Sequences(lo, (hi & ~m) - 1, out); utf8Sequences(hi & ~m, hi, out); return; }
    }
  }
  const a = utf8(lo), b = utf8(hi);
  out.push(a.map((x, i) => [x, b[i]]));
}

/** Lowers parsed rules to the program: groups, classes and repetitions become anonymous rules. */
function lower(rules: Map<string, { expr: Expr; at: number }>, rootName: string, src: string): Grammar {
  if (!rules.has(rootName)) {
    throw new QwasmError("INVALID_GRAMMAR", `the grammar has no rule named ${rootName} (the start rule)`);
  }
  const names: string[] = [...rules.keys()];
  const index = new Map(names.map((n, i) => [n, i]));
  const bodies: number[][][] = names.map(() => []); // rule -> alternatives -> words
  const sets: number[] = [];
  const setIndex = new Map<string, number>();

  const byteSet = (ranges: [number, number][]): number => {
    const bits = new Array<number>(8).fill(0);
    for (const [lo, hi] of ranges) for (let b = lo; b <= hi; b++) bits[b >>> 5] |= 1 << (b & 31);
    const key = bits.join(",");
    let s = setIndex.get(key);
    if (s === undefined) {
      s = setIndex.size;
      setIndex.set(key, s);
      sets.push(...bits);
    }
    return -2 - s;
  };
  const anonymous = (hint: string, alternatives: number[][]): number => {
    names.push(`${hint}-${names.length}`);
    bodies.push(alternatives);
    return names.length - 1;
  };

  // An expression as alternatives of words (a group inside a sequence becomes its own rule).
  const alts = (e: Expr, rule: string): number[][] => {
    switch (e.t) {
      case "alt": return e.items.flatMap((item) => alts(item, rule));
      case "seq": return [e.items.flatMap((item) => word(item, rule))];
      default: return [word(e, rule)];
    }
  };
  const word = (e: Expr, rule: string): number[] => {
    switch (e.t) {
      case "bytes": return e.bytes.map((b) => byteSet([[b, b]]));
      case "ref": {
        const r = index.get(e.name);
        if (r === undefined) {
          throw new QwasmError("INVALID_GRAMMAR", `grammar ${where(src, e.at)}: rule ${e.name} is used but not defined`);
        }
        return [r];
      }
      case "class": {
        if (e.ranges.length === 0) throw new QwasmError("INVALID_GRAMMAR", `grammar rule ${rule}: a character class matches nothing`);
        const seqs: [number, number][][] = [];
        for (const [lo, hi] of e.ranges) utf8Sequences(lo, hi, seqs);
        const single = seqs.filter((s) => s.length === 1);
        const multi = seqs.filter((s) => s.length > 1);
        const alternatives = multi.map((s) => s.map((r) => byteSet([r])));
        if (single.length > 0) alternatives.unshift([byteSet(single.map((s) => s[0]))]);
        return alternatives.length === 1 ? alternatives[0] : [anonymous(`${rule}-char`, alternatives)];
      }
      case "seq": return e.items.flatMap((item) => word(item, rule));
      case "alt": return [anonymous(rule, alts(e, rule))];
      case "rep": return repeat(e, rule);
    }
  };
  const repeat = (e: Extract<Expr, { t: "rep" }>, rule: string): number[] => {
    const item = word(e.item, rule);
    const out: number[] = [];
    for (let i = 0; i < e.min; i++) out.push(...item);
    if (e.max === Infinity) {
      // star ::= item star | ""
      const star = anonymous(`${rule}-star`, []);
      bodies[star].push([...item, star], []);
      out.push(star);
    } else if (e.max > e.min) {
      // up to k more: opt_k ::= item opt_(k-1) | ""
      let opt = anonymous(`${rule}-opt`, [item, []]);
      for (let k = 2; k <= e.max - e.min; k++) opt = anonymous(`${rule}-opt`, [[...item, opt], []]);
      out.push(opt);
    }
    return out;
  };

  for (const [name, { expr }] of rules) bodies[index.get(name)!] = alts(expr, name);
  checkLeftRecursion(bodies, names);

  let size = 0;
  for (const body of bodies) for (const alt of body) size += alt.length + 1;
  const program = new Int32Array(size);
  const alternatives: Int32Array[] = [];
  let at = 0;
  for (const body of bodies) {
    const starts = new Int32Array(body.length);
    body.forEach((alt, i) => {
      starts[i] = at;
      program.set(alt, at);
      at += alt.length;
      program[at++] = END;
    });
    alternatives.push(starts);
  }
  return new Grammar(program, alternatives, Uint32Array.from(sets), names, index.get(rootName)!);
}

/** Refuses rules that can reach themselves without consuming a byte (the matcher would loop). */
function checkLeftRecursion(bodies: number[][][], names: string[]): void {
  const nullable = new Array<boolean>(bodies.length).fill(false);
  for (let changed = true; changed;) {
    changed = false;
    bodies.forEach((body, r) => {
      if (!nullable[r] && body.some((alt) => alt.every((w) => w >= 0 && nullable[w]))) { nullable[r] = changed = true; }
    });
  }
  // Rules each rule can start with.
  const starts = bodies.map((body) => {
    const out = new Set<number>();
    for (const alt of body) {
      for (const w of alt) {
        if (w < 0) break;
        out.add(w);
        if (!nullable[w]) break;
      }
    }
    return out;
  });
  const state = new Uint8Array(bodies.length); // 0 new, 1 on the path, 2 done
  const visit = (r: number, path: number[]): void => {
    if (state[r] === 2) return;
    if (state[r] === 1) {
      const cycle = path.slice(path.indexOf(r)).map((i) => names[i]).join(" -> ");
      throw new QwasmError("INVALID_GRAMMAR",
        `the grammar is left-recursive (${cycle} -> ${names[r]}): a rule reaches itself without consuming a character; ` +
        "rewrite it with repetition (x ::= y (op y)*) and do not repeat what can be empty");
    }
    state[r] = 1;
    for (const s of starts[r]) visit(s, [...path, r]);
    state[r] = 2;
  };
  for (let r = 0; r < bodies.length; r++) visit(r, []);
}
