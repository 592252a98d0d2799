/**
 * The page: takes a model (drop or picker), shows `inspect`'s summary, runs the chosen preset or
 * weight quantization in the worker with a progress bar, shows size, latency and output difference
 * of both models (onnxruntime-web, in the worker) and offers the result for download. Errors are
 * shown in the page (#message); `body[data-state]` says where the page is (empty, loading, ready,
 * running, done, error).
 */
import { DEFAULT_COMPARE_LIMIT, DEFAULT_LIMIT, formatBytes, type FromWorker, type ToWorker } from './protocol.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const drop = $<HTMLDivElement>('drop');
const fileInput = $<HTMLInputElement>('file');
const message = $<HTMLDivElement>('message');
const setup = $<HTMLElement>('setup');
const summary = $<HTMLPreElement>('summary');
const modeSelect = $<HTMLSelectElement>('mode');
const runButton = $<HTMLButtonElement>('run');
const progress = $<HTMLProgressElement>('progress');
const progressLabel = $<HTMLSpanElement>('progress-label');
const output = $<HTMLElement>('output');
const compareBody = $<HTMLTableElement>('compare').tBodies[0]!;
const compareNote = $<HTMLParagraphElement>('compare-note');
const download = $<HTMLAnchorElement>('download');
const dataPicker = $<HTMLParagraphElement>('data-picker');
const dataInput = $<HTMLInputElement>('data');

const params = new URLSearchParams(location.search);
const positive = (v: string | null, d: number) => (v !== null && Number(v) > 0 ? Number(v) : d);
const limit = positive(params.get('limit'), DEFAULT_LIMIT);
const compareLimit = positive(params.get('compare-limit'), DEFAULT_COMPARE_LIMIT);

const worker = new Worker('/app/worker.js', { type: 'module' });
const send = (m: ToWorker) => worker.postMessage(m);
let resultUrl: string | undefined;

function state(s: string): void {
  document.body.dataset.state = s;
}

function say(text: string, kind: 'error' | 'info'): void {
  message.textContent = text;
  message.className = kind;
}

function open(file: File): void {
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = undefined;
  setup.hidden = true;
  output.hidden = true;
  dataPicker.hidden = true;
  say('', 'info');
  state('loading');
  send({ type: 'open', file, limit });
}

dataInput.addEventListener('change', () => {
  const files = [...(dataInput.files ?? [])];
  if (!files.length) return;
  state('loading');
  send({ type: 'data', files });
});

fileInput.addEventListener('change', () => {
  const f = fileInput.files?.[0];
  if (f) open(f);
});
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const files = e.dataTransfer?.files;
  if (!files || files.length === 0) return;
  // a model and its data files may be dropped together
  const all = [...files];
  const model = all.find((f) => /\.onnx$/i.test(f.name)) ?? all[0]!;
  open(model);
  const rest = all.filter((f) => f !== model);
  if (rest.length) send({ type: 'data', files: rest });
});

runButton.addEventListener('click', () => {
  output.hidden = true;
  compareBody.replaceChildren();
  compareNote.textContent = '';
  progress.value = 0;
  runButton.disabled = true;
  say('', 'info');
  state('running');
  send({ type: 'run', mode: modeSelect.value as ToWorker extends { mode: infer M } ? M : never, compareLimit });
});

worker.addEventListener('message', (ev: MessageEvent<FromWorker>) => {
  const m = ev.data;
  switch (m.type) {
    case 'needs-data':
      say(`${m.name} keeps its weights in external data: choose ${m.files.join(', ')} (it is read here, a piece at a time, and never uploaded). The result is saved as one file.`, 'info');
      dataPicker.hidden = false;
      state('needs-data');
      break;
    case 'summary':
      dataPicker.hidden = true;
      summary.textContent = m.text;
      modeSelect.replaceChildren(...m.modes.map((x) => new Option(x.label, x.mode)));
      runButton.disabled = false;
      setup.hidden = false;
      if (m.warnings.length) say(m.warnings.join('\n'), 'info');
      state('ready');
      break;
    case 'progress':
      progress.value = m.value;
      progressLabel.textContent = m.label;
      break;
    case 'result': {
      resultUrl = URL.createObjectURL(new Blob([m.bytes], { type: 'application/octet-stream' }));
      download.href = resultUrl;
      download.download = m.name;
      download.textContent = `Download ${m.name} (${formatBytes(m.after)}, was ${formatBytes(m.before)})`;
      progress.value = 1;
      progressLabel.textContent = m.label;
      output.hidden = false;
      runButton.disabled = false;
      state('done');
      break;
    }
    case 'compare':
      compareBody.replaceChildren(
        ...m.rows.map((r) => {
          const tr = document.createElement('tr');
          for (const c of [r.what, r.original, r.result]) tr.appendChild(document.createElement('td')).textContent = c;
          return tr;
        }),
      );
      compareNote.textContent = m.note ?? '';
      break;
    case 'error':
      say(m.code ? `${m.message} [${m.code}]` : m.message, 'error');
      runButton.disabled = false;
      state('error');
      break;
  }
});
worker.addEventListener('error', (e) => {
  e.preventDefault();
  say(`The worker failed: ${e.message}`, 'error');
  state('error');
});
