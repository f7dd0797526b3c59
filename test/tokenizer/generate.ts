// Deterministic test strings for the tokenizer's differential tests: prose in Qwen2's 29 languages,
// code, numbers, whitespace runs, emoji sequences, combining marks (NFC and NFD), lone surrogates,
// special-token look-alikes, random code points and random mixes of all of them.
import {
  SAMPLE_CODE, SAMPLE_EMOJI, SAMPLE_NUMBERS, SAMPLE_SENTENCES, mixedText, mulberry32,
} from "../../engine/tokenizer/sample-text";

export const SPECIAL_LOOKALIKES = [
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|endoftext", "<|", "|>", "<|im_start|", "im_start|>",
  "< |im_start| >", "<|IM_START|>", "<|im_start|><|im_end|>", "<<|im_end|>>", "<||>", "<|im_sta rt|>",
];

// Characters where JavaScript's \s and Unicode White_Space disagree (U+0085 is White_Space, U+FEFF
// is JavaScript-only): the reference (transformers.js) uses JavaScript's \s and so differs from Hugging
// Face tokenizers and llama.cpp there. They are tested on their own, not against that reference.
export const WHITESPACE_DISAGREEMENTS = /[\u0085\uFEFF]/g;

const WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", "\r\n\r\n", "\u00A0", "\u3000",
  "\u2009", "\u200B", "\v", "\f", " \n", "\n ", " \t ", "\u2028", "\u202F"];
const CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'rE", "'ve", "'Ve", "'m", "'M", "'ll", "'LL", "'d", "'D",
  "don't", "I'M", "we've", "it's", "O'Reilly", "'", "''", "'x", "' s"];
const COMBINING_BASES = ["a", "e", "o", "u", "n", "c", "A", "E", "ά", "и", "ß", " ", "1"];

export function generateStrings(count: number, seed: number): string[] {
  const random = mulberry32(seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(list: readonly T[]): T => list[int(list.length)];
  const languages = Object.keys(SAMPLE_SENTENCES);
  const corpus = mixedText(1 << 16, seed + 1);

  const randomCodePoint = (): string => {
    const r = random();
    let cp: number;
    if (r < 0.3) cp = 0x20 + int(0x5f);
    else if (r < 0.45) cp = int(0x100);
    else if (r < 0.85) { do cp = int(0x10000); while (cp >= 0xd800 && cp < 0xe000); }
    else cp = 0x10000 + int(0x30000);
    return String.fromCodePoint(cp);
  };

  const generators: (() => string)[] = [
    () => pick(SAMPLE_SENTENCES[pick(languages)]),
    () => {
      const words = SAMPLE_SENTENCES[pick(languages)].join(" ").split(" ");
      return Array.from({ length: 1 + int(8) }, () => pick(words)).join(pick([" ", "", "  ", "\n", ", "]));
    },
    () => pick(SAMPLE_CODE),
    () => {
      const code = pick(SAMPLE_CODE);
      return code.replace(/^ +/gm, (s) => (random() < 0.5 ? "\t".repeat(s.length / 2) : s)).replace(/\n/g, random() < 0.5 ? "\r\n" : "\n");
    },
    () => Array.from({ length: 1 + int(4) }, () => pick(SAMPLE_NUMBERS)).join(pick([" ", "", ", "])),
    () => String(int(1e9)) + pick(["", ".", ","]) + String(int(1e6)).repeat(1 + int(3)),
    () => Array.from({ length: 1 + int(8) }, () => (random() < 0.7 ? pick(WHITESPACE) : pick(["a", "Hello", "x", "中", "!", "1"]))).join(""),
    () => " ".repeat(int(40)) + pick(["", "x", "\n", "Hello"]) + "\t".repeat(int(10)) + "\n".repeat(int(5)),
    () => Array.from({ length: 1 + int(5) }, () => pick(SAMPLE_EMOJI)).join(pick(["", " ", "\u200D", "a"])),
    () => {
      // Combining marks: NFD spellings, stacked marks in non-canonical order, Hangul jamo, singletons.
      const r = random();
      if (r < 0.3) return pick(SAMPLE_SENTENCES[pick(["vi", "fr", "de", "cs", "pl", "ko", "hi", "ar"])]).normalize("NFD");
      if (r < 0.6) {
        let s = "";
        for (let i = 0, n = 1 + int(4); i < n; i++) {
          s += pick(COMBINING_BASES);
          for (let j = 0, m = int(4); j < m; j++) s += String.fromCharCode(0x300 + int(0x70));
        }
        return s;
      }
      if (r < 0.8) return pick(["\u1100\u1161", "\u1100\u1161\u11A8", "\u212B", "\u2126", "\u0958", "\u0344", "e\u0301", "\u0041\u030A", "\uFB01", "\u1E9B\u0323"]).repeat(1 + int(3));
      return pick(SAMPLE_SENTENCES[pick(languages)]).normalize(pick(["NFD", "NFKD", "NFKC"]));
    },
    () => {
      // Lone surrogates: inserted, or left by cutting an astral character in half.
      const r = random();
      const base = pick(SAMPLE_SENTENCES[pick(languages)]) + pick(SAMPLE_EMOJI);
      if (r < 0.4) {
        const at = int(base.length + 1);
        return base.slice(0, at) + String.fromCharCode(0xd800 + int(0x800)) + base.slice(at);
      }
      if (r < 0.7) return base.slice(0, base.length - 1);
      return pick(["\uD800", "\uDFFF", "\uDC00\uD83D", "a\uD83Db", "\uD83D\uD83D\uDE00", "\uDE00"]).repeat(1 + int(2));
    },
    () => Array.from({ length: 1 + int(4) }, () => (random() < 0.6 ? pick(SPECIAL_LOOKALIKES) : pick(["user\n", " ", "hi", "\n", "system"]))).join(""),
    () => Array.from({ length: 1 + int(3) }, () => pick(CONTRACTIONS) + pick(["", " ", "s", "abc"])).join(pick(["", " "])),
    () => Array.from({ length: 1 + int(20) }, randomCodePoint).join(""),
    () => {
      const at = int(corpus.length);
      return corpus.slice(at, at + 1 + int(300));
    },
  ];

  const strings: string[] = [];
  for (let i = 0; i < count; i++) {
    let s: string;
    if (random() < 0.25) {
      s = Array.from({ length: 2 + int(4) }, () => pick(generators)()).join("");
    } else {
      s = generators[i % generators.length]();
    }
    strings.push(s.replace(WHITESPACE_DISAGREEMENTS, "\u2028"));
  }
  return strings;
}
