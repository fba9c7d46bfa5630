import { inflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { crc32, encodePng } from "./png.js";

interface Chunk {
  type: string;
  body: Uint8Array;
}

function chunks(png: Uint8Array): Chunk[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out: Chunk[] = [];
  for (let offset = 8; offset < png.length; ) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...png.subarray(offset + 4, offset + 8));
    const body = png.subarray(offset + 8, offset + 8 + length);
    expect(view.getUint32(offset + 8 + length), `${type} CRC`).toBe(
      crc32(png.subarray(offset + 4, offset + 8 + length)),
    );
    out.push({ type, body });
    offset += 12 + length;
  }
  return out;
}

describe("encodePng", () => {
  it("computes the standard CRC-32", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  });

  it.each([1, 3, 4] as const)("writes signature, IHDR and IDAT rows for %i channel(s)", (channels) => {
    const width = 5;
    const height = 3;
    const data = Uint8Array.from({ length: width * height * channels }, (_, i) => (i * 37) % 256);
    const png = encodePng({ width, height, channels, data });
    expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const [ihdr, idat, iend] = chunks(png);
    expect([ihdr!.type, idat!.type, iend!.type]).toEqual(["IHDR", "IDAT", "IEND"]);
    const header = new DataView(ihdr!.body.buffer, ihdr!.body.byteOffset, 13);
    expect([header.getUint32(0), header.getUint32(4), ihdr!.body[8], ihdr!.body[9]]).toEqual([
      width,
      height,
      8,
      { 1: 0, 3: 2, 4: 6 }[channels],
    ]);
    expect(Array.from(ihdr!.body.subarray(10))).toEqual([0, 0, 0]);
    const raw = inflateSync(idat!.body);
    const stride = width * channels;
    expect(raw.length).toBe((stride + 1) * height);
    for (let y = 0; y < height; y++) {
      expect(raw[y * (stride + 1)]).toBe(0); // filter type none
      expect(Array.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)))).toEqual(
        Array.from(data.subarray(y * stride, (y + 1) * stride)),
      );
    }
  });

  it("rejects bad images naming the field", () => {
    expect(() => encodePng({ width: 2, height: 2, channels: 1, data: new Uint8Array(3) })).toThrow(
      /image\.data/,
    );
    expect(() => encodePng({ width: 0, height: 2, channels: 1, data: new Uint8Array(0) })).toThrow(
      /image\.width/,
    );
    expect(() => encodePng({ width: 1, height: 1, channels: 2 as 1, data: new Uint8Array(2) })).toThrow(
      /image\.channels/,
    );
  });
});
