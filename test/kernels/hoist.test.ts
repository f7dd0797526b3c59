// scripts/hoist-constants.mjs: the build moves the v128 constants of the kernels' loops into locals
// set at function entry (V8 13 rebuilds a v128.const at every use inside a loop; see the script).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { projectRoot } from "../fixtures";

/** The build script (plain JavaScript, no declarations). */
const script = pathToFileURL(join(projectRoot, "scripts", "hoist-constants.mjs")).href;
const { hoistLoopConstants: hoist } = (await import(script)) as {
  hoistLoopConstants: (wat: string, stats?: { functions: number; uses: number; locals: number }) => string;
};

/** The non-trivial v128.const lines inside a loop of the module text (what the build removes). */
function constantsInLoops(wat: string): string[] {
  const found: string[] = [];
  const stack: string[] = [];
  for (const line of wat.split("\n")) {
    const open = /^\s*(block|loop|if|try)\b/.exec(line);
    if (open) stack.push(open[1]);
    else if (/^\s*end\b/.test(line)) stack.pop();
    else if (/^ \(func /.test(line)) stack.length = 0;
    else if (stack.includes("loop") && /^\s*v128\.const /.test(line) &&
      !/i32x4( 0x00000000){4}\s*$/.test(line) && !/i32x4( 0xffffffff){4}\s*$/.test(line)) found.push(line.trim());
  }
  return found;
}

const SAMPLE = [
  "(module",
  " (func $f (param $0 i32) (result v128)",
  "  (local $1 v128)",
  "  v128.const i32x4 0x00000007 0x00000007 0x00000007 0x00000007",
  "  local.set $1",
  "  loop $l",
  "   local.get $1",
  "   v128.const i32x4 0x0f0f0f0f 0x0f0f0f0f 0x0f0f0f0f 0x0f0f0f0f",
  "   v128.and",
  "   v128.const i32x4 0x00000000 0x00000000 0x00000000 0x00000000",
  "   v128.or",
  "   v128.const i32x4 0x0f0f0f0f 0x0f0f0f0f 0x0f0f0f0f 0x0f0f0f0f",
  "   v128.xor",
  "   local.set $1",
  "   local.get $0",
  "   br_if $l",
  "  end",
  "  local.get $1",
  " )",
  ")",
].join("\n");

describe("hoisting the loops' v128 constants", () => {
  it("reads each distinct constant of a loop from one local set at entry; constants outside loops, zeros and all-ones stay", () => {
    const stats = { functions: 0, uses: 0, locals: 0 };
    const out = hoist(SAMPLE, stats);
    expect(stats).toEqual({ functions: 1, uses: 2, locals: 1 });
    expect(constantsInLoops(out)).toEqual([]);
    const lines = out.split("\n").map((l) => l.trim());
    expect(lines.slice(2, 6)).toEqual(["(local $1 v128)", "(local $hoisted0 v128)",
      "v128.const i32x4 0x0f0f0f0f 0x0f0f0f0f 0x0f0f0f0f 0x0f0f0f0f", "local.set $hoisted0"]);
    expect(lines.filter((l) => l === "local.get $hoisted0")).toHaveLength(2);
    expect(lines).toContain("v128.const i32x4 0x00000007 0x00000007 0x00000007 0x00000007"); // before the loop
    expect(lines).toContain("v128.const i32x4 0x00000000 0x00000000 0x00000000 0x00000000"); // a pxor
  });

  it.each(["kernels", "kernels-relaxed", "kernels-single", "kernels-single-relaxed", "kernels-test"])(
    "build/%s.wat has no v128 constant left inside a loop", (name) => {
      const wat = readFileSync(join(projectRoot, "build", `${name}.wat`), "utf8");
      expect(constantsInLoops(wat)).toEqual([]);
      expect(wat).toContain("$hoisted0");
    });
});
