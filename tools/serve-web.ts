/**
 * `npm run web`: serves the page on localhost (default port 8080, `--port N` or PORT): web/page/ at /,
 * the page's bundles (dist/web-page/, `npm run build:web`) at /app/, onnxruntime-web's files
 * (node_modules/onnxruntime-web/dist) at /ort/. GET only, files only, no listing; a Content-Security-Policy
 * lets the page reach nothing but this server (the model never leaves the page).
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

const MOUNTS: Array<[string, string]> = [
  ['/app/', join(root, 'dist', 'web-page')],
  ['/ort/', join(root, 'node_modules', 'onnxruntime-web', 'dist')],
  ['/lib/', join(root, 'dist', 'web')],
  ['/', join(root, 'web', 'page')],
];

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.map': 'application/json',
  '.json': 'application/json',
};

export const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; form-action 'none'";

/** The file a URL path names, or undefined (outside every mount, or not a file). */
export function resolveStatic(urlPath: string): string | undefined {
  let p: string;
  try {
    p = decodeURIComponent(urlPath.split('?')[0]!);
  } catch {
    return undefined;
  }
  if (p === '/') p = '/index.html';
  for (const [prefix, dir] of MOUNTS) {
    if (!p.startsWith(prefix)) continue;
    const file = normalize(join(dir, p.slice(prefix.length)));
    if (!file.startsWith(dir + sep)) return undefined;
    try {
      return statSync(file).isFile() ? file : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Starts the server on 127.0.0.1 (`port` 0: any free port); resolves when it listens. */
export function startWebServer(port = 8080): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const file = req.method === 'GET' || req.method === 'HEAD' ? resolveStatic(req.url ?? '/') : undefined;
    if (!file) {
      res.writeHead(req.method === 'GET' || req.method === 'HEAD' ? 404 : 405, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const a = server.address();
      resolve({ server, url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : port}/` });
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf('--port');
  const port = Number(i > 0 ? process.argv[i + 1] : (process.env.PORT ?? 8080));
  const { url } = await startWebServer(port);
  process.stdout.write(`onnxforge in the browser: ${url} (Ctrl-C to stop)\n`);
}
