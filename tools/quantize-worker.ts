// A quantize worker (weights/quantize.ts, `threads` > 1): gets f32 rows, returns them quantized with
// the scalar reference quantizers. Rows are independent, so the bytes do not depend on how the rows
// are split between workers.
import { parentPort } from "../platform/workers";
import { quantTraits } from "../weights/quant/index";
import type { QuantizeJob, QuantizeJobResult } from "./quantize";

const port = await parentPort();
port.onMessage((message) => {
  const job = message as QuantizeJob;
  let reply: QuantizeJobResult;
  try {
    const traits = quantTraits(job.type);
    const rows = job.x.length / job.rowLength;
    const rowBytes = (job.rowLength / traits.blockSize) * traits.typeSize;
    const out = new Uint8Array(rows * rowBytes);
    for (let r = 0; r < rows; r++) out.set(traits.quantize!(job.x.subarray(r * job.rowLength, (r + 1) * job.rowLength)), r * rowBytes);
    reply = { id: job.id, bytes: out };
  } catch (e) {
    reply = { id: job.id, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply);
});
