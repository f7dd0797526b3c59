// Workers, behind one small interface: Node's worker_threads or the web Worker (Deno, browsers).
// The only module that knows which worker API the runtime has.
import { runtimeName } from "./index";

/** The parent's handle on a worker. */
export interface WorkerHandle {
  postMessage(message: unknown): void;
  onMessage(handler: (message: unknown) => void): void;
  onError(handler: (error: Error) => void): void;
  terminate(): Promise<void>;
}

/** The worker's side: messages from and to its parent. */
export interface ParentPort {
  postMessage(message: unknown): void;
  onMessage(handler: (message: unknown) => void): void;
}

/** Whether this runtime can run the worker pool: workers and a shareable memory. */
export function canUseWorkers(): boolean {
  if (typeof SharedArrayBuffer === "undefined" || typeof Atomics === "undefined") return false;
  if (runtimeName() === "node") return true;
  const g = globalThis as { Worker?: unknown; crossOriginIsolated?: boolean };
  if (typeof g.Worker !== "function") return false;
  return runtimeName() === "deno" || g.crossOriginIsolated === true;
}

export async function spawnWorker(url: URL): Promise<WorkerHandle> {
  if (runtimeName() === "node") {
    const { Worker } = await import("node:worker_threads");
    const worker = new Worker(url);
    // An 'error' event with no listener ends the process: listen from the start, hold the errors
    // until a handler is set (as in the web branch below).
    const early: Error[] = [];
    const errorHandlers: ((error: Error) => void)[] = [];
    const report = (error: Error) => {
      if (errorHandlers.length === 0) early.push(error);
      for (const h of errorHandlers) h(error);
    };
    worker.on("error", report);
    worker.on("exit", (code) => { if (code !== 0) report(new Error(`worker exited with code ${code}`)); });
    return {
      postMessage: (m) => worker.postMessage(m),
      onMessage: (h) => { worker.on("message", h); },
      onError: (h) => {
        errorHandlers.push(h);
        for (const error of early.splice(0)) h(error);
      },
      terminate: async () => { await worker.terminate(); },
    };
  }
  const worker = new Worker(url, { type: "module" });
  // Deno reports a worker that cannot start (no --allow-read for its script, a syntax error) before
  // the caller has had a turn to listen, and an error event that no listener prevents ends the
  // whole process: listen from the start, and hold the errors until a handler is set.
  const early: Error[] = [];
  const errorHandlers: ((error: Error) => void)[] = [];
  worker.addEventListener("error", (e) => {
    e.preventDefault();
    // A browser's event for a script that failed to load has no message.
    const error = new Error((e as ErrorEvent).message || `cannot start the worker script ${url.href}`);
    if (errorHandlers.length === 0) early.push(error);
    for (const h of errorHandlers) h(error);
  });
  return {
    postMessage: (m) => worker.postMessage(m),
    onMessage: (h) => worker.addEventListener("message", (e) => h((e as MessageEvent).data)),
    onError: (h) => {
      errorHandlers.push(h);
      for (const error of early.splice(0)) h(error);
    },
    terminate: async () => worker.terminate(),
  };
}

/** In a worker: the port to the parent. */
export async function parentPort(): Promise<ParentPort> {
  if (runtimeName() === "node") {
    const { parentPort: port } = await import("node:worker_threads");
    if (!port) throw new Error("not running in a worker");
    return { postMessage: (m) => port.postMessage(m), onMessage: (h) => { port.on("message", h); } };
  }
  const scope = globalThis as unknown as { postMessage(m: unknown): void; addEventListener(t: string, h: (e: MessageEvent) => void): void };
  return { postMessage: (m) => scope.postMessage(m), onMessage: (h) => scope.addEventListener("message", (e) => h(e.data)) };
}
