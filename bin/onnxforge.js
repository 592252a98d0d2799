#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (built by `npm run build`, which `npm ci` runs via `prepare`).
import('../dist/cli/main.js').then(
  (m) => m.main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }),
  (err) => {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
      console.error('error[NOT_BUILT] onnxforge is not built: run `npm run build` (npm ci does it through the prepare script)');
      process.exitCode = 2;
    } else {
      console.error(err);
      process.exitCode = 70;
    }
  },
);
