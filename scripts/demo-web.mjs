#!/usr/bin/env node
// The demo page's static server: web/ and dist/browser/ at /, and a folder of GGUF files at
// /models/ (default: models/; /models/index.json lists them for the page), on 127.0.0.1. It sends the headers that make the page cross-origin
// isolated (SharedArrayBuffer, hence compute workers) unless --no-isolation is given, so both
// modes of the page can be seen.
//
//   node scripts/demo-web.mjs [--port 8081] [--models DIR] [--no-isolation]
//
// Build the bundles first (npm run build). Also importable: startDemoServer(options).
import { createReadStream, existsSync, readdirSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".wasm": "application/wasm",
  ".gguf": "application/octet-stream",
};

/**
 * Starts the server. `port` 0 picks a free one. `routes` maps a URL path to a handler (req, res)
 * that takes over that path (tests use it to break a download halfway). Resolves to { url, port,
 * requests, close() }; `requests` records "METHOD /path" of every request, in order, and
 * "GET /path bytes=A-B" for a Range request (one range; the page reads a model's header so).
 */
export async function startDemoServer({
  port = 8081, host = "127.0.0.1", isolation = true, models = join(root, "models"), routes = {}, quiet = true,
} = {}) {
  const mounts = [["/models/", models], ["/", join(root, "web")], ["/", join(root, "dist", "browser")]];
  const requests = [];

  /** The file a URL path names, searched in the mounts in order; never outside a mount's folder. */
  function lookup(pathname) {
    for (const [prefix, dir] of mounts) {
      if (!pathname.startsWith(prefix)) continue;
      const rel = pathname.slice(prefix.length) || "index.html";
      const file = normalize(join(dir, rel));
      if (!file.startsWith(normalize(dir) + sep)) continue;
      if (existsSync(file) && statSync(file).isFile()) return file;
    }
    return undefined;
  }

  const server = createServer((req, res) => {
    const { pathname } = new URL(req.url ?? "/", "http://localhost");
    const range = req.method === "GET" ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "") : null;
    requests.push(`${req.method} ${pathname}${range ? ` ${range[0]}` : ""}`);
    if (!quiet) console.log(`${req.method} ${pathname}`);
    res.setHeader("cache-control", "no-cache");
    if (isolation) {
      res.setHeader("cross-origin-opener-policy", "same-origin");
      res.setHeader("cross-origin-embedder-policy", "require-corp");
      res.setHeader("cross-origin-resource-policy", "same-origin");
    }
    if (routes[pathname]) return routes[pathname](req, res);
    if (pathname === "/models/index.json" && req.method === "GET") {
      const names = existsSync(models) ? readdirSync(models).filter((n) => n.endsWith(".gguf")).sort() : [];
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(names.map((n) => `models/${n}`)));
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    let file;
    try {
      file = lookup(decodeURIComponent(pathname));
    } catch {
      file = undefined;
    }
    if (!file) {
      res.writeHead(404, { "content-type": "text/plain" }).end(`not found: ${pathname}\n`);
      return;
    }
    const size = statSync(file).size;
    const type = TYPES[extname(file)] ?? "application/octet-stream";
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(size - 1, range[2] === "" ? size - 1 : Number(range[2]));
      if (start >= size || end < start) {
        res.writeHead(416, { "content-range": `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, {
        "content-type": type, "content-length": end - start + 1, "content-range": `bytes ${start}-${end}/${size}`, "accept-ranges": "bytes",
      });
      createReadStream(file, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { "content-type": type, "content-length": size, "accept-ranges": "bytes" });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolveListen);
  });
  const actualPort = server.address().port;
  return {
    url: `http://${host}:${actualPort}`,
    port: actualPort,
    requests,
    close: () => new Promise((resolveClose) => {
      server.closeAllConnections();
      server.close(() => resolveClose());
    }),
  };
}

function parseArgs(argv) {
  const options = { port: 8081, isolation: true, models: join(root, "models"), quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--no-isolation") options.isolation = false;
    else if (a === "--port") options.port = Number(argv[++i]);
    else if (a === "--models") options.models = resolve(argv[++i] ?? "");
    else if (a === "--quiet") options.quiet = true;
    else if (a === "--help" || a === "-h") {
      console.log("usage: node scripts/demo-web.mjs [--port 8081] [--models DIR] [--no-isolation] [--quiet]");
      process.exit(0);
    } else {
      throw new Error(`unknown option ${a}; usage: node scripts/demo-web.mjs [--port 8081] [--models DIR] [--no-isolation] [--quiet]`);
    }
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    throw new Error(`--port must be a port number (0-65535), got ${argv[argv.indexOf("--port") + 1]}`);
  }
  return options;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  try {
    const options = parseArgs(process.argv.slice(2));
    if (!existsSync(join(root, "dist", "browser", "qwasm.js"))) {
      console.error("dist/browser/qwasm.js is missing: run `npm run build` first");
      process.exit(1);
    }
    const server = await startDemoServer(options);
    console.log(`qwasm demo at ${server.url}/ (${options.isolation ? "cross-origin isolated: threads" : "not isolated: one thread"})`);
    console.log(`models from ${options.models} at ${server.url}/models/`);
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  }
}
