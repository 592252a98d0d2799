/**
 * A minimal ZIP reader for `.npz` files: the central directory is located through the end-of-central-
 * directory record (ZIP64 records and extra fields included, since NumPy writes ZIP64 entries), and
 * entries are either stored or deflated (inflated with node:zlib, output capped at the declared size so
 * a zip bomb cannot allocate more). CRC-32 is verified. Encrypted entries and other methods are rejected.
 */
import { crc32, inflateRawSync } from 'node:zlib';
import { inputError } from '../core/errors.js';

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  crc: number;
  localOffset: number;
}

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const EOCD64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

export class ZipReader {
  readonly entries: ZipEntry[];
  private readonly view: DataView;

  constructor(readonly bytes: Uint8Array, readonly file: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.entries = this.readDirectory();
  }

  private fail(msg: string, offset?: number): never {
    throw inputError('ZIP_MALFORMED', `${this.file}: ${msg}`, { file: this.file, offset });
  }

  private u16(at: number): number {
    if (at + 2 > this.bytes.length) this.fail('truncated', at);
    return this.view.getUint16(at, true);
  }

  private u32(at: number): number {
    if (at + 4 > this.bytes.length) this.fail('truncated', at);
    return this.view.getUint32(at, true);
  }

  private u64(at: number): number {
    if (at + 8 > this.bytes.length) this.fail('truncated', at);
    const v = this.view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`64-bit field too large at offset ${at}`, at);
    return Number(v);
  }

  private readDirectory(): ZipEntry[] {
    const b = this.bytes;
    let eocd = -1;
    for (let i = b.length - 22; i >= Math.max(0, b.length - 22 - 65535); i--) {
      if (this.view.getUint32(i, true) === EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) this.fail('not a zip archive (no end-of-central-directory record)');
    let count = this.u16(eocd + 10);
    let dirSize = this.u32(eocd + 12);
    let dirOffset = this.u32(eocd + 16);
    if (count === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || this.u32(loc) !== EOCD64_LOCATOR) this.fail('ZIP64 archive without a ZIP64 locator', eocd);
      const rec = this.u64(loc + 8);
      if (this.u32(rec) !== EOCD64) this.fail('bad ZIP64 end-of-central-directory record', rec);
      count = this.u64(rec + 32);
      dirSize = this.u64(rec + 40);
      dirOffset = this.u64(rec + 48);
    }
    if (dirOffset + dirSize > b.length) this.fail(`central directory (offset ${dirOffset}, ${dirSize} bytes) is outside the file`, eocd);
    const entries: ZipEntry[] = [];
    let p = dirOffset;
    const dec = new TextDecoder();
    for (let i = 0; i < count; i++) {
      if (this.u32(p) !== CENTRAL) this.fail(`bad central directory entry ${i}`, p);
      const flags = this.u16(p + 8);
      const method = this.u16(p + 10);
      const crc = this.u32(p + 16);
      let compressedSize = this.u32(p + 20);
      let size = this.u32(p + 24);
      const nameLen = this.u16(p + 28);
      const extraLen = this.u16(p + 30);
      const commentLen = this.u16(p + 32);
      let localOffset = this.u32(p + 42);
      if (p + 46 + nameLen + extraLen > b.length) this.fail('truncated central directory', p);
      const name = dec.decode(b.subarray(p + 46, p + 46 + nameLen));
      if (flags & 1) this.fail(`entry ${name} is encrypted`, p);
      // ZIP64 extended information: only the fields whose 32-bit value is 0xFFFFFFFF are present, in order
      let e = p + 46 + nameLen;
      const end = e + extraLen;
      while (e + 4 <= end) {
        const id = this.u16(e);
        const len = this.u16(e + 2);
        if (id === 0x0001) {
          let q = e + 4;
          if (size === 0xffffffff) (size = this.u64(q)), (q += 8);
          if (compressedSize === 0xffffffff) (compressedSize = this.u64(q)), (q += 8);
          if (localOffset === 0xffffffff) localOffset = this.u64(q);
        }
        e += 4 + len;
      }
      entries.push({ name, method, compressedSize, size, crc, localOffset });
      p += 46 + nameLen + extraLen + commentLen;
    }
    return entries;
  }

  /** The uncompressed bytes of an entry. */
  read(entry: ZipEntry): Uint8Array {
    const p = entry.localOffset;
    if (this.u32(p) !== LOCAL) this.fail(`bad local header for ${entry.name}`, p);
    const start = p + 30 + this.u16(p + 26) + this.u16(p + 28);
    if (start + entry.compressedSize > this.bytes.length) this.fail(`entry ${entry.name} runs past the end of the file`, p);
    const raw = this.bytes.subarray(start, start + entry.compressedSize);
    let out: Uint8Array;
    if (entry.method === 0) out = raw;
    else if (entry.method === 8) {
      try {
        out = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (e) {
        this.fail(`cannot inflate ${entry.name}: ${(e as Error).message}`, start);
      }
    } else this.fail(`entry ${entry.name} uses compression method ${entry.method} (only stored and deflate are supported)`, p);
    if (out.length !== entry.size) this.fail(`entry ${entry.name} inflated to ${out.length} bytes, the directory says ${entry.size}`, p);
    if (crc32(out) !== entry.crc) this.fail(`entry ${entry.name} fails its CRC-32 check`, p);
    return out;
  }
}
