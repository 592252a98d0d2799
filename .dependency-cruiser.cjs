/**
 * The house rule (README "Design"): each top-level folder is one layer and imports point down only.
 * Checked by `npm run lint:deps` (part of `npm test`).
 */
const LAYERS = ['core', 'ir', 'onnx', 'analysis', 'runtime', 'data', 'calibration', 'train', 'passes', 'report', 'workflows', 'cli'];

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `${layer}-imports-up`,
  comment: `${layer}/ may import only ${LAYERS.slice(0, i).join(', ') || 'nothing above itself'} (layers below it)`,
  severity: 'error',
  from: { path: `^${layer}/` },
  to: { path: `^(${LAYERS.slice(i + 1).join('|')})/` },
}));

module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'no import cycles, static or dynamic', severity: 'error', from: {}, to: { circular: true } },
    ...upward,
    {
      name: 'pass-reaches-manager',
      comment: 'a pass gets its sub-pipeline from the pass context, never from the manager or the registry',
      severity: 'error',
      from: { path: '^passes/(cleanup|fusion|convert|quantize|prune|distill)/' },
      to: { path: '^passes/(manager|registry|presets|pipeline|pipeline-file)\\.ts$' },
    },
    {
      name: 'library-imports-onnxruntime-outside-runtime',
      comment: 'only runtime/ talks to onnxruntime',
      severity: 'error',
      from: { path: '^(core|ir|onnx|analysis|data|calibration|train|passes|report)/' },
      to: { path: 'onnxruntime-(node|web)' },
    },
    {
      name: 'pass-opens-sessions',
      comment:
        'passes reach onnxruntime through ctx.runner (runtime/runner.ts), so a pass can be tested with a fake runner: no sessions, in-memory sessions or profiles of their own (type-only imports are fine; runner.ts also re-exports the types). The one exception is compressed.ts, whose createSession is a public session factory for weight-compressed models (index.ts, workflows), not a pass',
      severity: 'error',
      from: { path: '^passes/', pathNot: '^passes/quantize/compressed\\.ts$' },
      to: { path: '^runtime/(session|from-model|profile)\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'web-reaches-node',
      comment:
        'onnxforge/web (web/) builds for the browser: nothing reachable from it imports a Node built-in or onnxruntime-node (pure code lives in onnx/codec.ts, passes/engine.ts, pipeline-core.ts, portable.ts, runtime/runner-types.ts)',
      severity: 'error',
      from: { path: '^web/' },
      to: { reachable: true, path: ['^(node:)?(fs|path|os|crypto|url|child_process|worker_threads|module|util|stream|events|zlib|http|https|net|tls|process|buffer|readline|perf_hooks|v8|vm|assert)(/|$)', 'onnxruntime-node'] },
    },
    {
      name: 'library-imports-cli',
      comment: 'nothing below the CLI parses argv',
      severity: 'error',
      from: { pathNot: '^(cli|bin|test|benchmarks)/' },
      to: { path: '(^cli/|node_modules/yargs)' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
