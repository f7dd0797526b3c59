// A pool of compute workers over one shared memory. The engine writes a step into the memory and
// calls `run()`; every worker runs its slice of the same forward step (SPMD) and the last one to
// finish wakes the engine. Nothing is posted per step.
import { QwasmError } from "../../platform/errors";
import type { ForwardLayout } from "../model/forward";
import { spawnWorker, type WorkerHandle } from "../../platform/workers";
import type { ComputeInit, ComputeReply } from "./messages";
import { COMMAND_EXIT, COMMAND_RUN, CONTROL_WORDS, Control, MAX_WORKERS, TAG_PERIOD } from "./protocol";
import { armStep } from "./sync";
import { ActiveWorkers } from "./active";

/** Where the compute worker bundle is: beside this module when bundled, in dist/ when run from source. */
export function defaultWorkerUrl(): URL {
  const here = import.meta.url;
  return here.endsWith(".ts")
    ? new URL("../../dist/compute-worker.js", here)
    : new URL("./compute-worker.js", here);
}

/** How long one forward step may take before the pool is declared stuck (a 72B prefill chunk on two
 *  cores takes about a minute). */
export const DEFAULT_STEP_TIMEOUT_MS = 300_000;

export class WorkerPool {
  private failure: Error | undefined;
  private seq = 0;
  private readonly active: ActiveWorkers;

  private constructor(
    /** The workers (tests terminate one to check that a dead worker cannot hang a step). */
    readonly workers: WorkerHandle[],
    private readonly ctrl: Int32Array,
    private readonly stepTimeoutMs: number,
  ) {
    this.active = new ActiveWorkers(workers.length);
  }

  /** Workers that took part in the last step (fewer than `size` while other processes hold cores). */
  get activeWorkers(): number { return Atomics.load(this.ctrl, Control.ACTIVE); }

  get size(): number { return this.workers.length; }

  /** Starts `count` workers over `memory` (a model's shards: the control block is in the first)
   *  and waits until each has instantiated the kernels. */
  static async start(count: number, memory: WebAssembly.Memory | readonly WebAssembly.Memory[], module: WebAssembly.Module,
    layout: ForwardLayout, control: number, workerUrl: URL = defaultWorkerUrl(),
    stepTimeoutMs = DEFAULT_STEP_TIMEOUT_MS): Promise<WorkerPool> {
    if (count > MAX_WORKERS) throw new QwasmError("INVALID_ARGUMENT", `a pool has at most ${MAX_WORKERS} workers, asked for ${count}`);
    const memories = Array.isArray(memory) ? [...memory] : [memory as WebAssembly.Memory];
    const ctrl = new Int32Array(memories[0].buffer, control, CONTROL_WORDS);
    ctrl.fill(0);
    const workers = await Promise.all(Array.from({ length: count }, () => spawnWorker(workerUrl)));
    const pool = new WorkerPool(workers, ctrl, stepTimeoutMs);
    try {
      await Promise.all(workers.map((worker, index) => new Promise<void>((resolve, reject) => {
        worker.onMessage((m) => {
          const reply = m as ComputeReply;
          if (reply.kind === "ready") resolve();
          else pool.fail(new QwasmError("WORKER_FAILED", `compute worker ${reply.index} failed: ${reply.message}`), reject);
        });
        worker.onError((e) => pool.fail(new QwasmError("WORKER_FAILED", `compute worker ${index} died: ${e.message}`), reject));
        const init: ComputeInit = { kind: "init", memories, module, layout, index, count, control };
        worker.postMessage(init);
      })));
    } catch (e) {
      await pool.dispose();
      throw e;
    }
    return pool;
  }

  private fail(error: Error, reject?: (e: Error) => void): void {
    this.failure ??= error;
    Atomics.store(this.ctrl, Control.FAILED, 1);
    Atomics.notify(this.ctrl, Control.DONE);
    Atomics.notify(this.ctrl, Control.DONE_SEQ);
    reject?.(error);
  }

  /**
   * Runs the step already written into the memory (of `tokens` tokens) on the workers; resolves when
   * it is done.
   */
  async run(tokens = 1): Promise<void> {
    if (this.failure) throw this.failure;
    const ctrl = this.ctrl;
    const seq = ++this.seq;
    // Step tags repeat every TAG_PERIOD steps: never start a step while a worker is still inside
    // one half a period old (it would take the new step's items for its own). It never happens
    // unless the OS stops a worker for a thousand steps; then the step waits for it.
    while (this.workers.some((_, i) => seq - Atomics.load(ctrl, Control.WORKER_SEQ + i) > TAG_PERIOD / 2 &&
      Atomics.load(ctrl, Control.WORKER_SEQ + i) !== 0)) {
      if (this.failure) throw this.failure;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const active = this.active.next();
    armStep(ctrl, seq, active);
    const start = performance.now();
    Atomics.store(ctrl, Control.FAILED, 0);
    Atomics.store(ctrl, Control.COMMAND, COMMAND_RUN);
    Atomics.store(ctrl, Control.STEP_SEQ, seq);
    Atomics.notify(ctrl, Control.STEP_SEQ);
    // The watchdog: a worker that never finishes an item (an endless loop, a frozen tab) would hold
    // every request; past the deadline the step fails and the caller replaces the pool.
    const deadline = start + this.stepTimeoutMs;
    await waitUntil(ctrl, Control.DONE_SEQ, seq, () => {
      if (!this.failure && performance.now() > deadline) {
        this.fail(new QwasmError("WORKER_FAILED", `a forward step did not finish within ${this.stepTimeoutMs} ms ` +
          "(a compute worker is stuck); the step failed and the workers are restarted"));
      }
      return this.failure;
    });
    if (this.failure) throw this.failure;
    this.active.record(active, tokens, performance.now() - start, Atomics.load(ctrl, Control.BLOCKED_US) / 1000);
    if (Atomics.load(ctrl, Control.FAILED) !== 0) {
      throw new QwasmError("WORKER_FAILED", "a compute worker failed during the forward step");
    }
  }

  async dispose(): Promise<void> {
    Atomics.store(this.ctrl, Control.COMMAND, COMMAND_EXIT);
    Atomics.add(this.ctrl, Control.STEP_SEQ, 1);
    Atomics.notify(this.ctrl, Control.STEP_SEQ);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** Resolves once ctrl[index] == value, without blocking the calling thread's event loop. */
async function waitUntil(ctrl: Int32Array, index: number, value: number, failed: () => Error | undefined): Promise<void> {
  const waitAsync = (Atomics as unknown as {
    waitAsync?: (a: Int32Array, i: number, v: number, t?: number) => { async: boolean; value: Promise<string> | string };
  }).waitAsync;
  for (;;) {
    const current = Atomics.load(ctrl, index);
    if (current === value || failed()) return;
    if (waitAsync) {
      const r = waitAsync(ctrl, index, current, 100);
      if (r.async) await r.value;
    } else {
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
}
