// GPT-2's byte-level alphabet: every byte is written as one printable code point, so that a BPE
// vocabulary of strings can hold arbitrary bytes. Printable Latin-1 bytes stand for themselves; the
// other 68 bytes (controls, space, 0x7F-0xA0, 0xAD) map to U+0100.. in byte order ("Ġ" = space).

function buildByteToChar(): string[] {
  const chars = new Array<string>(256);
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 0x100;
  for (let b = 0; b < 256; b++) chars[b] = String.fromCharCode(printable(b) ? b : next++);
  return chars;
}

/** BYTE_TO_CHAR[b] is the one-character string that stands for byte b in a byte-level vocabulary. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** The inverse of BYTE_TO_CHAR, indexed by UTF-16 code unit (all codes are < 0x144); -1 elsewhere. */
export const CHAR_TO_BYTE: Int16Array = (() => {
  const table = new Int16Array(0x144).fill(-1);
  BYTE_TO_CHAR.forEach((ch, b) => { table[ch.charCodeAt(0)] = b; });
  return table;
})();

/**
 * Writes the bytes a byte-level token string stands for at `out[at..]` and returns their count, or
 * -1 (writing nothing meaningful) if the string holds a character outside the alphabet — then it is
 * plain text, as added tokens are stored. `out` must have room for text.length bytes.
 */
export function writeByteLevel(text: string, out: Uint8Array, at: number): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const b = c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
    if (b < 0) return -1;
    out[at + i] = b;
  }
  return text.length;
}
