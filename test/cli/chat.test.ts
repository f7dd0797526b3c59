// qwasm chat in a pseudo-terminal (python3's pty module: no native addon): text typed during a reply
// stays out of the reply and is not run later, and Ctrl-D during a reply stops it and quits.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CLI, cliBuilt, runCli } from "./helpers";

const python = spawnSync("python3", ["-c", "import pty"], { encoding: "utf8" });
const havePty = python.status === 0;

// Runs argv in a pseudo-terminal and plays a script: wait for text, type, wait for N more bytes of
// output. Prints JSON: everything the terminal showed, where each step began, and the exit status.
// The deadline only guards against a hang (the test then fails on the status), it measures nothing.
const DRIVER = String.raw`
import json, os, pty, select, sys, time
argv = json.loads(sys.argv[1]); steps = json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out = b""; marks = []; deadline = time.time() + 90
def pump(timeout):
    global out
    r, _, _ = select.select([fd], [], [], timeout)
    if not r: return True
    try: data = os.read(fd, 65536)
    except OSError: return False
    if not data: return False
    out += data; return True
alive = True
for step in steps:
    if "wait" in step:
        while alive and step["wait"].encode() not in out and time.time() < deadline: alive = pump(0.5)
    if "more" in step:
        start = len(out)
        while alive and len(out) - start < step["more"] and time.time() < deadline: alive = pump(0.5)
    if "type" in step:
        marks.append(len(out)); os.write(fd, step["type"].encode())
while alive and time.time() < deadline: alive = pump(0.5)
if time.time() >= deadline: os.kill(pid, 9)
_, status = os.waitpid(pid, 0)
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
print(json.dumps({"out": out.decode("utf8", "replace"), "marks": marks, "code": code}))
`;

describe.skipIf(!cliBuilt || !havePty)("qwasm chat in a terminal (needs dist/cli.js and python3)", () => {
  const tmp = mkdtempSync(join(tmpdir(), "qwasm-chat-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it("keeps typed text out of the reply, drops it, and quits on Ctrl-D during the reply", async () => {
    const model = join(tmp, "tiny.gguf");
    // A context long enough that the reply is still being written while the keys arrive.
    const synth = await runCli(["synth", model, "--shape", "tiny", "--type", "Q8_0", "--context", "32768"]);
    expect(synth.code, synth.stderr).toBe(0);
    const argv = [process.execPath, CLI, "chat", model, "--threads", "1", "--context", "32768", "--max-tokens", "30000",
      "--temperature", "0"];
    const steps = [
      { wait: "> " },
      { type: "hello\r" },
      { more: 200 },              // the reply is streaming
      { type: "typed-during-reply\r" },
      { more: 200 },              // and goes on
      { type: "\x04" },           // Ctrl-D
    ];
    const run = spawnSync("python3", ["-c", DRIVER, JSON.stringify(argv), JSON.stringify(steps)], {
      encoding: "utf8", timeout: 150_000, maxBuffer: 64 * 2 ** 20,
    });
    expect(run.status, run.stderr).toBe(0);
    const { out, marks, code } = JSON.parse(run.stdout) as { out: string; marks: number[]; code: number };
    expect(marks).toHaveLength(3);
    const afterTyping = out.slice(marks[1]);
    expect(code, out.slice(-500)).toBe(0);
    // Not echoed into the reply, and not run as a question afterwards.
    expect(afterTyping).not.toContain("typed-during-reply");
    expect(afterTyping).not.toMatch(/typed/);
    // The reply stopped at Ctrl-D, and no prompt came after it.
    expect(afterTyping).toMatch(/tokens\/s, stopped\]/);
    expect(out.slice(out.lastIndexOf("stopped]"))).not.toContain("> ");
    // One reply only (30000 tokens were allowed).
    expect(out.match(/tokens\/s/g)).toHaveLength(1);
  });
});
