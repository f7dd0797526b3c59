// Progress on stderr: a bar on a terminal; elsewhere a line every interval and one at the end (the
// clock is injected: nothing here depends on real time).
import { describe, expect, it } from "vitest";
import { progressReporter } from "../../cli/progress";

describe("progressReporter", () => {
  it("writes a line per interval and the last one at 100% when not on a terminal", () => {
    const out: string[] = [];
    let clock = 0;
    const report = progressReporter("writing", { isTTY: false, write: (t) => out.push(t), intervalMs: 5000, now: () => clock });
    const total = 100 * 2 ** 20;
    for (let step = 1; step <= 100; step++) {
      clock += 200; // 100 steps over 20 s: a line at 5, 10, 15 and 20 s
      report((step * total) / 100, total);
    }
    expect(out).toEqual([
      "writing 25% (25 of 100 MiB)\n", "writing 50% (50 of 100 MiB)\n", "writing 75% (75 of 100 MiB)\n",
      "writing 100% (100 of 100 MiB)\n",
    ]);
  });

  it("redraws one bar in place on a terminal, ending the line at 100%", () => {
    const out: string[] = [];
    const report = progressReporter("loading", { isTTY: true, write: (t) => out.push(t), now: () => 0 });
    report(0, 4);
    report(1, 4);
    report(1, 4); // same percentage: nothing new
    report(4, 4);
    expect(out).toEqual([
      `\rloading [${" ".repeat(30)}] 0%`,
      `\rloading [${"#".repeat(8)}${" ".repeat(22)}] 25%`,
      `\rloading [${"#".repeat(30)}] 100%\n`,
    ]);
  });
});
