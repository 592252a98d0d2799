/**
 * `onnxforge optimize in.onnx -o out.onnx [--passes P | --preset NAME] [--verify] [--inputs SPEC]
 * [--report out.json|out.md] [--explain]`: loads the model once, runs the pipeline in memory, prints
 * size and node counts before and after with a per-pass table, and writes the model last (atomically).
 * With --verify, a pass that makes outputs drift past the tolerance stops the run (exit 1) and nothing
 * is written.
 */
import { basename, extname } from 'node:path';
import type { CommandModule } from 'yargs';
import { assertValid } from '../../ir/checker.js';
import { inputError } from '../../core/errors.js';
import { loadModel, saveModel, serializeModel } from '../../onnx/index.js';
import { OptimizeReport, optimize } from '../../passes/manager.js';
import { parsePipeline, presetPipeline } from '../../passes/pipeline.js';
import { PRESETS } from '../../passes/registry.js';
import { retarget, type FusionTarget } from '../../passes/fusion/transformer-target.js';
import { formatBytes, renderTable } from '../../report/table.js';
import { modelFacts, newReport } from '../../report/document.js';
import { writeReport } from '../../report/files.js';
import { saveOptionsFrom, writeOptions, WriteArgs } from '../options.js';

interface Args extends WriteArgs {
  model: string;
  output: string;
  passes?: string;
  preset?: string;
  verify?: boolean;
  inputs?: string;
  shape?: string[];
  rtol?: number;
  atol?: number;
  report?: string;
  explain?: boolean;
  'max-iterations'?: number;
  target?: FusionTarget;
}

export const optimizeCommand: CommandModule<object, Args> = {
  command: 'optimize <model>',
  describe: 'Run a pass pipeline (default: the lossless `default` preset) and write the optimized model',
  builder: (y) =>
    writeOptions(
      y
        .positional('model', { type: 'string', demandOption: true, describe: 'the .onnx file' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the optimized model' })
        .option('passes', { type: 'string', describe: 'pipeline text, e.g. fold-constants,eliminate-dead or name<key=value;flag>' })
        .option('preset', { type: 'string', describe: `a named pipeline (${Object.keys(PRESETS).join(', ')}); default: default` })
        .option('verify', { type: 'boolean', describe: 'run the model before and after each pass and stop when outputs drift' })
        .option('inputs', { type: 'string', describe: 'inputs for --verify: a data spec (folder, file, random[:count[:seed]]); default random:2' })
        .option('shape', { type: 'string', array: true, describe: 'sizes of symbolic input dims for generated inputs: name=1,3,224,224 or dim=N' })
        .option('rtol', { type: 'number', default: 1e-3, describe: 'relative tolerance for --verify' })
        .option('atol', { type: 'number', default: 1e-5, describe: 'absolute tolerance for --verify' })
        .option('report', { type: 'string', describe: 'write the report (schema onnxforge.report/1) as .json, .md or .html' })
        .option('explain', { type: 'boolean', describe: 'print why passes did not apply where they looked' })
        .option('target', { choices: ['microsoft', 'generic'] as const, describe: 'operators the transformer fusions write: onnxruntime com.microsoft, or standard ONNX (opset 23)' })
        .option('max-iterations', { type: 'number', describe: 'rounds of the pipeline before giving up on a fixed point (default 10)' }),
    ) as never,
  handler: async (args) => {
    if (args.passes && args.preset) throw inputError('USAGE_CONFLICT', '--passes and --preset cannot be used together');
    if (args.report && !['.json', '.md', '.html'].includes(extname(args.report).toLowerCase())) throw inputError('USAGE_BAD_VALUE', `--report ${args.report}: the file must end in .json, .md or .html`);
    const saveOpts = saveOptionsFrom(args);
    const text = args.passes ?? presetPipeline(args.preset ?? 'default');
    const steps = args.target ? retarget(parsePipeline(text), args.target) : parsePipeline(text);
    const model = await loadModel(args.model);
    assertValid(model, args.model);
    const sizeBefore = serializeModel(model).length;
    const factsBefore = modelFacts(model, sizeBefore, args.model);
    let verify;
    if (args.verify) {
      const { createSession } = await import('../../runtime/session.js');
      const { collectSamples, parseShapeArg } = await import('../../data/index.js');
      const s = await createSession(args.model, { graphOptimizationLevel: 'disabled' });
      const inputs = s.inputs;
      await s.dispose();
      const shapes = Object.fromEntries((args.shape ?? []).map(parseShapeArg));
      const samples = await collectSamples(args.inputs ?? 'random:2:0', inputs, { shapes, limit: 16 });
      verify = { feeds: samples.map((x) => x.feed), rtol: args.rtol ?? 1e-3, atol: args.atol ?? 1e-5 };
    }
    const report = await optimize(model, steps, {
      ...(verify ? { verify } : {}),
      explain: !!args.explain,
      ...(args['max-iterations'] !== undefined ? { maxIterations: args['max-iterations'] } : {}),
    });
    const res = await saveModel(model, args.output, saveOpts);
    const sizeAfter = res.bytes + (res.dataBytes ?? 0);
    process.stdout.write(renderSummary(report, sizeBefore, sizeAfter) + '\n');
    if (args.explain) process.stdout.write(renderExplanations(report) + '\n');
    process.stdout.write(`wrote ${res.path}${res.dataPath ? ` (+ ${res.dataPath})` : ''}\n`);
    if (args.report) {
      const doc = newReport('optimize', `optimize ${basename(args.model)}: ${args.passes ?? `@${args.preset ?? 'default'}`}`);
      doc.input = factsBefore;
      doc.output = modelFacts(model, sizeAfter, res.path);
      doc.passes = report.records.map((r) => ({ pass: r.pass, ms: r.ms, changed: r.changed, nodesBefore: r.nodesBefore, nodesAfter: r.nodesAfter, bytesBefore: r.bytesBefore, bytesAfter: r.bytesAfter, stats: r.stats }));
      if (report.verification) doc.notes = [`Verified after every pass on ${report.verification.samples} sample(s): max abs diff ${report.verification.maxAbsDiff.toExponential(2)} (rtol ${report.verification.rtol}, atol ${report.verification.atol}).`];
      doc.details = report;
      await writeReport(doc, args.report);
    }
  },
};

function pct(a: number, b: number): string {
  return a === 0 ? '0%' : `${(((b - a) / a) * 100).toFixed(1)}%`;
}

export function renderSummary(r: OptimizeReport, sizeBefore: number, sizeAfter: number): string {
  const head = renderTable(
    ['', 'before', 'after', 'change'],
    [
      ['file size', formatBytes(sizeBefore), formatBytes(sizeAfter), pct(sizeBefore, sizeAfter)],
      ['nodes', r.nodesBefore, r.nodesAfter, pct(r.nodesBefore, r.nodesAfter)],
    ],
  );
  const rows = r.summary.map((s) => [s.pass, s.runs, `${s.ms.toFixed(1)} ms`, s.nodesRemoved, formatBytes(s.bytesSaved), Object.entries(s.stats).filter(([, v]) => v !== 0).map(([k, v]) => `${k}=${v}`).join(' ')]);
  const table = renderTable(['pass', 'runs', 'time', 'nodes removed', 'bytes saved', 'stats'], rows);
  const status = `${r.iterations} round${r.iterations === 1 ? '' : 's'}, ${r.converged ? 'converged' : 'stopped at the iteration cap before converging'}, ${r.ms.toFixed(0)} ms${r.verification ? `; verified on ${r.verification.samples} sample(s), max abs diff ${r.verification.maxAbsDiff.toExponential(2)}` : ''}`;
  return `${head}\n\n${table}\n${status}`;
}

function renderExplanations(r: OptimizeReport): string {
  if (r.explanations.length === 0) return 'explain: no pass reported a place where it did not apply';
  const rows = r.explanations.map((e) => [e.pass, e.node ?? '', e.reason]);
  return renderTable(['pass', 'node', 'why it did not apply'], rows);
}

