import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { Tensor } from '../../core/tensor.js';
import { modelFacts, newReport, ReportDocument, REPORT_SCHEMA } from '../../report/document.js';
import { readReport, writeReport } from '../../report/files.js';
import { renderHtml } from '../../report/html.js';
import { renderMarkdown } from '../../report/markdown.js';
import { runCli } from '../helpers/run-cli.js';

function sampleReport(): ReportDocument {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 3, 8, 8]);
  const w = b.initializer('w', Tensor.from('float32', [4, 3, 3, 3], new Float32Array(108).fill(0.1)));
  const [c] = b.op('Conv', [x, w], { pads: [1, 1, 1, 1] });
  const [r] = b.op('Relu', [c!]);
  const fc = b.initializer('fc', Tensor.from('float32', [8, 2], new Float32Array(16).fill(0.2)));
  const [m] = b.op('MatMul', [r!, fc]);
  b.output(m!, 'y');
  const model = b.model();
  const doc = newReport('quantize', 'cls: static INT8');
  doc.input = modelFacts(model, 2000, 'cls.onnx');
  doc.output = { ...modelFacts(model, 700, 'cls.int8.onnx'), paramBytesByOp: { Conv: 120, MatMul: 20 } };
  doc.passes = [
    { pass: 'fold-constants', ms: 3.2, changed: true, nodesBefore: 40, nodesAfter: 20, bytesBefore: 2000, bytesAfter: 1900, stats: { folded: 20 } },
    { pass: 'eliminate-dead', ms: 0.4, changed: false, nodesBefore: 20, nodesAfter: 20, bytesBefore: 1900, bytesAfter: 1900 },
    { pass: 'quantize-static', ms: 800, changed: true, nodesBefore: 20, nodesAfter: 34, bytesBefore: 1900, bytesAfter: 700 },
  ];
  const samples = (base: number) => Array.from({ length: 60 }, (_, i) => base + Math.sin(i) * 0.1);
  doc.latency = [
    { model: 'fp32', samplesMs: samples(1.2), p50: 1.2, p90: 1.3, mean: 1.2, min: 1.1 },
    { model: 'int8', samplesMs: samples(1.0), p50: 1.0, p90: 1.1, mean: 1.0, min: 0.9 },
  ];
  doc.outputs = [{ name: 'y', maxAbsError: 0.003, sqnrDb: 38.2, cosine: 0.99991 }];
  doc.accuracy = [{ metric: 'accuracy', value: 0.994, reference: 0.994 }];
  doc.layers = [
    { name: 'conv_0', op: 'Conv', sqnrDb: 41, precision: 'int8' },
    { name: 'conv_1', op: 'Conv', sqnrDb: 18, precision: 'int8' },
    { name: 'hswish', op: 'HardSwish', precision: 'float', reason: 'no int8 kernel in onnxruntime' },
  ];
  doc.notes = ['a note with <html> & "quotes"'];
  return doc;
}

describe('report rendering', () => {
  it('renders Markdown with the headline, sections and escaping', () => {
    const md = renderMarkdown(sampleReport());
    expect(md).toMatch(/^## cls: static INT8/);
    expect(md).toMatch(/\| size \| 2\.0 KiB \| 700 B \| 0\.35x \|/);
    expect(md).toMatch(/\| latency p50 \| 1\.20 ms \| 1\.00 ms \| 0\.83x \|/);
    expect(md).toContain('| fold-constants | 1 | 1 | 3.2 | 20 | 100 B |');
    expect(md).toMatch(/conv_1 \| Conv \| 18\.0/);
    expect(md).toContain('`hswish` (HardSwish): no int8 kernel in onnxruntime');
  });

  it('renders one self-contained HTML file with the data embedded safely', () => {
    const html = renderHtml(sampleReport());
    expect(html).not.toMatch(/<script[^>]+src=/);
    expect(html).not.toMatch(/<link[^>]+href=/);
    expect(html).toContain('a note with &lt;html&gt; &amp; &quot;quotes&quot;');
    // the embedded JSON cannot close its script element
    const json = html.slice(html.indexOf('id="report-data">') + 17, html.indexOf('</script>'));
    expect(json).not.toContain('<');
    expect(JSON.parse(json).schema).toBe(REPORT_SCHEMA);
    for (const id of ['size-by-op', 'latency', 'waterfall', 'layers']) expect(html).toContain(`data-chart="${id}"`);
  });

  it('reads reports back and rejects other schema versions and bad fields by name', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-report-'));
    try {
      const f = path.join(dir, 'r.json');
      fs.writeFileSync(f, JSON.stringify(sampleReport()));
      expect(readReport(f).title).toBe('cls: static INT8');
      fs.writeFileSync(f, JSON.stringify({ ...sampleReport(), schema: 'onnxforge.report/7' }));
      expect(() => readReport(f)).toThrowError(/report schema onnxforge.report\/7 is not supported/);
      fs.writeFileSync(f, JSON.stringify({ ...sampleReport(), passes: 3 }));
      expect(() => readReport(f)).toThrowError(/field passes must be a list/);
      fs.writeFileSync(f, JSON.stringify({ ...sampleReport(), input: { bytes: 'x' } }));
      expect(() => readReport(f)).toThrowError(/field input/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('reports of every command render through the common document', () => {
  const write = (dir: string, name: string, x: unknown) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, JSON.stringify(x));
    return f;
  };
  it('adapts quantize, prune, distill, bench, compare, gate and inspect reports, and refuses unknown versions', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-adapt-'));
    try {
      const q = readReport(write(dir, 'q.json', {
        schema: 'onnxforge.quantize/1', input: 'a/cls.onnx', output: 'cls.int8.onnx', mode: 'static',
        size: { fp32Bytes: 1000, int8Bytes: 340, ratio: 0.34 }, latency: { fp32Ms: 2, int8Ms: 1.5, ratio: 0.75, runs: 20, threads: 1 },
        outputs: [{ name: 'y', elements: 2, maxAbs: 0.01, maxRel: 0.1, meanAbs: 0.001, cosine: 0.999, sqnrDb: 31 }], evalSamples: 10,
        accuracy: [{ metric: 'cls', fp32: { accuracy: 1 }, int8: { accuracy: 0.9 } }],
        layers: [{ tensor: 'conv_out', producer: 'Conv', sqnrDb: 25, name: 'conv_out', elements: 1, maxAbs: 0, maxRel: 0, meanAbs: 0, cosine: 1 }],
        quantization: { float: [{ node: 'hs', op: 'HardSwish', reason: 'no int8 kernel' }] }, wallMs: 1,
      }));
      expect(q.command).toBe('quantize');
      expect(q.input!.bytes).toBe(1000);
      expect(q.accuracy![0]).toEqual({ metric: 'cls', value: 0.9, reference: 1 });
      expect(q.layers!.map((l) => l.precision)).toEqual(['int8', 'float']);
      expect(renderMarkdown(q)).toMatch(/\| size \| 1000 B \| 340 B \| 0\.34x \|/);
      const p = readReport(write(dir, 'p.json', { schema: 'onnxforge.prune/1', mode: 'channels', flops: { before: { totalFlops: 100, totalParams: 10 }, after: { totalFlops: 50, totalParams: 5 } }, latency: { beforeMs: 2, afterMs: 1, ratio: 0.5, runs: 5 }, explanations: [] }));
      expect(p.notes!.join(' ')).toMatch(/0\.500x/);
      // adapted latency has a p50 and no per-run samples: the other columns say so instead of repeating it
      expect(renderMarkdown(p)).toMatch(/\| before \| 2\.00 \| - \| - \| - \| - \|/);
      const pm = readReport(write(dir, 'pm.json', { schema: 'onnxforge.prune/1', mode: 'magnitude', flops: { before: { totalFlops: 1, totalParams: 1 }, after: { totalFlops: 1, totalParams: 1 } }, sizes: { original: { raw: 1000, gzip: 900, brotli: 880 }, dense: { raw: 1000, gzip: 500, brotli: 480 }, best: { raw: { bytes: 800, variant: 'sparse' }, gzip: { bytes: 500, variant: 'dense' }, brotli: { bytes: 480, variant: 'dense' } } }, optimized: { pipeline: '@default', nodesBefore: 9, nodesAfter: 5, weightSparsity: 0.5 }, explanations: [] }));
      // the written file is the dense one; the sparse raw size is reported as an alternative
      expect(pm.input!.bytes).toBe(1000);
      expect(pm.output!.bytes).toBe(1000);
      expect(pm.notes!.join(' ')).toMatch(/gzip 500 B \(dense = 0\.556x of 900 B\)/);
      expect(pm.notes!.join(' ')).toMatch(/Then @default: nodes 9 -> 5; weight sparsity after it 50\.0%/);
      const dd = readReport(write(dir, 'd.json', { schema: 'onnxforge.distill/1', teacher: 't.onnx', student: 's.onnx', output: 'o.onnx', size: { teacherBytes: 10, studentBeforeBytes: 8, studentBytes: 7 }, latency: { teacherMs: 2, studentMs: 1 }, agreement: { before: 0.5, after: 0.9, samples: 4 } }));
      expect(dd.output!.bytes).toBe(7);
      const b = readReport(write(dir, 'b.json', { schema: 'onnxforge.bench/1', models: [{ model: 'x/m.onnx', createMs: 1, stats: { p50: 1, p90: 2, mean: 1.2, min: 0.9 } }] }));
      expect(b.latency![0]!.model).toBe('m.onnx');
      const c = readReport(write(dir, 'c.json', { schema: 'onnxforge.compare/1', reference: 'a', candidate: 'b', tolerance: 1e-4, outputs: [{ name: 'y', maxAbs: 0.5, sqnrDb: 10, cosine: 0.9 }], pass: false }));
      expect(c.budgets![0]!.verdict).toBe('fail');
      const g = readReport(write(dir, 'g.json', { schema: 'onnxforge.gate/1', model: 'm.onnx', passed: true, checks: [{ metric: 'size', baseline: '1 B', current: '1 B', change: '+0.00%', budget: '<= +1.00%', verdict: 'pass' }] }));
      expect(g.budgets![0]!.metric).toBe('size');
      const i = readReport(write(dir, 'i.json', { schema: 'onnxforge.inspect/1', file: 'm.onnx', fileBytes: 99, nodes: 3, opCounts: { Conv: 3 }, parameters: { byOpType: { Conv: { count: 1, elements: 4, bytes: 16 } } } }));
      expect(i.input!.paramBytesByOp).toEqual({ Conv: 16 });
      for (const d of [q, p, dd, b, c, g, i]) expect(renderHtml(d)).toMatch(/^<!doctype html>/);
      expect(() => readReport(write(dir, 'v.json', { schema: 'onnxforge.quantize/3' }))).toThrowError(/onnxforge.quantize\/3 is not supported.*onnxforge.quantize\/1/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('report command', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-report-cli-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const run = runCli;

  it('renders md to stdout and html to a file; exits 2 on bad input', async () => {
    const f = path.join(dir, 'r.json');
    await writeReport(sampleReport(), f);
    const md = await run(['report', f, '--format', 'md']);
    expect(md.code).toBe(0);
    expect(md.out).toMatch(/## cls: static INT8/);
    const html = path.join(dir, 'r.html');
    expect((await run(['report', f, '--format', 'html', '-o', html])).code).toBe(0);
    expect(fs.readFileSync(html, 'utf8')).toMatch(/^<!doctype html>/);
    expect((await run(['report', f, '--format', 'pdf'])).code).toBe(2);
    expect((await run(['report', path.join(dir, 'none.json')])).code).toBe(2);
    const other = path.join(dir, 'other.json');
    fs.writeFileSync(other, JSON.stringify({ schema: 'onnxforge.report/2' }));
    const r = await run(['report', other]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/error\[REPORT_SCHEMA_VERSION\]/);
  });
});

function findChromium(): string | undefined {
  for (const c of [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) {
    if (c && fs.existsSync(c)) return c;
  }
  return undefined;
}

const chromium = findChromium();
if (!chromium) console.warn('report HTML browser test skipped: no Chromium found (apt-get install chromium; .ci/run installs it)');

describe.skipIf(!chromium)('report HTML in headless Chromium', () => {
  it('draws every chart that has data and marks the others empty', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-report-browser-'));
    try {
      const full = path.join(dir, 'full.html');
      fs.writeFileSync(full, renderHtml(sampleReport()));
      const bare = newReport('convert', 'no charts');
      const empty = path.join(dir, 'empty.html');
      fs.writeFileSync(empty, renderHtml(bare));
      const dump = (file: string) =>
        execFileSync(
          chromium!,
          ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${path.join(dir, 'profile')}`, '--virtual-time-budget=5000', '--dump-dom', `file://${file}`],
          { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] },
        );
      const dom = dump(full);
      expect(dom).toContain('data-charts-done="true"');
      expect(dom).not.toMatch(/data-error="/);
      const rendered = (id: string) => Number(new RegExp(`data-chart="${id}"[^>]*data-rendered="(\\d+)"`).exec(dom)?.[1] ?? 0);
      expect(rendered('size-by-op')).toBeGreaterThanOrEqual(4);
      expect(rendered('latency')).toBeGreaterThan(2);
      expect(rendered('waterfall')).toBe(2);
      expect(rendered('layers')).toBe(2);
      expect((dom.match(/<rect /g) ?? []).length).toBeGreaterThan(10);
      const domEmpty = dump(empty);
      expect(domEmpty).toContain('data-charts-done="true"');
      expect((domEmpty.match(/data-empty="true"/g) ?? []).length).toBe(4);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
