// Interactive terminal input for the CLI's chat (Node): a line reader with history, and Ctrl-C
// delivered as an event instead of ending the process.
import { createInterface } from "node:readline";
import { Writable } from "node:stream";

export interface LineReader {
  /** The next line, or null at end of input (Ctrl-D). */
  question(prompt: string): Promise<string | null>;
  /** Called on Ctrl-C; by default the reader closes. */
  onInterrupt(handler: () => void): void;
  /**
   * While a reply is being written (`on`), keys typed on a terminal are neither echoed into it nor
   * kept as a later question, and Ctrl-D ends the input at once: `onEnd` is called (stop the reply)
   * and the next question returns null. Piped input is kept in order, as always.
   */
  replying(on: boolean): void;
  /** Called when the input ends while replying (Ctrl-D on a terminal). */
  onEnd(handler: () => void): void;
  close(): void;
}

export function createLineReader(): LineReader {
  const terminal = Boolean(process.stdin.isTTY);
  let muted = false;
  // readline echoes what is typed through its output: during a reply that output is muted, so that
  // typed keys do not land in the middle of the model's text.
  const output = new Writable({
    write(chunk, _encoding, callback) {
      if (!muted) process.stdout.write(chunk);
      callback();
    },
  });
  Object.defineProperty(output, "columns", { get: () => process.stdout.columns });
  const rl = createInterface({ input: process.stdin, output, terminal, historySize: 1000 });
  let closed = false;
  let replying = false;
  let pending: ((line: string | null) => void) | undefined;
  let end = () => undefined as void;
  const lines: string[] = [];
  rl.on("line", (line) => {
    if (pending) { const p = pending; pending = undefined; p(line); } else if (!(replying && terminal)) lines.push(line);
  });
  rl.on("close", () => {
    closed = true;
    pending?.(null);
    pending = undefined;
    if (replying && terminal) end();
  });
  if (terminal) {
    // readline closes on Ctrl-D only at an empty line; during a reply any Ctrl-D ends the input.
    process.stdin.on("keypress", (_text: string, key?: { ctrl?: boolean; name?: string }) => {
      if (replying && !closed && key?.ctrl && key.name === "d") rl.close();
    });
  }
  let interrupt = () => rl.close();
  rl.on("SIGINT", () => interrupt());
  // Where the input is not a terminal, Ctrl-C arrives as a process signal.
  process.on("SIGINT", () => interrupt());
  return {
    question(prompt) {
      if (lines.length > 0) return Promise.resolve(lines.shift()!);
      if (closed) return Promise.resolve(null);
      rl.setPrompt(prompt);
      rl.prompt();
      return new Promise((resolve) => { pending = resolve; });
    },
    onInterrupt(handler) { interrupt = handler; },
    onEnd(handler) { end = handler; },
    replying(on) {
      replying = on;
      if (!terminal) return;
      if (!on && !closed) {
        // Drop what was typed during the reply (still muted: nothing is drawn), then show input again.
        rl.write(null, { ctrl: true, name: "e" });
        rl.write(null, { ctrl: true, name: "u" });
      }
      muted = on;
    },
    close() { rl.close(); },
  };
}
