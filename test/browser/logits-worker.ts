// A test worker for test/browser/demo.test.ts: loads a model from a URL with the given thread count
// (the compute pool, when isolated) and posts back the logits of every prompt position, as bytes,
// so that the test can compare them bit for bit with Node's. Bundled by the test, served at
// /logits-worker.js beside dist/browser/compute-worker.js.
import { loadQwen2, prefill } from "../../compute/model/model";

interface LogitsRequest { url: string; threads: number; ids: number[]; maxShardBytes?: number }

self.onmessage = async (e: MessageEvent<LogitsRequest>) => {
  const { url, threads, ids, maxShardBytes } = e.data;
  try {
    const model = await loadQwen2(url, { threads, contextLength: 256, maxTokens: 16, maxShardBytes });
    try {
      // Chunks of 16 tokens: several prefill steps, each attending to the KV of the ones before.
      const logits = await prefill(model.forward, ids, 0, true);
      self.postMessage({ threads: model.forward.threads, shards: model.forward.layout.shards, bytes: new Uint8Array(logits.buffer) });
    } finally {
      await model.dispose();
    }
  } catch (error) {
    self.postMessage({ error: error instanceof Error ? error.message : String(error) });
  }
};
