// A compute worker: instantiates the kernels over the shared memory (once per shard), then runs its slice of every
// forward step the engine starts, until told to exit. Bundled to dist/compute-worker.js.
import { parentPort } from "../../platform/workers";
import { ForwardRunner } from "../model/forward";
import type { Kernels } from "../kernels/module";
import type { ComputeInit } from "./messages";
import { COMMAND_EXIT, CONTROL_WORDS, Control } from "./protocol";
import { ClaimingSlice, failStep, finishStep, StepFailed, waitForStep } from "./sync";

const port = await parentPort();
port.onMessage(async (message) => {
  const init = message as ComputeInit;
  if (init.kind !== "init") return;
  try {
    // One instance of the kernels per shard (the module is compiled once, by the pool's owner).
    const kernels = await Promise.all(init.memories.map(async (memory) => (await WebAssembly.instantiate(init.module, {
      env: { memory, abort: () => { throw new Error("kernel abort"); } },
    })).exports as unknown as Kernels));
    const runner = new ForwardRunner(kernels, init.memories, init.layout);
    const ctrl = new Int32Array(init.memories[0].buffer, init.control, CONTROL_WORDS);
    port.postMessage({ kind: "ready", index: init.index });
    // Loop outside the message handler's promise so that nothing else runs on this thread.
    setTimeout(() => serve(runner, ctrl, init), 0);
  } catch (e) {
    port.postMessage({ kind: "error", index: init.index, message: e instanceof Error ? e.message : String(e) });
  }
});

function serve(runner: ForwardRunner, ctrl: Int32Array, init: ComputeInit): void {
  const slice = new ClaimingSlice(ctrl, init.index, init.count);
  // The pool zeroes the control block before starting workers; a step may already have been started
  // by the time this loop begins, so the baseline is 0, not the current value.
  let seq = 0;
  let sitting = false;
  for (;;) {
    // A worker that sat the last step out sleeps at once: spinning would take a core from those at work.
    seq = waitForStep(ctrl, seq, init.index, !sitting);
    if (Atomics.load(ctrl, Control.COMMAND) === COMMAND_EXIT) break;
    sitting = init.index >= Atomics.load(ctrl, Control.ACTIVE);
    if (sitting) continue;
    slice.begin(seq);
    try {
      runner.runStep(slice);
    } catch (e) {
      if (!(e instanceof StepFailed)) {
        failStep(ctrl);
        port.postMessage({ kind: "error", index: init.index, message: e instanceof Error ? e.message : String(e) });
      }
    }
    // A worker that fell behind (the step finished without it) has nothing to publish.
    if (!slice.lagged) finishStep(ctrl, seq);
  }
  // Returning lets the worker end; the parent terminates it anyway.
}
