// Deterministic multilingual sample text: the tokenizer benchmark's input and the seed material of
// the tokenizer's differential tests. One or two sentences in each of the 29 languages Qwen2 was
// trained on, code, numbers and emoji.

/** Sentences by language (ISO 639 code). */
export const SAMPLE_SENTENCES: Readonly<Record<string, readonly string[]>> = {
  zh: ["我想在苹果公司工作，因为他们的产品非常好。", "今天天气很好，我们去公园散步吧！人工智能正在改变世界。"],
  en: ["The quick brown fox jumps over the lazy dog.", "It's 3:45 p.m. and we're running late, aren't we? I'll call you."],
  fr: ["L'été dernier, nous sommes allés à la plage près de Marseille.", "C'était génial, n'est-ce pas ? Où est l'hôpital ?"],
  es: ["¿Dónde está la biblioteca? Mañana vamos a comer paella.", "El niño pequeño juega en el jardín con su perro."],
  pt: ["Não sei se você já ouviu falar, mas a reunião foi adiada.", "A ação começa às três horas da tarde, então não se atrase."],
  de: ["Die Straße ist nass, weil es gestern geregnet hat.", "Größere Äpfel schmecken süßer als die kleinen Birnen."],
  it: ["Perché non andiamo al ristorante stasera?", "Ho già prenotato un tavolo per le otto, è perfetto."],
  nl: ["Het is vandaag erg koud, dus ik blijf lekker thuis.", "Wij drinken een kopje thee en eten een stroopwafel."],
  ru: ["Съешь же ещё этих мягких французских булок, да выпей чаю.", "Привет, как дела? Сегодня я учу русский язык."],
  cs: ["Příliš žluťoučký kůň úpěl ďábelské ódy.", "Dobrý den, jak se máte? Děkuji, mám se dobře."],
  pl: ["Zażółć gęślą jaźń.", "Dzień dobry, czy mówisz po polsku? Świetnie, dziękuję."],
  ar: ["مرحبا بالعالم! كيف حالك اليوم؟", "أنا أحب تعلم اللغات الجديدة، وخاصة العربية."],
  fa: ["سلام دنیا! امروز هوا خیلی خوب است.", "ما به پارک می‌رویم و کتاب می‌خوانیم."],
  he: ["שלום עולם! מה שלומך היום?", "אני אוהב ללמוד שפות חדשות בכל יום."],
  tr: ["Merhaba dünya! Bugün hava çok güzel.", "İstanbul'a gidiyoruz; ışık ılık, ağaçlar yeşil."],
  ja: ["こんにちは世界！今日はとても良い天気ですね。", "東京タワーに行きましょう。カタカナとひらがなを勉強しています。"],
  ko: ["안녕하세요, 세계! 오늘 날씨가 정말 좋네요.", "저는 한국어를 배우고 있습니다. 감사합니다."],
  vi: ["Xin chào thế giới! Hôm nay trời rất đẹp.", "Chúng ta đi dạo công viên nhé, ở Cửa Việt có biển."],
  th: ["สวัสดีชาวโลก วันนี้อากาศดีมาก", "เราไปเดินเล่นที่สวนสาธารณะกันเถอะ ขอบคุณครับ"],
  id: ["Selamat pagi! Saya sedang belajar bahasa Indonesia.", "Kami tinggal di Jakarta sejak tahun lalu."],
  ms: ["Selamat datang ke Malaysia.", "Saya suka makan nasi lemak setiap pagi bersama keluarga."],
  lo: ["ສະບາຍດີໂລກ ມື້ນີ້ອາກາດດີຫຼາຍ", "ຂອບໃຈຫຼາຍໆ ພວກເຮົາໄປຕະຫຼາດກັນ"],
  my: ["မင်္ဂလာပါ ကမ္ဘာလောက။", "ဒီနေ့ ရာသီဥတု သာယာပါတယ်။"],
  ceb: ["Maayong buntag! Unsa man ang imong ngalan?", "Salamat kaayo sa imong tabang, higala."],
  km: ["សួស្តី​ពិភពលោក!", "ថ្ងៃនេះ​អាកាសធាតុ​ល្អ​ណាស់។"],
  tl: ["Magandang umaga! Kumusta ka na?", "Salamat po sa tulong ninyo kahapon."],
  hi: ["नमस्ते दुनिया! आज मौसम बहुत अच्छा है।", "मैं हिंदी सीख रहा हूँ और मुझे यह पसंद है।"],
  bn: ["হ্যালো বিশ্ব! আজ আবহাওয়া খুব ভালো।", "আমি বাংলা শিখছি এবং এটি আমার ভালো লাগে।"],
  ur: ["ہیلو دنیا! آج موسم بہت اچھا ہے۔", "میں اردو سیکھ رہا ہوں اور مجھے یہ پسند ہے۔"],
};

export const SAMPLE_CODE: readonly string[] = [
  "function add(a, b) {\n  return a + b;\n}\n",
  "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
  "#include <stdio.h>\n\nint main(void) {\n\tprintf(\"Hello, %s!\\n\", \"world\");\n\treturn 0;\n}\n",
  "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
  "{\"name\": \"qwasm\", \"version\": \"0.1.0\", \"tags\": [\"llm\", \"wasm\"], \"ok\": true}\n",
  "<div class=\"card\">\n  <p>Hello &amp; welcome</p>\n</div>\n",
  "for f in *.gguf; do\n  echo \"$f\" | sed -e 's/\\.gguf$//'\ndone\r\n",
  "SELECT id, name FROM users WHERE age >= 18 ORDER BY name ASC;\n",
];

export const SAMPLE_NUMBERS: readonly string[] = [
  "3.14159", "1,234,567.89", "2024-06-07T12:34:56Z", "0xDEADBEEF", "1e-10", "-42", "100%",
  "٠١٢٣٤٥", "１２３", "x² + y³", "½ cup", "Ⅻ", "$19.99", "¥1000", "1/3",
];

export const SAMPLE_EMOJI: readonly string[] = [
  "🦙", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "❤️", "1️⃣", "😶‍🌫️", "🧑🏿‍💻", "✅", "🚀🚀🚀",
];

/** A small seeded PRNG (mulberry32): the same seed gives the same text everywhere. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * About `targetBytes` of UTF-8 text mixing prose in every language (most of it), code, numbers
 * and emoji, in paragraphs; deterministic for a seed.
 */
export function mixedText(targetBytes: number, seed = 1): string {
  const random = mulberry32(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)];
  const languages = Object.keys(SAMPLE_SENTENCES);
  const encoder = new TextEncoder();
  const parts: string[] = [];
  let bytes = 0;
  while (bytes < targetBytes) {
    const r = random();
    let part: string;
    if (r < 0.35) {
      const lang = pick(languages);
      part = Array.from({ length: 1 + Math.floor(random() * 4) }, () => pick(SAMPLE_SENTENCES[lang])).join(" ") + "\n\n";
    } else if (r < 0.75) {
      part = shuffledSentence(pick(languages), random) + "\n";
    } else if (r < 0.9) {
      part = pick(SAMPLE_CODE) + "\n";
    } else {
      part = `${pick(SAMPLE_NUMBERS)} ${pick(SAMPLE_EMOJI)} ${pick(SAMPLE_NUMBERS)}\n`;
    }
    parts.push(part);
    bytes += encoder.encode(part).length;
  }
  return parts.join("");
}

// Languages written without spaces between words.
const UNSPACED = new Set(["zh", "ja", "th", "lo", "km", "my"]);

/**
 * A new "sentence" from a language's material: random words (or, for unspaced scripts, random runs
 * of characters), so that the text is not a few sentences repeated and word caches do not hit on
 * every piece.
 */
function shuffledSentence(lang: string, random: () => number): string {
  const text = SAMPLE_SENTENCES[lang].join(" ");
  const n = 3 + Math.floor(random() * 10);
  if (UNSPACED.has(lang)) {
    const chars = Array.from(text);
    let out = "";
    for (let i = 0; i < n; i++) {
      const start = Math.floor(random() * chars.length);
      out += chars.slice(start, start + 1 + Math.floor(random() * 6)).join("");
    }
    return out;
  }
  const words = text.split(" ");
  return Array.from({ length: n }, () => words[Math.floor(random() * words.length)]).join(" ");
}
