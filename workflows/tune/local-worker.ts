/**
 * The child process of `onnxforge tune --workers K` (executors.ts): takes trials over IPC, runs each
 * with runTrial in this process, asks the parent for the timing lock around the timed rounds, and
 * sends the result back. It exits when the parent goes away.
 */
import { openStore, type ContentStore } from './store.js';
import { runTrial } from './trial.js';
import type { FromWorker, ToWorker } from './executors.js';

const send = (m: FromWorker) => process.send!(m);
let granted: (() => void) | undefined;
const stores = new Map<string, ContentStore>();

function timingLock(): Promise<() => void> {
  return new Promise((resolve) => {
    granted = () => resolve(() => send({ type: 'unlock' }));
    send({ type: 'lock' });
  });
}

process.on('message', (m: ToWorker) => {
  if (m.type === 'granted') {
    const g = granted;
    granted = undefined;
    g?.();
    return;
  }
  let store = stores.get(m.store);
  if (!store) stores.set(m.store, (store = openStore(m.store)));
  void runTrial(m.spec, store.fetcher(), { store, timingLock, worker: `local:${process.pid}` }).then((result) => send({ type: 'result', result }));
});
process.on('disconnect', () => process.exit(0));
