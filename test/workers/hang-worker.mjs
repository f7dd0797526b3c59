// A compute worker that gets stuck: it says it is ready, then spins forever without taking part in
// any step (what an endless loop in a kernel or a frozen tab looks like from the pool).
import { parentPort } from "node:worker_threads";

parentPort.on("message", (message) => {
  if (message.kind !== "init") return;
  parentPort.postMessage({ kind: "ready", index: message.index });
  setTimeout(() => { for (;;) { /* stuck */ } }, 0);
});
