// The file handles every runtime adapter returns (node.ts, deno.ts), apart from index.ts so that
// the adapters need not import the module that imports them.

/** A file opened for random-access reads. */
export interface RandomAccessFile {
  /** Size in bytes when the file was opened. */
  readonly size: number;
  /** Reads `length` bytes at `offset`; fewer only where the file ends. With `into` (at least
   *  `length` bytes), a file may read straight into it and return a view of it (the local files of
   *  Node and Bun do: a model's tensors then go from the file into WebAssembly memory with no buffer
   *  between); others return new bytes, which the caller copies. */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** A file opened for sequential writes, created or truncated. */
export interface WritableFile {
  write(chunk: Uint8Array): Promise<void>;
  close(): Promise<void>;
}
