// Hoists the v128 constants of the kernels' loops into locals set once at function entry, after asc
// has optimized the module (Binaryen's optimizer propagates such locals back into their uses, so the
// source cannot express it). Why: V8 13 (Node 24, Turboshaft) rebuilds a v128.const at every use
// inside a loop (movq r10,[rip+c]; vmovq; vpunpcklqdq, three instructions and a load, per use), while
// V8 11/12's TurboFan (Node 20/22) materialized it once before the loop; a constant that arrives in a
// local set before the loop is built once there by both. A local holding a constant computes what the
// constant does: the results are bit-identical. Zero and all-ones constants stay (one pxor/pcmpeqd).
import binaryen from "assemblyscript/binaryen"; // the binaryen that asc itself uses (assemblyscript re-exports it)

const OPEN = /^\s*(block|loop|if|try)\b/;
const END = /^\s*end\b/;
const CONST = /^(\s*)v128\.const\s+(.*?)\s*$/;

/** Whether a v128.const operand (text after "v128.const") is all zeros or all ones. */
function cheap(operand) {
  const [shape, ...lanes] = operand.split(/\s+/);
  if (shape !== "i32x4") return false;
  return lanes.every((l) => /^0x0+$/.test(l)) || lanes.every((l) => /^0xffffffff$/i.test(l));
}

/** The module text with every function's in-loop v128 constants hoisted (see above); `stats` counts. */
export function hoistLoopConstants(wat, stats = { functions: 0, uses: 0, locals: 0 }) {
  const lines = wat.split("\n");
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!/^ \(func /.test(line)) { out.push(line); i++; continue; }
    // one function: its header, its (local ...) lines, its body up to the next top-level line
    let j = i + 1;
    while (j < lines.length && !/^ [(\)]/.test(lines[j]) && lines[j] !== ")") j++;
    const fn = lines.slice(i, j);
    let k = 1;
    while (k < fn.length && /^\s+\(local /.test(fn[k])) k++;
    const header = fn.slice(0, k), body = fn.slice(k);
    const stack = [];
    const names = new Map(); // constant operand -> local name
    let uses = 0;
    const newBody = body.map((l) => {
      const open = OPEN.exec(l);
      if (open) { stack.push(open[1]); return l; }
      if (END.test(l)) { stack.pop(); return l; }
      const c = CONST.exec(l);
      if (!c || !stack.includes("loop") || cheap(c[2])) return l;
      let name = names.get(c[2]);
      if (!name) { name = `$hoisted${names.size}`; names.set(c[2], name); }
      uses++;
      return `${c[1]}local.get ${name}`;
    });
    if (names.size === 0) { out.push(...fn); i = j; continue; }
    stats.functions++; stats.uses += uses; stats.locals += names.size;
    out.push(...header);
    for (const name of names.values()) out.push(`  (local ${name} v128)`);
    for (const [operand, name] of names) out.push(`  v128.const ${operand}`, `  local.set ${name}`);
    out.push(...body.length ? newBody : []);
    i = j;
  }
  return out.join("\n");
}

/** Rewrites a compiled module (its text from asc) into a hoisted binary and text. */
export function hoistModule(wat, features) {
  const stats = { functions: 0, uses: 0, locals: 0 };
  const text = hoistLoopConstants(wat, stats);
  const module = binaryen.parseText(text);
  module.setFeatures(features);
  if (!module.validate()) throw new Error("hoist-constants: the rewritten module does not validate");
  const result = { wasm: module.emitBinary(), wat: module.emitText(), stats };
  module.dispose();
  return result;
}
