/**
 * `npm run build:web`: esbuild bundles for the browser.
 * - dist/web/onnxforge-web.js: `onnxforge/web` (web/index.ts) as one ES module, no Node built-ins
 *   (platform browser: a `node:` import fails the build; dependency-cruiser's web-reaches-node rule
 *   says which import brought it in).
 * - dist/web-page/main.js and worker.js: the page's module and its Web Worker. onnxruntime-web stays
 *   out of the bundle: the worker imports its WASM build from /ort/ (node_modules/onnxruntime-web/dist,
 *   served by tools/serve-web.ts), which loads its .wasm from the same folder.
 */
import { build, type Plugin } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** `onnxruntime-web/wasm` -> the file the page serves at /ort/ (not bundled). */
const ortFromServer: Plugin = {
  name: 'ort-from-server',
  setup(b) {
    b.onResolve({ filter: /^onnxruntime-web(\/wasm)?$/ }, () => ({ path: '/ort/ort.wasm.min.mjs', external: true }));
  },
};

export async function buildWeb(): Promise<void> {
  const common = { bundle: true, format: 'esm', platform: 'browser', target: 'es2022', sourcemap: true, logLevel: 'warning', absWorkingDir: root } as const;
  await build({ ...common, entryPoints: ['web/index.ts'], outfile: 'dist/web/onnxforge-web.js' });
  await build({ ...common, entryPoints: { main: 'web/page/main.ts', worker: 'web/page/worker.ts' }, outdir: 'dist/web-page', plugins: [ortFromServer] });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildWeb();
  process.stdout.write('built dist/web/onnxforge-web.js and dist/web-page/{main,worker}.js\n');
}
