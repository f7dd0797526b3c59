// JSON Schema to GBNF. The output is JSON in one fixed layout: ", " between items and members,
// ": " after keys, no other white space (so the model cannot loop on white space); object members
// in the schema's `properties` order. Every keyword the compiler does not turn into grammar is
// refused with UNSUPPORTED_SCHEMA naming it and where it is: no silent relaxation.
//
// Supported: type (and arrays of types), properties, required, additionalProperties (false, true or
// a schema; absent means false when `properties` is given, as OpenAI's strict mode, and any members
// otherwise), enum, const, items, prefixItems, minItems, maxItems, anyOf, oneOf (as anyOf: give
// branches that exclude each other), allOf (merged: properties and required combine, types
// intersect, other keywords must agree), $ref to "#..." JSON pointers ($defs, definitions,
// recursion), minLength, maxLength, pattern (see regexToGbnf), format (date, time, date-time, uuid,
// email: the subsets below: dates with days 01-28 in every month, 29-30 except February, 31 in the
// long months (no February 29); times hh:mm:ss[.ffffff] with Z or ±hh:mm; lowercase uuids; emails
// atom(.atom)*@label(.label)*.tld with atoms of [a-zA-Z0-9_+-], labels of 1-63 characters), minimum, maximum, exclusiveMinimum, exclusiveMaximum (integers: any
// bounds; numbers: integer bounds). Annotations (title, description, default, examples, $comment,
// $schema, $id, deprecated, readOnly, writeOnly) are ignored.
//
// Numbers: integers have at most 15 digits (|n| < 10^15, exact in a double); fractions end in a
// non-zero digit (at most 15 digits); exponents have 1-2 digits and are left out where bounds apply.
import { QwasmError } from "../../platform/errors";
import { compileGrammar, type Grammar } from "./grammar";

type Schema = Record<string, unknown> | boolean;

const ANNOTATIONS = new Set(["title", "description", "default", "examples", "$comment", "$schema", "$id", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"]);
const KEYWORDS = new Set(["type", "properties", "required", "additionalProperties", "enum", "const", "items", "prefixItems",
  "minItems", "maxItems", "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength", "pattern", "format", "minimum",
  "maximum", "exclusiveMinimum", "exclusiveMaximum"]);
const TYPES = ["null", "boolean", "object", "array", "number", "integer", "string"];
export const SUPPORTED_FORMATS = ["date", "time", "date-time", "uuid", "email"];
/** The largest integer magnitude the grammar writes: 15 digits. */
const MAX_INT = 999_999_999_999_999;
const MAX_LENGTH = 10_000;

function unsupported(where: string, message: string): never {
  throw new QwasmError("UNSUPPORTED_SCHEMA", `JSON schema ${where || "(root)"}: ${message}`);
}

/** A string as a GBNF literal. */
export function gbnfLiteral(text: string): string {
  let out = '"';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (cp < 0x20 || cp === 0x7f) out += "\\x" + cp.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out + '"';
}

/** A JSON value in the output layout (", " and ": "). */
export function formatJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    const s = JSON.stringify(value);
    if (s === undefined) throw new QwasmError("UNSUPPORTED_SCHEMA", `JSON schema: ${String(value)} is not a JSON value`);
    return s;
  }
  if (Array.isArray(value)) return "[" + value.map(formatJson).join(", ") + "]";
  return "{" + Object.entries(value).map(([k, v]) => JSON.stringify(k) + ": " + formatJson(v)).join(", ") + "}";
}

/** Grammar text shared by every schema (rules prefixed with the caller's rule name). */
function primitives(p: string): Record<string, string> {
  return {
    [`${p}-char`]: `[^"\\\\\\x00-\\x1f] | "\\\\" ( ["\\\\/bfnrt] | "u" ${p}-hex4 )`,
    // \u escapes of surrogates are left out (a lone one is no character)
    [`${p}-hex4`]: `( [0-9a-cA-CefEF] [0-9a-fA-F] | [dD] [0-7] ) [0-9a-fA-F] [0-9a-fA-F]`,
    [`${p}-string`]: `"\\"" ${p}-char* "\\""`,
    [`${p}-frac`]: `"." [0-9]{0,14} [1-9]`,
    [`${p}-int`]: `"-"? ( "0" | [1-9] [0-9]{0,14} )`,
    [`${p}-number`]: `${p}-int ${p}-frac? ( [eE] [-+]? [0-9] [0-9]? )?`,
    [`${p}-value`]: `${p}-object | ${p}-array | ${p}-string | ${p}-number | "true" | "false" | "null"`,
    [`${p}-object`]: `"{" ( ${p}-string ": " ${p}-value ( ", " ${p}-string ": " ${p}-value )* )? "}"`,
    [`${p}-array`]: `"[" ( ${p}-value ( ", " ${p}-value )* )? "]"`,
    [`${p}-date`]: `[0-9]{4} "-" ( ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] )` +
      ` | ( "0" [13-9] | "1" [0-2] ) "-" ( "29" | "30" ) | ( "0" [13578] | "1" [02] ) "-31" )`,
    [`${p}-time`]: `( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? ( "Z" | [-+] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )`,
    [`${p}-uuid`]: `[0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12}`,
    [`${p}-email`]: `[a-zA-Z0-9_+-]+ ( "." [a-zA-Z0-9_+-]+ )* "@" ${p}-label ( "." ${p}-label )* "." [a-zA-Z]{2,6}`,
    // a domain label: 1-63 characters, no hyphen at either end (as ajv-formats checks)
    [`${p}-label`]: `[a-zA-Z0-9] ( [a-zA-Z0-9-]{0,61} [a-zA-Z0-9] )?`,
  };
}

/**
 * GBNF text for a JSON Schema: rule `ruleName` matches the JSON values the schema accepts, in the
 * layout above. Every helper rule's name starts with `ruleName-`, so the text can be pasted into a
 * larger grammar (e.g. `root ::= "<tool_call>\n{\"name\": \"f\", \"arguments\": " args "}\n</tool_call>"`
 * plus `jsonSchemaToGbnf(parameters, "args")`). Throws UNSUPPORTED_SCHEMA naming a keyword it
 * cannot express.
 */
export function jsonSchemaToGbnf(schema: unknown, ruleName = "root"): string {
  if (!/^[a-zA-Z0-9_-]+$/.test(ruleName)) throw new QwasmError("INVALID_ARGUMENT", `rule name ${JSON.stringify(ruleName)}: use letters, digits, - and _`);
  if (typeof schema !== "boolean" && (schema === null || typeof schema !== "object" || Array.isArray(schema))) {
    unsupported("", "a schema must be a JSON object (or true)");
  }
  const g = new SchemaCompiler(schema as Schema, ruleName);
  g.rules.set(ruleName, "");
  g.rules.set(ruleName, g.visit(schema as Schema, ""));
  const prim = primitives(ruleName);
  // The primitives that are used, and those they use.
  const text = [...g.rules.values()].join("\n");
  const used = new Set<string>();
  const use = (body: string) => {
    for (const m of body.matchAll(/[a-zA-Z0-9_-]+/g)) {
      if (m[0] in prim && !used.has(m[0])) { used.add(m[0]); use(prim[m[0]]); }
    }
  };
  use(text);
  const lines = [...g.rules].map(([name, body]) => `${name} ::= ${body}`);
  for (const name of Object.keys(prim)) if (used.has(name)) lines.push(`${name} ::= ${prim[name]}`);
  return lines.join("\n") + "\n";
}

/** A JSON Schema compiled to a grammar (see jsonSchemaToGbnf for what is supported). */
export function compileJsonSchema(schema: unknown): Grammar {
  return compileGrammar(jsonSchemaToGbnf(schema, "root"));
}

/** Any JSON object (OpenAI's response_format json_object), in the layout above. */
export function jsonObjectGbnf(ruleName = "root"): string {
  return jsonSchemaToGbnf({ type: "object" }, ruleName);
}

class SchemaCompiler {
  readonly rules = new Map<string, string>();
  private readonly refs = new Map<string, string>();
  private counter = 0;

  constructor(private readonly root: Schema, private readonly p: string) {}

  private newRule(hint: string, body: string): string {
    const name = `${this.p}-${hint}${this.counter++}`;
    this.rules.set(name, body);
    return name;
  }

  private depth = 0;

  visit(schema: Schema, where: string): string {
    if (this.depth > 200) unsupported(where, "the schema nests too deep (a recursion through allOf or anyOf with sibling keywords?)");
    this.depth++;
    try {
      return this.visitSchema(schema, where);
    } finally {
      this.depth--;
    }
  }

  private visitSchema(schema: Schema, where: string): string {
    if (schema === true) return `${this.p}-value`;
    if (schema === false) unsupported(where, "the schema false accepts nothing, so no output can match it");
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) unsupported(where, "a schema must be an object or a boolean");
    for (const key of Object.keys(schema)) {
      if (!KEYWORDS.has(key) && !ANNOTATIONS.has(key)) {
        unsupported(where, `keyword "${key}" is not supported (supported: ${[...KEYWORDS].join(", ")})`);
      }
    }
    if (schema.$ref !== undefined) {
      const siblings = Object.keys(schema).filter((k) => k !== "$ref" && !ANNOTATIONS.has(k));
      if (siblings.length > 0) return this.visit(this.merge([{ $ref: schema.$ref }, omit(schema, "$ref")], where), where);
      return this.ref(schema.$ref, where);
    }
    if (schema.allOf !== undefined) {
      const branches = arrayOf(schema.allOf, `${where}/allOf`);
      return this.visit(this.merge([omit(schema, "allOf"), ...branches], `${where}/allOf`), where);
    }
    for (const key of ["anyOf", "oneOf"] as const) {
      if (schema[key] === undefined) continue;
      const branches = arrayOf(schema[key], `${where}/${key}`);
      const rest = omit(schema, key);
      const alts = branches.map((b, i) =>
        this.visit(hasKeywords(rest) ? this.merge([rest, b], `${where}/${key}/${i}`) : b as Schema, `${where}/${key}/${i}`));
      return alts.length === 1 ? alts[0] : `( ${alts.join(" | ")} )`;
    }
    if (schema.enum !== undefined || schema.const !== undefined) return this.literals(schema, where);
    let types = TYPES;
    if (schema.type !== undefined) {
      types = typeof schema.type === "string" ? [schema.type] : (Array.isArray(schema.type) ? schema.type as string[] : []);
      if (types.length === 0 || !types.every((t) => TYPES.includes(t))) {
        unsupported(where, `type ${JSON.stringify(schema.type)}: must be one of ${TYPES.join(", ")} or an array of them`);
      }
    }
    if (types.includes("number")) types = types.filter((t) => t !== "integer");
    const alts = [...new Set(types)].map((t) => this.typed(t, schema, where));
    return alts.length === 1 ? alts[0] : `( ${alts.join(" | ")} )`;
  }

  private typed(type: string, s: Record<string, unknown>, where: string): string {
    switch (type) {
      case "null": return '"null"';
      case "boolean": return '( "true" | "false" )';
      case "string": return this.string(s, where);
      case "integer": return this.integer(s, where);
      case "number": return this.number(s, where);
      case "array": return this.array(s, where);
      default: return this.object(s, where);
    }
  }

  private ref(ref: unknown, where: string): string {
    if (typeof ref !== "string" || !ref.startsWith("#")) {
      unsupported(`${where}/$ref`, `${JSON.stringify(ref)}: only references inside the schema ("#", "#/$defs/name", any "#/json/pointer") are supported`);
    }
    let name = this.refs.get(ref);
    if (name) return name;
    name = `${this.p}-ref${this.counter++}`;
    this.refs.set(ref, name);
    this.rules.set(name, ""); // reserved: a recursive reference finds it
    this.rules.set(name, this.visit(this.resolve(ref, where), ref.slice(1)));
    return name;
  }

  private resolve(ref: string, where: string): Schema {
    let node: unknown = this.root;
    const path = ref.slice(1);
    if (path !== "") {
      if (!path.startsWith("/")) unsupported(`${where}/$ref`, `${JSON.stringify(ref)}: anchors are not supported; use a JSON pointer ("#/$defs/name")`);
      for (const raw of path.slice(1).split("/")) {
        const key = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
        node = node !== null && typeof node === "object" ? (node as Record<string, unknown>)[key] : undefined;
        if (node === undefined) unsupported(`${where}/$ref`, `${JSON.stringify(ref)} points to nothing in the schema`);
      }
    }
    if (typeof node !== "boolean" && (node === null || typeof node !== "object")) unsupported(`${where}/$ref`, `${JSON.stringify(ref)} is not a schema`);
    return node as Schema;
  }

  /** allOf: one schema with the keywords of all (references resolved). */
  private merge(schemas: unknown[], where: string): Schema {
    const out: Record<string, unknown> = {};
    const resolved: Record<string, unknown>[] = [];
    for (let s of schemas) {
      if (s === true) continue;
      if (s === false) unsupported(where, "allOf with false accepts nothing");
      let depth = 0;
      while (isObject(s) && s.$ref !== undefined && Object.keys(s).length === 1 && depth++ < 32) s = this.resolve(s.$ref as string, where);
      if (!isObject(s)) unsupported(where, "allOf branches must be schemas");
      if (s.allOf !== undefined) s = this.merge([omit(s, "allOf"), ...arrayOf(s.allOf, `${where}/allOf`)], where);
      resolved.push(s as Record<string, unknown>);
      for (const [key, value] of Object.entries(s as Record<string, unknown>)) {
        if (ANNOTATIONS.has(key)) continue;
        if (!(key in out)) { out[key] = value; continue; }
        const have = out[key];
        if (key === "properties") {
          const merged: Record<string, unknown> = { ...(have as object) };
          for (const [name, sub] of Object.entries(value as object)) {
            merged[name] = name in merged ? this.merge([merged[name], sub], `${where}/properties/${name}`) : sub as Schema;
          }
          out[key] = merged;
        } else if (key === "required") {
          out[key] = [...new Set([...(have as string[]), ...(value as string[])])];
        } else if (key === "type") {
          const a = [have].flat() as string[], b = [value].flat() as string[];
          const both = a.filter((t) => b.includes(t) || (t === "integer" && b.includes("number")))
            .concat(b.filter((t) => t === "integer" && a.includes("number")));
          if (both.length === 0) unsupported(where, `allOf: types ${JSON.stringify(have)} and ${JSON.stringify(value)} have nothing in common`);
          out[key] = [...new Set(both)];
        } else if (["minimum", "exclusiveMinimum", "minLength", "minItems"].includes(key)) {
          out[key] = Math.max(have as number, value as number);
        } else if (["maximum", "exclusiveMaximum", "maxLength", "maxItems"].includes(key)) {
          out[key] = Math.min(have as number, value as number);
        } else if (JSON.stringify(have) !== JSON.stringify(value)) {
          unsupported(where, `allOf: keyword "${key}" appears in two branches with different values, which qwasm cannot merge`);
        }
      }
    }
    // additionalProperties sees only the properties beside it: merged, it would see the others too.
    const names = new Set(resolved.flatMap((s) => Object.keys(isObject(s.properties) ? s.properties : {})));
    for (const s of resolved) {
      if (s.additionalProperties === undefined || s.additionalProperties === true) continue;
      const own = isObject(s.properties) ? Object.keys(s.properties) : [];
      const other = [...names].find((n) => !own.includes(n));
      if (other !== undefined) {
        unsupported(where, `allOf: additionalProperties in one branch and property "${other}" in another cannot be merged (additionalProperties applies to its own branch's properties only)`);
      }
    }
    return out;
  }

  /** enum / const: the listed values that the schema's other (scalar) keywords accept. */
  private literals(s: Record<string, unknown>, where: string): string {
    const checks = ["type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern"];
    const other = Object.keys(s).filter((k) => !ANNOTATIONS.has(k) && k !== "enum" && k !== "const" && !checks.includes(k));
    if (other.length > 0) unsupported(where, `keyword "${other[0]}" next to enum/const is not supported (the listed values are the output)`);
    let values = (s.const !== undefined ? [s.const] : s.enum) as unknown[];
    if (!Array.isArray(values) || values.length === 0) unsupported(`${where}/enum`, "enum must be a non-empty array");
    if (s.const !== undefined && s.enum !== undefined) values = values.filter((v) => (s.enum as unknown[]).some((e) => JSON.stringify(e) === JSON.stringify(v)));
    values = values.filter((v) => satisfies(v, s));
    if (values.length === 0) unsupported(where, "no value of enum/const satisfies the schema's other keywords");
    const alts = [...new Set(values.map((v) => gbnfLiteral(formatJson(v))))];
    return alts.length === 1 ? alts[0] : `( ${alts.join(" | ")} )`;
  }

  private string(s: Record<string, unknown>, where: string): string {
    const min = count(s.minLength, `${where}/minLength`) ?? 0;
    const max = count(s.maxLength, `${where}/maxLength`);
    if (max !== undefined && max < min) unsupported(where, `maxLength ${max} is below minLength ${min}`);
    if (min > MAX_LENGTH || (max ?? 0) > MAX_LENGTH) unsupported(where, `minLength/maxLength above ${MAX_LENGTH} are not supported`);
    if (s.format !== undefined) {
      if (typeof s.format !== "string" || !SUPPORTED_FORMATS.includes(s.format)) {
        unsupported(`${where}/format`, `format ${JSON.stringify(s.format)} is not supported (supported: ${SUPPORTED_FORMATS.join(", ")})`);
      }
      if (s.pattern !== undefined || s.minLength !== undefined || s.maxLength !== undefined) {
        unsupported(where, "format together with pattern, minLength or maxLength is not supported");
      }
      const inner = s.format === "date-time" ? `${this.p}-date "T" ${this.p}-time` : `${this.p}-${s.format}`;
      return `"\\"" ${inner} "\\""`;
    }
    if (s.pattern !== undefined) {
      if (s.minLength !== undefined || s.maxLength !== undefined) unsupported(where, "pattern together with minLength or maxLength is not supported");
      if (typeof s.pattern !== "string") unsupported(`${where}/pattern`, "pattern must be a string");
      return `"\\"" ${regexToGbnf(s.pattern, `${this.p}-char`, `${where}/pattern`)} "\\""`;
    }
    if (min === 0 && max === undefined) return `${this.p}-string`;
    const rep = max === undefined ? `{${min},}` : min === max ? `{${min}}` : `{${min},${max}}`;
    return `"\\"" ${this.p}-char${rep} "\\""`;
  }

  private bounds(s: Record<string, unknown>, where: string, integer: boolean): [number, number] {
    let lo = -MAX_INT, hi = MAX_INT;
    const num = (k: string) => {
      const v = s[k];
      if (v === undefined) return undefined;
      if (typeof v !== "number" || !Number.isFinite(v)) unsupported(`${where}/${k}`, `${k} must be a finite number`);
      if (!integer && !Number.isInteger(v)) unsupported(`${where}/${k}`, `${k} ${v} on a number: only integer bounds can be expressed as a grammar (or use type integer)`);
      return v;
    };
    const min = num("minimum"), max = num("maximum"), xmin = num("exclusiveMinimum"), xmax = num("exclusiveMaximum");
    if (integer) {
      if (min !== undefined) lo = Math.max(lo, Math.ceil(min));
      if (xmin !== undefined) lo = Math.max(lo, Math.floor(xmin) + 1);
      if (max !== undefined) hi = Math.min(hi, Math.floor(max));
      if (xmax !== undefined) hi = Math.min(hi, Math.ceil(xmax) - 1);
    } else {
      // Integer bounds on a number: [lo, hi] inclusive, exclusivity handled by the caller.
      if (min !== undefined) lo = Math.max(lo, min);
      if (xmin !== undefined) lo = Math.max(lo, xmin);
      if (max !== undefined) hi = Math.min(hi, max);
      if (xmax !== undefined) hi = Math.min(hi, xmax);
    }
    if (Math.abs(lo) > MAX_INT || Math.abs(hi) > MAX_INT) unsupported(where, `bounds beyond ±${MAX_INT} are not supported`);
    if (lo > hi) unsupported(where, `no ${integer ? "integer" : "number"} lies between the bounds ${lo} and ${hi}`);
    return [lo, hi];
  }

  private integer(s: Record<string, unknown>, where: string): string {
    const keys = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
    if (!keys.some((k) => s[k] !== undefined)) return `${this.p}-int`;
    const [lo, hi] = this.bounds(s, where, true);
    return this.newRule("int", intRange(lo, hi));
  }

  private number(s: Record<string, unknown>, where: string): string {
    const keys = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
    if (!keys.some((k) => s[k] !== undefined)) return `${this.p}-number`;
    const [lo, hi] = this.bounds(s, where, false);
    const loExcl = s.exclusiveMinimum !== undefined && lo === s.exclusiveMinimum;
    const hiExcl = s.exclusiveMaximum !== undefined && hi === s.exclusiveMaximum;
    const alts: string[] = [];
    const ints = [loExcl ? lo + 1 : lo, hiExcl ? hi - 1 : hi];
    if (ints[0] <= ints[1]) alts.push(`( ${intRange(ints[0], ints[1])} )`);
    // k.f (k >= 0) lies in (k, k + 1); -m.f in (-m - 1, -m); -0.f in (-1, 0).
    if (Math.max(0, lo) <= hi - 1) alts.push(`( ${intRange(Math.max(0, lo), hi - 1)} ) ${this.p}-frac`);
    if (Math.max(1, -hi) <= -lo - 1) alts.push(`"-" ( ${intRange(Math.max(1, -hi), -lo - 1)} ) ${this.p}-frac`);
    if (lo <= -1 && hi >= 0) alts.push(`"-0" ${this.p}-frac`);
    if (alts.length === 0) unsupported(where, "no number lies between the bounds");
    return this.newRule("num", alts.join(" | "));
  }

  private array(s: Record<string, unknown>, where: string): string {
    let prefix: Schema[] = [];
    let items: Schema | undefined = s.items as Schema | undefined;
    if (s.prefixItems !== undefined) prefix = arrayOf(s.prefixItems, `${where}/prefixItems`) as Schema[];
    if (Array.isArray(s.items)) {
      if (s.prefixItems !== undefined) unsupported(`${where}/items`, "items must be a schema when prefixItems is given");
      prefix = s.items as Schema[];
      items = undefined;
    }
    const min = count(s.minItems, `${where}/minItems`) ?? 0;
    let max = count(s.maxItems, `${where}/maxItems`) ?? Infinity;
    if (items === false) max = Math.min(max, prefix.length);
    if (max < min) unsupported(where, `minItems ${min} is more than the array can hold (${max})`);
    if (min > MAX_LENGTH || (max !== Infinity && max > MAX_LENGTH)) unsupported(where, `minItems/maxItems above ${MAX_LENGTH} are not supported`);
    const itemRule = (i: number): string => i < prefix.length
      ? this.visit(prefix[i], `${where}/prefixItems/${i}`)
      : this.visit(items === undefined ? true : items, `${where}/items`);
    // tail(k): the items from index k on, each after ", " (k = 0: none before it).
    // visited once: the same rule for every later item (none when the prefix is all there can be)
    const homogeneous = max > prefix.length ? itemRule(prefix.length) : "";
    const tail = (k: number): string => {
      if (k >= max) return "";
      if (k >= prefix.length && k >= min) {
        const sep = k === 0 ? "" : '", " ';
        const more = max === Infinity ? `( ", " ${homogeneous} )*` : max - k - 1 > 0 ? `( ", " ${homogeneous} ){0,${max - k - 1}}` : "";
        return `( ${sep}${homogeneous} ${more} )?`;
      }
      const item = k < prefix.length ? itemRule(k) : homogeneous;
      const body = `${k === 0 ? "" : '", " '}${item} ${tail(k + 1)}`;
      return k < min ? body : `( ${body} )?`;
    };
    if (max === 0) return '"[]"';
    return this.newRule("arr", `"[" ${tail(0)} "]"`);
  }

  private object(s: Record<string, unknown>, where: string): string {
    const props = (s.properties ?? {}) as Record<string, Schema>;
    if (!isObject(props)) unsupported(`${where}/properties`, "properties must be an object");
    const required = (s.required ?? []) as string[];
    if (!Array.isArray(required) || !required.every((r) => typeof r === "string")) unsupported(`${where}/required`, "required must be an array of strings");
    const names = Object.keys(props);
    const additional = s.additionalProperties ?? (s.properties === undefined ? true : false);
    if (typeof additional !== "boolean" && !isObject(additional)) unsupported(`${where}/additionalProperties`, "must be a boolean or a schema");
    for (const r of required) {
      if (names.includes(r)) continue;
      // Required but not described: a member that additionalProperties must accept.
      if (s.additionalProperties === false) unsupported(`${where}/required`, `"${r}" is required, but it is not in properties and additionalProperties is false: no object matches`);
      names.push(r);
    }
    const member = (name: string) =>
      `${gbnfLiteral(JSON.stringify(name) + ": ")} ${this.visit(name in props ? props[name] : additional as Schema, `${where}/properties/${name}`)}`;
    let extras: { first: string; rest: string } = { first: "", rest: "" };
    if (additional !== false) {
      const key = names.length === 0 ? `${this.p}-string` : `"\\"" ${this.newRule("key", notOneOf(names, this.p))} "\\""`;
      const kv = this.newRule("kv", `${key} ": " ${this.visit(additional as Schema, `${where}/additionalProperties`)}`);
      extras = { first: `( ${kv} ( ", " ${kv} )* )?`, rest: `( ", " ${kv} )*` };
    }
    // after(k, first): members k.. of `names`, then the extras; `first`: nothing written yet (no comma).
    const memo = new Map<string, string>();
    const after = (k: number, first: boolean): string => {
      if (k === names.length) return first ? extras.first : extras.rest;
      const id = `${k}${first}`;
      const known = memo.get(id);
      if (known !== undefined) return known;
      const present = `${first ? "" : '", " '}${member(names[k])} ${after(k + 1, false)}`;
      const body = required.includes(names[k]) ? present : `${present} | ${after(k + 1, first) || '""'}`;
      const rule = this.newRule("obj", body);
      memo.set(id, rule);
      return rule;
    };
    return this.newRule("obj", `"{" ${after(0, true)} "}"`);
  }
}

/** Key text (between the quotes) that is none of `names`: plain characters only (no escapes, so
 *  no spelling of a listed name can slip through). */
function notOneOf(names: string[], p: string): string {
  const plain = `[^"\\\\\\x00-\\x1f]`;
  type Node = { end: boolean; children: Map<string, Node> };
  const root: Node = { end: false, children: new Map() };
  for (const name of names) {
    let n = root;
    for (const ch of name) {
      let c = n.children.get(ch);
      if (!c) n.children.set(ch, (c = { end: false, children: new Map() }));
      n = c;
    }
    n.end = true;
  }
  const rule = (n: Node): string => {
    const alts: string[] = [];
    if (!n.end) alts.push('""');
    const avoid = [...n.children.keys()].filter((ch) => ch !== '"' && ch !== "\\" && ch.codePointAt(0)! >= 0x20);
    const other = avoid.length === 0 ? plain : `[^"\\\\\\x00-\\x1f${avoid.map(classEscape).join("")}]`;
    alts.push(`${other} ${plain}*`);
    for (const [ch, child] of n.children) {
      if (ch === '"' || ch === "\\" || ch.codePointAt(0)! < 0x20) continue; // never written plain
      alts.push(`${gbnfLiteral(ch)} ${rule(child)}`);
    }
    return `( ${alts.join(" | ")} )`;
  };
  void p;
  return rule(root);
}

function classEscape(ch: string): string {
  return "\\U" + ch.codePointAt(0)!.toString(16).padStart(8, "0");
}

/** Integers lo..hi (|both| <= MAX_INT) as GBNF alternatives, without leading zeros. */
export function intRange(lo: number, hi: number): string {
  const alts: string[] = [];
  if (lo < 0) {
    const a = Math.max(1, -Math.min(hi, -1)), b = -lo;
    alts.push(...positiveRanges(a, b).map((r) => `"-" ${r}`));
  }
  if (hi >= 0) alts.push(...positiveRanges(Math.max(0, lo), hi));
  return alts.join(" | ");
}

/** lo..hi (0 <= lo <= hi) as digit patterns (to-regex-range's split by nines and zeros). */
function positiveRanges(lo: number, hi: number): string[] {
  const stops = new Set<number>([hi]);
  for (let nines = 1; ; nines++) {
    const s = String(lo);
    const stop = nines >= s.length ? Number("9".repeat(nines)) : Number(s.slice(0, -nines) + "9".repeat(nines));
    if (!(lo <= stop && stop < hi)) break;
    stops.add(stop);
  }
  for (let zeros = 1; ; zeros++) {
    const stop = hi + 1 - ((hi + 1) % 10 ** zeros) - 1;
    if (!(lo < stop && stop <= hi)) break;
    stops.add(stop);
  }
  const out: string[] = [];
  let start = lo;
  for (const stop of [...stops].sort((a, b) => a - b)) {
    out.push(digitPattern(start, stop));
    start = stop + 1;
  }
  return out;
}

function digitPattern(a: number, b: number): string {
  const x = String(a), y = String(b);
  if (x.length !== y.length) {
    // a run like 0..9 then 10..99 is split above; here the lengths agree except 0-9 style cases
    return `( ${positiveRanges(a, Number("9".repeat(x.length))).join(" | ")} | ${positiveRanges(10 ** x.length, b).join(" | ")} )`;
  }
  const parts: string[] = [];
  for (let i = 0; i < x.length; i++) {
    if (x[i] === y[i]) parts.push(`"${x[i]}"`);
    else parts.push(x[i] === "0" && y[i] === "9" ? "[0-9]" : `[${x[i]}-${y[i]}]`);
  }
  return parts.join(" ");
}

/**
 * A regular expression (the `pattern` keyword, ECMAScript syntax as ajv runs it) as GBNF over the
 * JSON text of the string (special characters escaped as JSON writes them). Supported: literals,
 * escapes (\d \D \w \W \s \S \t \n \r \f \v \. and other escaped punctuation, \uHHHH, \u{...},
 * \xHH), classes [...] and [^...] with ranges, `.`, groups (...) and (?:...), `|`, the quantifiers
 * * + ? {n} {n,} {n,m} (lazy forms too), and ^ / $ at the ends. Without ^ (or $) anything may come
 * before (after) the match, as JSON Schema's unanchored patterns mean. Refused: backreferences,
 * lookaround, \b \B, named groups, anchors elsewhere.
 */
export function regexToGbnf(pattern: string, anyChar: string, where: string): string {
  let pos = 0;
  const fail: (message: string) => never = (message) => unsupported(where, `pattern ${JSON.stringify(pattern)}: ${message}`);
  const DIGIT: [number, number][] = [[48, 57]];
  const WORD: [number, number][] = [[48, 57], [65, 90], [95, 95], [97, 122]];
  const SPACE: [number, number][] = [[9, 13], [32, 32], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a], [0x2028, 0x2029], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000], [0xfeff, 0xfeff]];
  const invert = (r: [number, number][]): [number, number][] => {
    const out: [number, number][] = [];
    let next = 0;
    for (const [lo, hi] of [...r].sort((a, b) => a[0] - b[0])) { if (lo > next) out.push([next, lo - 1]); next = Math.max(next, hi + 1); }
    if (next <= 0x10ffff) out.push([next, 0x10ffff]);
    return out;
  };
  const escapeSet = (): [number, number][] | number => {
    const e = pattern[pos++];
    if (e === undefined) fail("ends with a backslash");
    const sets: Record<string, [number, number][]> = { d: DIGIT, D: invert(DIGIT), w: WORD, W: invert(WORD), s: SPACE, S: invert(SPACE) };
    if (e in sets) return sets[e];
    const simple: Record<string, number> = { t: 9, n: 10, r: 13, f: 12, v: 11, "0": 0 };
    if (e in simple) return simple[e];
    if (e === "u" && pattern[pos] === "{") {
      const m = /^\{([0-9a-fA-F]+)\}/.exec(pattern.slice(pos));
      if (!m) fail("bad \\u{...}");
      pos += m[0].length;
      return parseInt(m[1], 16);
    }
    if (e === "u" || e === "x") {
      const n = e === "u" ? 4 : 2;
      const h = pattern.slice(pos, pos + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(h)) fail(`\\${e} needs ${n} hex digits`);
      pos += n;
      return parseInt(h, 16);
    }
    if (/[bB]/.test(e)) fail(`\\${e} (word boundaries) is not supported`);
    if (/[1-9k]/.test(e)) fail("backreferences are not supported");
    if (/[a-zA-Z]/.test(e)) fail(`the escape \\${e} is not supported`);
    return e.codePointAt(0)!;
  };
  const toCharRule = (ranges: [number, number][]): string => jsonCharSet(ranges);
  const atom = (): string => {
    const c = pattern[pos];
    if (c === "(") {
      pos++;
      if (pattern[pos] === "?") {
        if (pattern[pos + 1] === ":") pos += 2;
        else fail("lookaround and named groups are not supported");
      }
      const inner = alternation();
      if (pattern[pos] !== ")") fail('expected ")"');
      pos++;
      return `( ${inner} )`;
    }
    if (c === "[") {
      pos++;
      const negated = pattern[pos] === "^";
      if (negated) pos++;
      const ranges: [number, number][] = [];
      let first = true;
      while (pattern[pos] !== "]" || first) {
        first = false;
        if (pos >= pattern.length) fail("unterminated [class]");
        let lo: [number, number][] | number;
        if (pattern[pos] === "\\") { pos++; lo = escapeSet(); } else { lo = pattern.codePointAt(pos)!; pos += lo > 0xffff ? 2 : 1; }
        if (typeof lo !== "number") { ranges.push(...lo); continue; }
        if (pattern[pos] === "-" && pattern[pos + 1] !== "]" && pos + 1 < pattern.length) {
          pos++;
          let hi: [number, number][] | number;
          if (pattern[pos] === "\\") { pos++; hi = escapeSet(); } else { hi = pattern.codePointAt(pos)!; pos += hi > 0xffff ? 2 : 1; }
          if (typeof hi !== "number") return fail("a class range cannot end in a class escape");
          if (hi < lo) fail("a class range is reversed");
          ranges.push([lo, hi]);
        } else ranges.push([lo, lo]);
      }
      pos++;
      return toCharRule(negated ? invert(ranges) : ranges);
    }
    if (c === ".") { pos++; return toCharRule(invert([[10, 10], [13, 13], [0x2028, 0x2029]])); }
    if (c === "\\") {
      pos++;
      const e = escapeSet();
      return toCharRule(typeof e === "number" ? [[e, e]] : e);
    }
    if (c === "^" || c === "$") fail(`${c} is supported only at the start (^) or end ($) of the pattern`);
    if (c === "*" || c === "+" || c === "?" || c === "{" || c === ")") fail(`unexpected ${c}`);
    const cp = pattern.codePointAt(pos)!;
    pos += cp > 0xffff ? 2 : 1;
    return toCharRule([[cp, cp]]);
  };
  const quantified = (): string => {
    let a = atom();
    for (;;) {
      const c = pattern[pos];
      let q = "";
      if (c === "*" || c === "+" || c === "?") { q = c; pos++; }
      else if (c === "{") {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(pos));
        if (!m) fail("bad {n,m} quantifier");
        pos += m[0].length;
        const n = Number(m[1]);
        if (n > MAX_LENGTH || (m[3] && Number(m[3]) > MAX_LENGTH)) fail(`counts above ${MAX_LENGTH} are not supported`);
        q = m[2] === undefined ? `{${n}}` : m[3] === "" ? `{${n},}` : `{${n},${m[3]}}`;
      } else return a;
      if (pattern[pos] === "?") pos++; // lazy: the same language
      a = `( ${a} )${q}`;
    }
  };
  const sequence = (): string => {
    const parts: string[] = [];
    while (pos < pattern.length && pattern[pos] !== "|" && pattern[pos] !== ")") {
      if (pattern[pos] === "$" && pos === pattern.length - 1) break;
      parts.push(quantified());
    }
    return parts.length === 0 ? '""' : parts.join(" ");
  };
  const alternation = (): string => {
    const alts = [sequence()];
    while (pattern[pos] === "|") { pos++; alts.push(sequence()); }
    return alts.length === 1 ? alts[0] : `( ${alts.join(" | ")} )`;
  };
  const anchoredStart = pattern.startsWith("^");
  if (anchoredStart) pos++;
  const body = alternation();
  const anchoredEnd = pattern[pos] === "$" && pos === pattern.length - 1;
  if (anchoredEnd) pos++;
  if (pos < pattern.length) fail(`unexpected ${pattern[pos]} at ${pos}`);
  return `${anchoredStart ? "" : `${anyChar}* `}( ${body} )${anchoredEnd ? "" : ` ${anyChar}*`}`;
}

/** Characters (code point ranges) as they appear in JSON text: plain ones as themselves, `"`, `\`
 *  and control characters as their JSON escapes. */
function jsonCharSet(ranges: [number, number][]): string {
  const alts: string[] = [];
  const plain: [number, number][] = [];
  const escapes: Record<number, string> = { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r", 34: '\\"', 92: "\\\\" };
  for (const [lo, hi] of ranges) {
    for (let c = lo; c <= Math.min(hi, 0x1f); c++) alts.push(gbnfLiteral(escapes[c] ?? "\\u" + c.toString(16).padStart(4, "0")));
    let a = Math.max(lo, 0x20);
    for (const special of [34, 92]) {
      if (a <= special && special <= hi) {
        if (a < special) plain.push([a, special - 1]);
        alts.push(gbnfLiteral(escapes[special]));
        a = special + 1;
      }
    }
    if (a <= hi) plain.push([a, hi]);
  }
  if (plain.length > 0) {
    alts.unshift(`[${plain.map(([lo, hi]) => lo === hi ? classEscape(String.fromCodePoint(lo)) : `${classEscape(String.fromCodePoint(lo))}-${classEscape(String.fromCodePoint(hi))}`).join("")}]`);
  }
  if (alts.length === 0) return '""';
  return alts.length === 1 ? alts[0] : `( ${alts.join(" | ")} )`;
}

/** Whether a listed value passes the scalar keywords next to enum/const (as JSON Schema defines them). */
function satisfies(v: unknown, s: Record<string, unknown>): boolean {
  if (s.type !== undefined && !([s.type].flat() as string[]).some((t) => jsonType(v, t))) return false;
  if (typeof v === "number") {
    if (typeof s.minimum === "number" && v < s.minimum) return false;
    if (typeof s.maximum === "number" && v > s.maximum) return false;
    if (typeof s.exclusiveMinimum === "number" && v <= s.exclusiveMinimum) return false;
    if (typeof s.exclusiveMaximum === "number" && v >= s.exclusiveMaximum) return false;
  }
  if (typeof v === "string") {
    const length = [...v].length;
    if (typeof s.minLength === "number" && length < s.minLength) return false;
    if (typeof s.maxLength === "number" && length > s.maxLength) return false;
    if (typeof s.pattern === "string" && !new RegExp(s.pattern, "u").test(v)) return false;
  }
  return true;
}

function jsonType(v: unknown, t: string): boolean {
  switch (t) {
    case "null": return v === null;
    case "boolean": return typeof v === "boolean";
    case "string": return typeof v === "string";
    case "integer": return Number.isInteger(v);
    case "number": return typeof v === "number";
    case "array": return Array.isArray(v);
    default: return isObject(v);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function omit(s: Record<string, unknown>, key: string): Record<string, unknown> {
  const { [key]: _, ...rest } = s;
  return rest;
}

function hasKeywords(s: Record<string, unknown>): boolean {
  return Object.keys(s).some((k) => !ANNOTATIONS.has(k));
}

function arrayOf(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v) || v.length === 0) unsupported(where, "must be a non-empty array of schemas");
  return v;
}

function count(v: unknown, where: string): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0) unsupported(where, "must be an integer >= 0");
  return v as number;
}
