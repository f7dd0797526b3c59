// Typed errors: every error qwasm throws on purpose carries a stable `code` and a message that says
// what is wrong and what is supported.

export type ErrorCode =
  | "GGUF_INVALID"        // the file is not a well-formed GGUF (field and offset in the message)
  | "GGUF_UNSUPPORTED"    // well-formed, but uses something qwasm does not support (version, type)
  | "MODEL_UNSUPPORTED"   // architecture or tensor layout qwasm does not run (e.g. llama)
  | "MODEL_INVALID"       // a tensor is missing or has the wrong shape
  | "TOKENIZER_INVALID"   // tokenizer metadata is missing or inconsistent
  | "CONTEXT_OVERFLOW"    // the prompt does not fit in the context
  | "INVALID_ARGUMENT"    // a caller passed a bad option
  | "OUT_OF_MEMORY"       // one part of the model (a tensor, a layer with its KV pools) does not fit in a shard (one WebAssembly memory, at most 4 GiB)
  | "INSUFFICIENT_MEMORY" // the model's memories are more than the host has (RAM, ulimit -v, a browser tab's limit)
  | "WORKER_FAILED"       // a compute worker died or threw during a step
  | "FILE_NOT_FOUND"      // a local path names no file (the path is in the message)
  | "FILE_UNREADABLE"     // a local path exists but cannot be read as a file (a directory, no permission)
  | "NETWORK"             // a URL could not be fetched, or its download stopped mid-body (the URL is in the message)
  | "HTTP_STATUS"         // a URL answered with an HTTP error status (status and URL in the message)
  | "ABORTED"
  | "QUEUE_FULL"          // the engine already holds maxSequences running and maxQueue waiting requests: retry later
  | "TIMEOUT"             // the request ran past its time limit (timeoutMs, requestTimeoutMs)
  | "DRAINING"            // the engine is draining (engine.drain(), serve on SIGTERM): it takes no new requests
  | "UNSUPPORTED_SCHEMA"  // a JSON Schema uses a keyword or value qwasm cannot turn into a grammar (named in the message)
  | "INVALID_GRAMMAR";    // GBNF text that does not parse, names an undefined rule, or is left-recursive

export class QwasmError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "QwasmError";
    this.code = code;
  }
}

/** A malformed GGUF file: names the field being read and its byte offset in the file. */
export class GGUFError extends QwasmError {
  readonly field: string;
  readonly offset: number;
  constructor(field: string, offset: number, message: string, code: ErrorCode = "GGUF_INVALID") {
    super(code, `GGUF ${field} at offset ${offset}: ${message}`);
    this.name = "GGUFError";
    this.field = field;
    this.offset = offset;
  }
}
