// Detokenizing one id at a time, for streaming generation: a token may end in the middle of a
// UTF-8 character (byte-level BPE splits characters freely), so incomplete trailing bytes are held
// until the tokens that complete them arrive. The concatenation of everything pushed and flushed
// equals decode() of all the ids.

import type { DecodeOptions, Tokenizer } from "./tokenizer";

export class StreamDecoder {
  private readonly tokenizer: Tokenizer;
  private readonly skipSpecial: boolean;
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true });

  constructor(tokenizer: Tokenizer, options: DecodeOptions = {}) {
    this.tokenizer = tokenizer;
    this.skipSpecial = options.skipSpecial ?? false;
  }

  /** Adds one token; returns the text it completes ("" while a character is still incomplete). */
  push(id: number): string {
    const bytes = this.tokenizer.tokenBytes(id);
    if (this.skipSpecial && this.tokenizer.isControl(id)) return "";
    return this.decoder.decode(bytes, { stream: true });
  }

  /** Ends the stream: bytes of an unfinished character come out as U+FFFD. Ready for reuse after. */
  flush(): string {
    return this.decoder.decode();
  }
}
