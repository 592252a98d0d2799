/**
 * `npx tsx benchmarks/int4-attention.ts [hidden...]` (default 768): how q4 should treat the transformer
 * preset's fused com.microsoft.Attention at BERT-base / GPT-2-small widths. For each hidden size, on an
 * encoder (bert-ts17) and a decoder (gpt2-ts17) from test/models/transformers.ts (outlier channels as
 * the builder makes them, `LAYERS` layers, hidden / 64 heads, FFN 4x hidden), it builds
 *
 * - fp32: the transformer preset (what `variants` writes as model.onnx);
 * - q4: `quantize --mode int4` defaults (kernel auto): the int4 step's choice of fused Attention or not;
 * - q4-fused: kernel auto with the fused Attention kept (its packed Q/K/V weight unpacked to float32 at load);
 * - q4-unfused: kernel auto with attention left unfused (Q/K/V MatMuls quantized by the kernel table);
 * - q4-nbits: `--int4-kernel nbits` (attention unfused, every weight MatMulNBits);
 *
 * all RTN (no calibration data, as the CLI without --calibration), then times them at batch 1,
 * sequence 1 and 128, 1 thread, in interleaved rounds (runtime/timer.ts; each ratio is the median over
 * rounds of variant / fp32 in the same round), and reads each model's resident memory in a child
 * process: RSS after creating the session and after one run at sequence 128, minus the RSS before.
 * INT4_ATTENTION_LAYERS (default 2) and INT4_ATTENTION_ROUNDS (default 30) change the depth and rounds.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Model } from '../ir/ir.js';
import { cloneModel, saveModel } from '../onnx/index.js';
import { createPassContext } from '../passes/manager.js';
import type { AttentionWeights } from '../passes/transformer-step.js';
import { quantizeInt4, quantizesPackedAttention, type QuantizeInt4Options } from '../passes/quantize/quantize-int4.js';
import { renderTable } from '../report/table.js';
import { runInSandbox } from '../runtime/sandbox.js';
import { Session } from '../runtime/session.js';
import { median, timeInterleaved } from '../runtime/timer.js';
import { transformerFeed, transformerVariant } from '../test/models/transformers.js';
import { pairedRatio } from '../workflows/variants.js';
import { fuseTransformer } from '../workflows/quantize/int4.js';

const LAYERS = Number(process.env.INT4_ATTENTION_LAYERS ?? 2);
const ROUNDS = Number(process.env.INT4_ATTENTION_ROUNDS ?? 30);
const SEQS = [1, 128];
const VOCAB = 2048;

/** Child: resident memory of one session of `path`, MiB over the process's RSS before it. */
export async function sessionMemoryJob(path: string, feed: Parameters<Session['run']>[0]): Promise<{ loadedMiB: number; ranMiB: number }> {
  const mib = (b: number) => b / 2 ** 20;
  const before = process.memoryUsage.rss();
  const s = await Session.create(path, { intraOpNumThreads: 1, allowSpinning: false });
  const loaded = process.memoryUsage.rss();
  await s.run(feed);
  const ran = process.memoryUsage.rss();
  await s.dispose();
  return { loadedMiB: mib(loaded - before), ranMiB: mib(ran - before) };
}

interface Built {
  name: string;
  file: string;
  attention: number;
  nbits: number;
}

async function q4(input: Model, name: string, file: string, probe: Parameters<typeof quantizeInt4>[1]['probe'], options: Partial<QuantizeInt4Options>, attentionWeights: AttentionWeights): Promise<Built> {
  const { model } = await fuseTransformer(cloneModel(input), { keepWeights: true, attentionWeights });
  await quantizeInt4(model, { calibration: [], probe: probe ?? [] }, options, createPassContext());
  await saveModel(model, file);
  return { name, file, attention: model.graph.nodes.filter((n) => n.opType === 'Attention').length, nbits: model.graph.nodes.filter((n) => n.opType === 'MatMulNBits').length };
}

async function main(): Promise<void> {
  const hiddens = process.argv.slice(2).map(Number).filter((h) => h > 0);
  const work = mkdtempSync(join(tmpdir(), 'onnxforge-int4-attention-'));
  const self = fileURLToPath(import.meta.url);
  const load = [loadavg()[0]!];
  const rows: string[][] = [];
  try {
    for (const hidden of hiddens.length ? hiddens : [768]) {
      for (const kind of ['bert-ts17', 'gpt2-ts17']) {
        const variant = transformerVariant(kind);
        const input = variant.build({ hidden, heads: hidden / 64, ffn: 4 * hidden, layers: LAYERS, vocab: VOCAB, maxPositions: 256 });
        const probe = [1, 2, 3, 4].map((seed) => transformerFeed(variant, 1, 32, { seed, vocab: VOCAB }));
        const tag = `${kind} h${hidden}`;
        const fp32File = join(work, `${kind}-${hidden}-fp32.onnx`);
        const fp32 = (await fuseTransformer(cloneModel(input))).model;
        await saveModel(fp32, fp32File);
        const built: Built[] = [
          { name: 'fp32', file: fp32File, attention: fp32.graph.nodes.filter((n) => n.opType === 'Attention').length, nbits: 0 },
          await q4(input, 'q4 (default)', join(work, `${kind}-${hidden}-q4.onnx`), probe, {}, (w) => quantizesPackedAttention({}, w)),
          await q4(input, 'q4-fused', join(work, `${kind}-${hidden}-q4-fused.onnx`), probe, {}, true),
          await q4(input, 'q4-unfused', join(work, `${kind}-${hidden}-q4-unfused.onnx`), probe, {}, false),
          await q4(input, 'q4-nbits', join(work, `${kind}-${hidden}-q4-nbits.onnx`), probe, { kernel: 'nbits' }, quantizesPackedAttention({ kernel: 'nbits' })),
        ];
        const memory: { loadedMiB: number; ranMiB: number }[] = [];
        for (const b of built) memory.push((await runInSandbox<{ loadedMiB: number; ranMiB: number }>({ kind: 'call', module: self, export: 'sessionMemoryJob', args: [b.file, transformerFeed(variant, 1, 128, { vocab: VOCAB })] })).value);
        const sessions = [];
        for (const b of built) sessions.push(await Session.create(b.file, { intraOpNumThreads: 1, allowSpinning: false }, b.name));
        const perSeq: { ms: number[]; ratio: number[]; cpu: string }[] = [];
        try {
          for (const seq of SEQS) {
            const feeds = [7, 8].map((seed) => transformerFeed(variant, 1, seq, { seed, vocab: VOCAB }));
            const t = await timeInterleaved(sessions.map((session) => ({ session, feeds })), { rounds: ROUNDS, warmup: 3, inner: 'auto' });
            perSeq.push({ ms: t.entries.map((e) => median(e.wallMs)), ratio: t.entries.map((e) => pairedRatio(e.wallMs, t.entries[0]!.wallMs)), cpu: `${(t.contention.cpuOverWall * 100).toFixed(0)}%` });
          }
        } finally {
          for (const s of sessions) await s.dispose();
        }
        load.push(loadavg()[0]!);
        const fp32Bytes = statSync(fp32File).size;
        built.forEach((b, i) => {
          const lat = perSeq.map((p, j) => `${p.ms[i]!.toFixed(2)} ms ${i ? `${p.ratio[i]!.toFixed(3)}x` : ''} (seq ${SEQS[j]})`).join(', ');
          rows.push([tag, b.name, `${b.attention} Attention, ${b.nbits} MatMulNBits`, `${(statSync(b.file).size / fp32Bytes).toFixed(3)}x`, lat, `${memory[i]!.loadedMiB.toFixed(0)} / ${memory[i]!.ranMiB.toFixed(0)} MiB`, perSeq.map((p) => p.cpu).join(' ')]);
        });
        console.error(`${tag} done (load ${loadavg()[0]!.toFixed(2)})`);
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(
    renderTable(['model', 'variant', 'graph', 'file', 'latency median, ratio to fp32 (paired median)', 'RSS loaded / after a seq-128 run', 'CPU/wall'], rows, {
      title: `int4 and fused attention: ${LAYERS} layers, hidden/64 heads, FFN 4x, vocab ${VOCAB}; batch 1, 1 thread, ${ROUNDS} interleaved rounds; load average ${load.map((l) => l.toFixed(2)).join(' -> ')}`,
    }),
  );
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) await main();
