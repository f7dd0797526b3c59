// The command line is strict: an option a command does not document is refused with the closest
// known name, usage errors are one line that says where the usage is, and the top-level help has a
// description per command.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { editDistance, parseArgs } from "../../cli/args";
import { QwasmError } from "../../platform/errors";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { readQwen2Vocabulary, synthQwen2 } from "../../tools/synth";
import { cliBuilt, runCli } from "./helpers";

const HELP = `qwasm run [MODEL] (--prompt T | --chat T)

  --max-tokens N   most tokens
  --ignore-eos     keep going`;

function errorOf(f: () => unknown): QwasmError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(QwasmError);
    return e as QwasmError;
  }
  throw new Error("expected an error");
}

describe("parseArgs with a help text", () => {
  it("takes the options the help names", () => {
    const args = parseArgs(["m.gguf", "--max-tokens", "3", "--ignore-eos", "--prompt=hi"], ["ignore-eos"], HELP);
    expect(args.positionals).toEqual(["m.gguf"]);
    expect([...args.options]).toEqual([["max-tokens", "3"], ["ignore-eos", true], ["prompt", "hi"]]);
  });

  it("refuses any other option, suggesting the closest", () => {
    const near = errorOf(() => parseArgs(["--max-token", "3"], [], HELP));
    expect(near.code).toBe("INVALID_ARGUMENT");
    expect(near.message).toBe("unknown option --max-token; did you mean --max-tokens? (see qwasm run --help)");
    expect(errorOf(() => parseArgs(["--promt=x"], [], HELP)).message).toContain("did you mean --prompt?");
    const far = errorOf(() => parseArgs(["--temperature", "1"], [], HELP));
    expect(far.message).toBe("unknown option --temperature (see qwasm run --help)");
  });

  it("measures edit distance", () => {
    expect(editDistance("max-token", "max-tokens")).toBe(1);
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("same", "same")).toBe(0);
  });
});

describe.skipIf(!cliBuilt)("the built CLI", () => {
  const tmp = mkdtempSync(join(tmpdir(), "qwasm-usage-"));
  const model = join(tmp, "tiny.gguf");
  beforeAll(async () => {
    writeFileSync(model, await writeGGUFBytes(synthQwen2({ shape: "tiny", vocabulary: await readQwen2Vocabulary(), type: "Q8_0", seed: 1 })));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it("caps --threads at the cores with a warning, unless --oversubscribe", async () => {
    const cores = availableParallelism();
    const capped = await runCli(["run", model, "--prompt", "hi", "--max-tokens", "2", "--threads", String(cores + 7)]);
    expect(capped.code, capped.stderr).toBe(0);
    expect(capped.stderr).toContain(`${cores + 7} threads asked for, but this process has ${cores} core`);
    expect(capped.stderr).toMatch(new RegExp(`\\(${cores} threads?,`));
    const forced = await runCli(["run", model, "--prompt", "hi", "--max-tokens", "2", "--threads", String(cores + 1), "--oversubscribe"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr).not.toContain("threads asked for");
    expect(forced.stderr).toMatch(new RegExp(`\\(${cores + 1} threads,`));
  });

  it("refuses a misspelt option instead of ignoring it", async () => {
    const { code, stdout, stderr } = await runCli(["run", model, "--prompt", "hi", "--max-token", "3"]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toBe("qwasm: unknown option --max-token; did you mean --max-tokens? (see qwasm run --help) [INVALID_ARGUMENT]\n");
  });

  it("prints usage errors as one line pointing at the command's help", async () => {
    const cases: [string[], RegExp][] = [
      [["run", model], /^qwasm: give exactly one of --prompt or --chat \(see qwasm run --help\) \[INVALID_ARGUMENT\]$/],
      [["logits", model], /^qwasm: give exactly one of --ids or --ids-file \(see qwasm logits --help\) \[INVALID_ARGUMENT\]$/],
      [["tokenize", model], /^qwasm: give MODEL and exactly one of .* \(see qwasm tokenize --help\) \[INVALID_ARGUMENT\]$/],
      [["serve", "a", "b"], /^qwasm: serve takes one MODEL.* \(see qwasm serve --help\) \[INVALID_ARGUMENT\]$/],
      [["bench", model, "--repeat", "0"], /^qwasm: --repeat must be an integer >= 1, got 0 \(see qwasm bench --help\) \[INVALID_ARGUMENT\]$/],
      [["run", model, "--max-tokens"], /^qwasm: option --max-tokens needs a value \(see qwasm run --help\) \[INVALID_ARGUMENT\]$/],
      [["inspect"], /^qwasm inspect: give one MODEL, got 0 \(see qwasm inspect --help\)$/],
      [["runn"], /^qwasm: unknown command "runn"; did you mean run\? \(see qwasm --help\) \[INVALID_ARGUMENT\]$/],
    ];
    for (const [argv, expected] of cases) {
      const { code, stderr } = await runCli(argv);
      expect(code, argv.join(" ")).not.toBe(0);
      expect(stderr.trimEnd(), argv.join(" ")).toMatch(expected);
    }
    expect(cases.length).toBe(8);
  });

  it("refuses logits --ids with an empty item (it ran token 0)", async () => {
    for (const ids of ["", "1,,2", " "]) {
      const { code, stdout, stderr } = await runCli(["logits", model, "--ids", ids]);
      expect(code, JSON.stringify(ids)).toBe(2);
      expect(stdout).toBe("");
      expect(stderr).toMatch(/the ids must be a non-empty list of non-negative integers.*\[INVALID_ARGUMENT\]\n$/);
    }
    const ok = await runCli(["logits", model, "--ids", "1,2", "--threads", "1"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).positions.map((p: { token: number }) => p.token)).toEqual([1, 2]);
  });

  it("describes every command in one line in the top-level help", async () => {
    const { code, stdout } = await runCli(["--help"]);
    expect(code).toBe(0);
    const commands = stdout.split("\n").filter((l) => /^ {2}[a-z-]+ {2,}\S/.test(l));
    expect(commands.length).toBe(13);
    for (const line of commands) expect(line, line).not.toMatch(/usage|qwasm /);
    expect(stdout).toMatch(/^ {2}inspect +a GGUF file's metadata/m);
  });

  it("inspect --json has camelCase keys", async () => {
    const { code, stdout } = await runCli(["inspect", model, "--json"]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.qwen2Config).toMatchObject({ runnable: true, hidden: 64 });
    expect(Object.keys(report).filter((k) => /\s/.test(k))).toEqual([]);
  });
});
