import { deflateSync } from "node:zlib";
import { invalidArgument } from "./errors.js";

/** An 8-bit image in row-major order, channels interleaved (gray, RGB or RGBA). */
export interface PngImage {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** 1 = gray, 3 = RGB, 4 = RGBA. */
  readonly channels: 1 | 3 | 4;
  /** `width * height * channels` bytes. */
  readonly data: Uint8Array;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (ISO-HDLC, as used by PNG and zip) of some bytes. */
export function crc32(bytes: Uint8Array, initial = 0): number {
  let c = (initial ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const COLOR_TYPES = { 1: 0, 3: 2, 4: 6 } as const;

/**
 * Encodes an 8-bit image as a PNG (no filtering, zlib-compressed).
 *
 * @throws DitcacheError INVALID_ARGUMENT for bad sizes or a data length that does not match.
 * @example
 * await writeFileAtomic("digit.png", encodePng({ width: 32, height: 32, channels: 1, data }));
 */
export function encodePng(image: PngImage): Uint8Array {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || width < 1 || width > 0x7fffffff)
    invalidArgument("image.width", width, "a positive integer");
  if (!Number.isInteger(height) || height < 1 || height > 0x7fffffff)
    invalidArgument("image.height", height, "a positive integer");
  if (channels !== 1 && channels !== 3 && channels !== 4)
    invalidArgument("image.channels", channels, "1, 3 or 4");
  if (!(data instanceof Uint8Array) || data.length !== width * height * channels) {
    invalidArgument("image.data", data?.length, `a Uint8Array of ${width * height * channels} bytes`);
  }
  const stride = width * channels;
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) raw.set(data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);

  const ihdr = new Uint8Array(13);
  const ihdrView = new DataView(ihdr.buffer);
  ihdrView.setUint32(0, width);
  ihdrView.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = COLOR_TYPES[channels];
  const chunks = [chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", new Uint8Array(0))];
  const signature = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const out = new Uint8Array(signature.length + chunks.reduce((sum, part) => sum + part.length, 0));
  out.set(signature, 0);
  let offset = signature.length;
  for (const part of chunks) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  view.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}
