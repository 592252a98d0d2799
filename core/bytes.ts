/**
 * Byte comparisons and keys that work in Node and in a browser: Node's Buffer (memcmp, native base64)
 * when the runtime has it, plain loops otherwise. Results are the same either way.
 */
type BufferLike = { compare(a: Uint8Array, b: Uint8Array): number; from(b: Uint8Array): { toString(enc: 'base64'): string } };
const NodeBuffer = (globalThis as { Buffer?: BufferLike }).Buffer;

/** Whether two byte arrays hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (NodeBuffer) return NodeBuffer.compare(a, b) === 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The bytes in base64 (a map key for content). */
export function bytesBase64(bytes: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(bytes).toString('base64');
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
