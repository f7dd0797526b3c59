// The file handles every runtime adapter returns (node.ts, deno.ts), apart from index.ts so that
// the adapters need not import the module that imports them.

/** A file opened for random-access reads. */
export interface RandomAccessFile {
  /** Size in bytes when the file was opened. */
  readonly size: number;
  /** Reads `length` bytes at `offset`; fewer only where the file ends. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** A file opened for sequential writes, created or truncated. */
export interface WritableFile {
  write(chunk: Uint8Array): Promise<void>;
  close(): Promise<void>;
}
