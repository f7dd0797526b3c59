// A small strict parser of the Prometheus text exposition format 0.0.4, for the tests of GET
// /metrics: it rejects what Prometheus would reject (bad names, labels, escapes, values, samples
// of undeclared families, a family declared twice, duplicate series) and checks histograms
// (buckets ascending and cumulative, +Inf equal to _count, _sum and _count present).

export interface Sample { name: string; labels: Record<string, string>; value: number }
export interface Family { name: string; type: string; help?: string; samples: Sample[] }

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function fail(line: number, message: string): never {
  throw new Error(`metrics line ${line}: ${message}`);
}

function parseValue(text: string, line: number): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) fail(line, `bad value ${JSON.stringify(text)}`);
  return Number(text);
}

/** Labels from just after "{"; returns them and the index just past "}". */
function parseLabels(text: string, at: number, line: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  let i = at;
  for (;;) {
    if (text[i] === "}") return [labels, i + 1];
    const eq = text.indexOf("=", i);
    if (eq < 0) fail(line, "label without =");
    const name = text.slice(i, eq);
    if (!LABEL.test(name)) fail(line, `bad label name ${JSON.stringify(name)}`);
    if (name in labels) fail(line, `label ${name} twice`);
    if (text[eq + 1] !== '"') fail(line, "label value not quoted");
    let value = "";
    let j = eq + 2;
    for (;; j++) {
      if (j >= text.length) fail(line, "unterminated label value");
      const c = text[j];
      if (c === '"') break;
      if (c === "\\") {
        const n = text[++j];
        if (n === "n") value += "\n";
        else if (n === "\\" || n === '"') value += n;
        else fail(line, `bad escape \\${n}`);
      } else {
        value += c;
      }
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") fail(line, "expected , or } after a label");
  }
}

export function parsePrometheus(text: string): Map<string, Family> {
  if (!text.endsWith("\n")) throw new Error("metrics text must end with a newline");
  const families = new Map<string, Family>();
  const series = new Set<string>();
  const typed = new Set<string>();
  let current: Family | undefined;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((raw, index) => {
    const line = index + 1;
    if (raw === "") fail(line, "empty line");
    if (raw.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(raw);
      if (!m) fail(line, `bad comment ${JSON.stringify(raw)}`);
      const [, kind, name, rest] = m;
      if (!NAME.test(name)) fail(line, `bad metric name ${name}`);
      if (kind === "TYPE") {
        if (!TYPES.has(rest)) fail(line, `bad type ${rest}`);
        if (typed.has(name) || (families.get(name)?.samples.length ?? 0) > 0) fail(line, `family ${name} typed twice or after its samples`);
        typed.add(name);
        const family = families.get(name) ?? { name, type: rest, samples: [] };
        family.type = rest;
        families.set(name, family);
        current = family;
      } else {
        if (families.get(name)?.help !== undefined) fail(line, `HELP of ${name} twice`);
        const family = families.get(name) ?? { name, type: "untyped", samples: [] };
        family.help = rest;
        families.set(name, family);
      }
      return;
    }
    const brace = raw.indexOf("{");
    const space = raw.indexOf(" ");
    const nameEnd = brace >= 0 && brace < space ? brace : space;
    if (nameEnd <= 0) fail(line, `bad sample ${JSON.stringify(raw)}`);
    const name = raw.slice(0, nameEnd);
    if (!NAME.test(name)) fail(line, `bad metric name ${name}`);
    let labels: Record<string, string> = {};
    let rest = nameEnd;
    if (raw[nameEnd] === "{") [labels, rest] = parseLabels(raw, nameEnd + 1, line);
    const tail = raw.slice(rest);
    const vm = /^ (\S+)( -?\d+)?$/.exec(tail);
    if (!vm) fail(line, `bad value part ${JSON.stringify(tail)}`);
    const value = parseValue(vm[1], line);
    if (!current) fail(line, `sample ${name} before any TYPE`);
    const allowed = current.type === "histogram" ? [`${current.name}_bucket`, `${current.name}_sum`, `${current.name}_count`] : [current.name];
    if (!allowed.includes(name)) fail(line, `sample ${name} is not of the family ${current.name} (${current.type})`);
    if (name.endsWith("_bucket") && current.type === "histogram" && !("le" in labels)) fail(line, "bucket without le");
    const key = name + JSON.stringify(Object.entries(labels).sort());
    if (series.has(key)) fail(line, `series ${key} twice`);
    series.add(key);
    if (current.type === "counter" && !(value >= 0)) fail(line, `counter ${name} is ${value}`);
    current.samples.push({ name, labels, value });
  });
  for (const family of families.values()) {
    if (family.type === "histogram") checkHistogram(family);
  }
  return families;
}

function checkHistogram(family: Family): void {
  const groups = new Map<string, Sample[]>();
  for (const s of family.samples) {
    const { le: _le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  for (const samples of groups.values()) {
    const buckets = samples.filter((s) => s.name.endsWith("_bucket"));
    const count = samples.find((s) => s.name === `${family.name}_count`);
    const sum = samples.find((s) => s.name === `${family.name}_sum`);
    if (!count || !sum) throw new Error(`histogram ${family.name}: _count or _sum missing`);
    if (buckets.length === 0 || buckets[buckets.length - 1].labels.le !== "+Inf") throw new Error(`histogram ${family.name}: no +Inf bucket last`);
    for (let i = 1; i < buckets.length; i++) {
      if (!(Number(buckets[i].labels.le === "+Inf" ? Infinity : buckets[i].labels.le) > Number(buckets[i - 1].labels.le))) {
        throw new Error(`histogram ${family.name}: buckets not ascending`);
      }
      if (buckets[i].value < buckets[i - 1].value) throw new Error(`histogram ${family.name}: buckets not cumulative`);
    }
    if (buckets[buckets.length - 1].value !== count.value) throw new Error(`histogram ${family.name}: +Inf bucket != _count`);
  }
}

/** The one sample of a family (optionally with these labels); throws when there is not exactly one. */
export function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const family = families.get(name) ?? [...families.values()].find((f) => f.samples.some((s) => s.name === name));
  if (!family) throw new Error(`no metric ${name}`);
  const matches = family.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length !== 1) throw new Error(`${matches.length} samples of ${name} ${JSON.stringify(labels)}`);
  return matches[0].value;
}
