// A user metric module for metrics.test.ts: mean of the first output, and whether the label matches the argmax.
export default function meanAndHit(outputs, label) {
  const t = Object.values(outputs)[0];
  let s = 0;
  let best = 0;
  for (let i = 0; i < t.data.length; i++) {
    s += t.data[i];
    if (t.data[i] > t.data[best]) best = i;
  }
  return { mean: s / t.data.length, hit: best === label ? 1 : 0 };
}
export const notAFunction = 3;
