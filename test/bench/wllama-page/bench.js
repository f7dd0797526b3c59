// The wllama half of test/bench/compare-wllama.mjs. It runs inside headless Chromium on a
// cross-origin isolated page; the script calls window.wllamaBench(options) and reads the result.
// Prefill and decode times are llama-server's own timings (the completion's `timings` field),
// measured inside wasm around the prompt batch and the token loop, so page and worker messaging
// cost nothing; the wall time of each completion is returned beside them.
import { Wllama } from '/wllama/esm/index.js';

const status = (text) => { document.getElementById('status').textContent = text; };

// wllama's completion takes the prompt as text only (its glue reads "prompt" as a string), so
// the random token ids of `qwasm bench` cannot be passed as they are. A word repeated n times is n
// tokens under Qwen's byte-level BPE (" hello" is one token), plus BOS/EOS where the model's
// metadata asks for them; every run checks that exactly promptTokens were evaluated. Speed does not
// depend on the token values.
const promptText = (words) => 'hello' + ' hello'.repeat(words - 1);

async function complete(wllama, prompt, genTokens) {
  const start = performance.now();
  const result = await wllama.createCompletion({
    prompt,
    max_tokens: genTokens,
    n_predict: genTokens,
    temperature: 0, // greedy
    ignore_eos: true,
    cache_prompt: false, // every run prefills the whole prompt again
    stream: false,
  });
  if (!result.timings) throw new Error('wllama returned no timings');
  return { timings: result.timings, wallMs: performance.now() - start };
}

window.wllamaBench = async ({ modelUrl, threads, promptTokens, genTokens, repeat, verbose }) => {
  const environment = {
    userAgent: navigator.userAgent,
    hardwareConcurrency: navigator.hardwareConcurrency,
    crossOriginIsolated: self.crossOriginIsolated,
    jspi: typeof WebAssembly.Suspending === 'function',
    libllama: Wllama.getLibllamaVersion(),
  };
  if (threads > 1 && !self.crossOriginIsolated) {
    throw new Error('page is not cross-origin isolated (COOP/COEP headers missing): wllama would fall back to one thread');
  }

  status('fetching model');
  const t0 = performance.now();
  const response = await fetch(modelUrl);
  if (!response.ok) throw new Error(`GET ${modelUrl}: HTTP ${response.status}`);
  const blob = await response.blob();
  const fetchMs = performance.now() - t0;

  status('loading model');
  const wllama = new Wllama({ default: '/wllama/esm/wasm/wllama.wasm' }, {
    logger: { debug: verbose ? console.debug : () => {}, log: console.log, warn: console.warn, error: console.error },
  });
  try {
    await wllama.loadModel([blob], {
      n_threads: threads,
      n_gpu_layers: 0,
      n_ctx: promptTokens + genTokens + 16,
      n_batch: Math.max(promptTokens, 512), // the whole prompt is one batch
      n_ubatch: 512, // llama.cpp's default micro-batch, qwasm's prefill step is also up to 512 tokens
      n_parallel: 1,
      seed: 1,
    });
    const loadMs = performance.now() - t0;
    const info = wllama.getLoadedContextInfo();
    const added = (info.add_bos_token ? 1 : 0) + (info.add_eos_token ? 1 : 0);
    if (promptTokens - added < 1) throw new Error(`--prompt-tokens must be more than the ${added} token(s) the tokenizer adds`);
    const prompt = promptText(promptTokens - added);

    const runs = [];
    for (let r = 0; r < repeat; r++) {
      status(`run ${r + 1} of ${repeat}`);
      const { timings: t, wallMs } = await complete(wllama, prompt, genTokens);
      if (t.prompt_n !== promptTokens) throw new Error(`wllama evaluated ${t.prompt_n} prompt tokens, expected ${promptTokens}`);
      if (t.predicted_n !== genTokens) throw new Error(`wllama generated ${t.predicted_n} tokens, expected ${genTokens}`);
      runs.push({
        promptMs: t.prompt_ms,
        predictedN: t.predicted_n,
        predictedMs: t.predicted_ms,
        wallMs,
      });
    }
    // Best run, as `qwasm bench --repeat` reports it.
    const best = {
      promptMs: Math.min(...runs.map((r) => r.promptMs)),
      predictedMs: Math.min(...runs.map((r) => r.predictedMs)),
    };
    status('done');
    return {
      threads: wllama.getNumThreads(),
      multithread: wllama.isMultithread(),
      promptTokens,
      genTokens,
      fetchSeconds: fetchMs / 1000,
      loadSeconds: loadMs / 1000,
      prefillTokensPerSecond: (1000 * promptTokens) / best.promptMs,
      // llama-server's clock for generation starts when the first token is sampled from the prompt's
      // logits, so predicted_ms spans genTokens - 1 decode steps: count them as qwasm bench does.
      decodeTokensPerSecond: genTokens > 1 ? (1000 * (genTokens - 1)) / best.predictedMs : 0,
      timeToFirstTokenMs: best.promptMs,
      runs,
      context: { n_ctx: info.n_ctx, n_batch: info.n_batch, n_ubatch: info.n_ubatch, n_vocab: info.n_vocab },
      environment,
    };
  } finally {
    await wllama.exit().catch(() => {});
  }
};

status('ready');
window.wllamaReady = true;
