// Interactive terminal input for the CLI's chat (Node): a line reader with history, and Ctrl-C
// delivered as an event instead of ending the process.
import { createInterface } from "node:readline";

export interface LineReader {
  /** The next line, or null at end of input (Ctrl-D). */
  question(prompt: string): Promise<string | null>;
  /** Called on Ctrl-C; by default the reader closes. */
  onInterrupt(handler: () => void): void;
  close(): void;
}

export function createLineReader(): LineReader {
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY, historySize: 1000 });
  let closed = false;
  let pending: ((line: string | null) => void) | undefined;
  const lines: string[] = [];
  rl.on("line", (line) => {
    if (pending) { const p = pending; pending = undefined; p(line); } else lines.push(line);
  });
  rl.on("close", () => {
    closed = true;
    pending?.(null);
    pending = undefined;
  });
  let interrupt = () => rl.close();
  rl.on("SIGINT", () => interrupt());
  // While a reply streams, readline is paused; Ctrl-C then arrives as a process signal.
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
    close() { rl.close(); },
  };
}
