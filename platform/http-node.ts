// A fetch-style handler (Request → Response) served by node:http: the request body streams in,
// the response body streams out at the pace the client reads it, and a client that disconnects
// aborts its Request's signal.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { QwasmError } from "./errors";

export interface NodeServer {
  /** Where the server listens, e.g. http://127.0.0.1:8080 (the real port when 0 was asked). */
  url: string;
  /**
   * Stops listening and closes every connection, aborting the requests still running. With graceMs,
   * responses still being sent get up to that long to end first (idle connections close at once).
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

export async function serveNode(
  handler: (request: Request) => Promise<Response>,
  { host = "127.0.0.1", port = 8080 }: { host?: string; port?: number } = {},
): Promise<NodeServer> {
  let base = "";
  const server = createServer((req, res) => void respond(handler, req, res, base));
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: Error) => {
      reject(new QwasmError("INVALID_ARGUMENT", `cannot listen on ${host}:${port}: ${error.message}; choose another host or port`, { cause: error }));
    });
    server.listen(port, host, resolve);
  });
  const address = server.address();
  const actualPort = typeof address === "object" && address !== null ? address.port : port;
  base = `http://${host.includes(":") ? `[${host}]` : host}:${actualPort}`;
  return {
    url: base,
    close: ({ graceMs = 0 } = {}) => new Promise<void>((resolve, reject) => {
      let sweep: ReturnType<typeof setInterval> | undefined;
      let force: ReturnType<typeof setTimeout> | undefined;
      server.close((error) => {
        clearInterval(sweep);
        clearTimeout(force);
        if (error) reject(error); else resolve();
      });
      if (graceMs <= 0) {
        server.closeAllConnections();
        return;
      }
      // A keep-alive connection turns idle when its response ends: close it then.
      server.closeIdleConnections();
      sweep = setInterval(() => server.closeIdleConnections(), 20);
      force = setTimeout(() => { clearInterval(sweep); server.closeAllConnections(); }, graceMs);
    }),
  };
}

async function respond(handler: (request: Request) => Promise<Response>, req: IncomingMessage, res: ServerResponse,
  base: string): Promise<void> {
  const disconnected = new AbortController();
  res.once("close", () => { if (!res.writableFinished) disconnected.abort(); });

  const body = { abandoned: false };
  let response: Response;
  try {
    response = await handler(toRequest(req, base, disconnected.signal, body));
  } catch (error) {
    // The handler answers its own errors; this is a request Node parsed but fetch's Request refuses.
    const status = error instanceof TypeError ? 400 : 500;
    response = new Response(JSON.stringify({ error: { message: "bad request", type: "invalid_request_error", param: null, code: null } }),
      { status, headers: { "content-type": "application/json" } });
  }
  if (res.destroyed) {
    await response.body?.cancel().catch(() => {});
    return;
  }

  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => { headers[name] = value; });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  // Node would otherwise read (and discard) the rest of an unwanted body to keep the connection.
  if (body.abandoned && !req.complete) headers.connection = "close";
  res.writeHead(response.status, headers);
  if (response.body === null) {
    res.end();
    return;
  }
  // Events must reach the client before the first one is ready.
  if (response.headers.get("content-type")?.startsWith("text/event-stream")) res.flushHeaders();
  await pipeBody(response.body, res);
}

function toRequest(req: IncomingMessage, base: string, signal: AbortSignal, body: { abandoned: boolean }): Request {
  // The URL comes from our own address, never from the client's Host header.
  const url = new URL(req.url ?? "/", base);
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  const init: RequestInit & { duplex?: "half" } = {
    method, headers, signal, body: hasBody ? bodyStream(req, body) : undefined, duplex: hasBody ? "half" : undefined,
  };
  return new Request(url, init);
}

/** The request body as a web stream that reads from the socket only when the handler asks. */
function bodyStream(req: IncomingMessage, body: { abandoned: boolean }): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      req.pause();
      req.on("data", (chunk: Buffer) => {
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) req.pause();
      });
      req.once("end", () => controller.close());
      req.once("error", (error) => controller.error(error));
    },
    pull() {
      req.resume();
    },
    cancel() {
      // The handler wants no more (a body over the limit): stop reading, and close the connection
      // after the response.
      body.abandoned = true;
      req.pause();
      req.removeAllListeners("data");
    },
  }, { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength });
}

/** Writes the body, waiting for the socket to drain; a client gone cancels the body (and so the request). */
async function pipeBody(body: ReadableStream<Uint8Array>, res: ServerResponse): Promise<void> {
  const reader = body.getReader();
  const onClose = () => void reader.cancel().catch(() => {});
  res.once("close", onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          const go = () => { res.off("drain", go); res.off("close", go); resolve(); };
          res.once("drain", go);
          res.once("close", go);
        });
      }
    }
    res.end();
  } catch (error) {
    res.destroy(error as Error);
  } finally {
    res.off("close", onClose);
  }
}
