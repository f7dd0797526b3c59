// Progress of a long step on stderr: a bar redrawn in place on a terminal; elsewhere (a pipe, a log
// file) a line every few seconds and one at the end, so that a slow step never looks stuck.

export interface ProgressOptions {
  /** Where the text goes; default process.stderr. */
  write?: (text: string) => void;
  /** Whether `write` goes to a terminal; default process.stderr.isTTY. */
  isTTY?: boolean;
  /** Milliseconds between two lines when not on a terminal; default 5000. */
  intervalMs?: number;
  /** The clock; default performance.now. */
  now?: () => number;
}

/** Returns the function to call with (done, total); `label` starts every bar or line. */
export function progressReporter(label: string, options: ProgressOptions = {}): (done: number, total: number) => void {
  const write = options.write ?? ((text: string) => { process.stderr.write(text); });
  const isTTY = options.isTTY ?? Boolean(process.stderr.isTTY);
  const intervalMs = options.intervalMs ?? 5000;
  const now = options.now ?? (() => performance.now());
  let lastPct = -1;
  let lastLine = now();
  return (done, total) => {
    const pct = Math.min(100, Math.floor((100 * done) / Math.max(1, total)));
    if (pct === lastPct) return;
    lastPct = pct;
    if (isTTY) {
      const width = 30;
      const filled = Math.round((width * pct) / 100);
      write(`\r${label} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${pct}%${pct === 100 ? "\n" : ""}`);
      return;
    }
    const t = now();
    if (pct < 100 && t - lastLine < intervalMs) return;
    lastLine = t;
    write(`${label} ${pct}% (${mib(done)} of ${mib(total)} MiB)\n`);
  };
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(0);
}
