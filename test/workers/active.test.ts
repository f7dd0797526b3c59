// The pool's choice of how many workers take part in a step (compute/workers/active.ts), fed made-up step
// timings: all of them on a quiet machine, fewer when they sleep waiting for each other, and more
// again once a try with one more worker runs faster.
import { describe, expect, it } from "vitest";
import { ActiveWorkers } from "../../compute/workers/active";

/** Runs `steps` steps; `cost(active)` gives each step's [wall ms, ms the workers slept]. */
function run(a: ActiveWorkers, steps: number, cost: (active: number) => [number, number]): number[] {
  const used: number[] = [];
  for (let i = 0; i < steps; i++) {
    const active = a.next();
    used.push(active);
    const [wall, blocked] = cost(active);
    a.record(active, 1, wall, blocked);
  }
  return used;
}

describe("ActiveWorkers", () => {
  it("keeps every worker on a quiet machine, never trying fewer", () => {
    const a = new ActiveWorkers(4);
    const used = run(a, 5000, (n) => [20 / n, 0.01]);
    expect(used.length).toBe(5000);
    expect(used.every((n) => n === 4)).toBe(true);
  });

  it("keeps every worker when they sleep on uneven work but fewer would be slower, trying fewer ever more rarely", () => {
    const a = new ActiveWorkers(2);
    // A quiet machine with coarse items: two workers sleep a third of the step, yet are faster.
    const used = run(a, 5000, (n) => (n === 2 ? [12, 4] : [20, 0]));
    const tries = used.filter((n) => n === 1).length;
    expect(tries).toBeGreaterThan(0);
    expect(tries).toBeLessThan(10); // 64, 128, ... 4096 steps apart
    expect(used.slice(-1000).filter((n) => n === 2).length).toBeGreaterThanOrEqual(999);
  });

  it("drops workers that sleep waiting for each other, down to what runs fastest", () => {
    const a = new ActiveWorkers(2);
    // One core taken: two workers take 60 ms a token and sleep half of it; one takes 40.
    const busy = (n: number): [number, number] => (n === 2 ? [60, 30] : [40, 0]);
    const used = run(a, 400, busy);
    expect(used.slice(0, 3)).toEqual([2, 2, 2]);
    const after = used.slice(3);
    const share = after.filter((n) => n === 1).length / after.length;
    // Mostly one worker; the tries of two are short and become rarer when they lose.
    expect(share).toBeGreaterThan(0.9);
    const tries = after.filter((n, i) => n === 2 && after[i - 1] === 1).length;
    expect(tries).toBeGreaterThan(0);
    expect(tries).toBeLessThan(8);
  });

  it("takes the workers back when a try runs faster (the cores came back)", () => {
    const a = new ActiveWorkers(2);
    run(a, 10, (n) => (n === 2 ? [60, 30] : [40, 0]));
    expect(a.next()).toBe(1);
    const used = run(a, 200, (n) => [20 / n, 0]);
    expect(used.at(-1)).toBe(2);
    expect(used.slice(-100).every((n) => n === 2)).toBe(true);
  });

  it("never goes below one worker", () => {
    const a = new ActiveWorkers(3);
    // Every worker more makes a step slower, and they sleep most of it.
    const used = run(a, 300, (n) => [20 + 15 * (n - 1), 0.9 * (20 + 15 * (n - 1)) * (n - 1)]);
    expect(Math.min(...used)).toBe(1);
    expect(used.slice(-50).filter((n) => n === 1).length).toBeGreaterThan(40);
  });
});
