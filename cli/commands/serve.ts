// qwasm serve: an OpenAI-compatible HTTP server (chat completions, completions, models, health,
// readiness and Prometheus metrics) over one model, until SIGINT or SIGTERM, which drain it: new
// requests get 503, running ones finish (up to --drain-timeout), then the process exits 0.
import { QwasmError } from "../../platform/errors";
import { createEngine } from "../../engine/engine";
import { createOpenAIHandler } from "../../server/openai";
import { serveNode } from "../../platform/http-node";
import { numberOption, parseArgs, stringOption, kvTypeOption, maxShardBytesOption } from "../args";
import { resolveModelPath } from "../default-model";
import { progressBar } from "../load";

export const help = `qwasm serve [MODEL] [options]

Serves MODEL over an OpenAI-compatible HTTP API: POST /v1/chat/completions, POST /v1/completions
(both with "stream": true for server-sent events) and GET /v1/models; GET /health (200 while the
process lives), GET /ready (200 while it accepts requests, 503 once it drains) and GET /metrics
(Prometheus text format, with vLLM's metric names beside qwasm's; behind --api-key when set).
MODEL defaults to the built-in synthetic model (created on first use).

  --host H            address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --port P            port (default 8080; 0 picks a free one)
  --api-key K         require "Authorization: Bearer K" (default: $QWASM_API_KEY, else no key)
  --cors              allow cross-origin requests from any origin (--cors=ORIGIN: from ORIGIN only)
  --threads N         compute threads (default: the cores available)
  --oversubscribe     allow more threads than cores (default: capped at the cores, with a warning)
  --max-shard-mb N    most MiB of one WebAssembly memory (default and at most 4096); a bigger model is
                      placed over several by layers (smaller values force more)
  --context N         context length (default: the model's, at most 4096)
  --kv-type T         KV cache type: f32 (default), f16 (half the memory) or q8_0 (about a quarter)
  --max-sequences N   requests computed together (default 8)
  --max-queue N       requests that may wait for a free slot (default 64); past them: HTTP 429 with Retry-After
  --max-body-bytes N  largest request body accepted (default 1048576)
  --request-timeout S seconds a request may run, waiting included, before it is stopped with HTTP 504
                      (or an error event when streaming); default: no limit
  --any-model         answer requests whatever their "model" says (default: only the served id, else 404)
  --drain-timeout S   on SIGTERM or SIGINT, seconds running and queued requests get to finish before
                      they are stopped (default 30); new requests get HTTP 503 with Retry-After meanwhile
  --replica-id NAME   send the header X-Qwasm-Replica: NAME on every response (default: none)
  --access-log        one line per request on stderr: time, method, path, status, ms and session id
                      (X-Session-Id, else the body's "user")

The URL goes to stdout once the model is loaded. SIGINT or SIGTERM drains the server (/ready turns
503 at once), then it exits 0; a second signal while draining ends it at once.`;

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, ["cors", "any-model", "oversubscribe", "access-log"], help);
  if (args.positionals.length > 1) {
    throw new QwasmError("INVALID_ARGUMENT", `serve takes one MODEL, got ${args.positionals.length}: ${args.positionals.join(" ")}`);
  }
  const host = stringOption(args, "host") ?? "127.0.0.1";
  const port = numberOption(args, "port", 8080)!;
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw new QwasmError("INVALID_ARGUMENT", `option --port must be an integer from 0 to 65535, got ${port}`);
  }
  const maxSequences = numberOption(args, "max-sequences", 8)!;
  if (!(Number.isInteger(maxSequences) && maxSequences >= 1)) {
    throw new QwasmError("INVALID_ARGUMENT", `option --max-sequences must be an integer >= 1, got ${maxSequences}`);
  }
  const maxQueue = numberOption(args, "max-queue");
  if (maxQueue !== undefined && !(Number.isInteger(maxQueue) && maxQueue >= 0)) {
    throw new QwasmError("INVALID_ARGUMENT", `option --max-queue must be an integer >= 0, got ${maxQueue}`);
  }
  const timeoutSeconds = numberOption(args, "request-timeout");
  if (timeoutSeconds !== undefined && !(timeoutSeconds > 0)) {
    throw new QwasmError("INVALID_ARGUMENT", `option --request-timeout must be a positive number of seconds, got ${timeoutSeconds}`);
  }
  const maxBodyBytes = numberOption(args, "max-body-bytes", 1024 * 1024)!;
  if (!(Number.isInteger(maxBodyBytes) && maxBodyBytes > 0)) {
    throw new QwasmError("INVALID_ARGUMENT", "--max-body-bytes must be a positive integer");
  }
  const drainSeconds = numberOption(args, "drain-timeout", 30)!;
  if (!(Number.isFinite(drainSeconds) && drainSeconds >= 0)) {
    throw new QwasmError("INVALID_ARGUMENT", `option --drain-timeout must be a number of seconds >= 0, got ${drainSeconds}`);
  }
  const replicaId = stringOption(args, "replica-id");
  if (replicaId !== undefined && !/^[\x21-\x7e]{1,128}$/.test(replicaId)) {
    throw new QwasmError("INVALID_ARGUMENT", `option --replica-id must be 1 to 128 printable ASCII characters without spaces, got ${JSON.stringify(replicaId)}`);
  }
  const accessLog = args.options.has("access-log");
  const apiKey = stringOption(args, "api-key") ?? (process.env.QWASM_API_KEY || undefined);
  const cors = args.options.get("cors") ?? false;

  const modelPath = await resolveModelPath(args.positionals[0]);
  const engine = await createEngine(modelPath, {
    threads: numberOption(args, "threads"), oversubscribe: args.options.has("oversubscribe"),
    contextLength: numberOption(args, "context"),
    kvType: kvTypeOption(args),
    maxShardBytes: maxShardBytesOption(args),
    maxSequences,
    maxQueue,
    requestTimeoutMs: timeoutSeconds === undefined ? undefined : timeoutSeconds * 1000,
    onProgress: progressBar(),
  });
  const handler = createOpenAIHandler(engine, {
    apiKey,
    cors,
    maxBodyBytes,
    anyModel: args.options.has("any-model"),
    metrics: true,
    replicaId,
    onAccess: accessLog ? (e) => process.stderr.write(`${new Date().toISOString()} ${e.method} ${e.path} ${e.status} ${e.ms.toFixed(1)}ms` +
      ` session=${e.sessionId === undefined ? "-" : JSON.stringify(e.sessionId)}\n`) : undefined,
    onError: (error) => process.stderr.write(`qwasm serve: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`),
  });
  let server;
  try {
    server = await serveNode(handler, { host, port });
  } catch (error) {
    await engine.dispose();
    throw error;
  }

  const info = engine.info;
  process.stdout.write(`${server.url}/v1\n`);
  process.stderr.write(`serving ${info.modelName} (context ${info.contextLength}, ${info.threads} thread${info.threads > 1 ? "s" : ""}, ` +
    `${info.maxSequences} sequence${info.maxSequences > 1 ? "s" : ""} at once)${apiKey === undefined ? "" : "; API key required"}\n`);
  if (apiKey === undefined && !isLoopback(host)) {
    process.stderr.write(`warning: listening on ${host} without --api-key: anyone who can reach this address can use the model\n`);
  }

  const signal = await new Promise<string>((resolve) => {
    const stop = (name: string) => () => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      resolve(name);
    };
    const onInt = stop("SIGINT");
    const onTerm = stop("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
  });
  // A second signal now ends the process the default way.
  process.stderr.write(`${signal}: draining (new requests get 503; running ones have up to ${drainSeconds} s)\n`);
  await engine.drain({ deadlineMs: drainSeconds * 1000 });
  process.stderr.write("drained: stopping\n");
  // The last responses' final bytes may still be on their way out.
  await server.close({ graceMs: 2000 });
  await engine.dispose();
  return 0;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}
