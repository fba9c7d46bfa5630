/**
 * A minimal protobuf writer: just what ONNX's ModelProto needs (varints, 32-bit floats,
 * length-delimited bytes and nested messages).
 *
 * Large byte fields (weights) are kept as views of the caller's memory until {@link ProtoWriter.finish}
 * copies every part once into the final buffer, so a weight is copied exactly once.
 */

const WIRE_VARINT = 0;
const WIRE_FIXED32 = 5;
const WIRE_BYTES = 2;

/** Protobuf's hard limit on one serialised message. */
export const PROTOBUF_MAX_BYTES = 2 ** 31 - 1;

const encoder = new TextEncoder();

/** Accumulates the fields of one message; nested messages are other writers. */
export class ProtoWriter {
  /** Finished parts, in order; large byte fields are views of caller memory. */
  private readonly parts: Uint8Array[] = [];
  /** Small fields not yet flushed into a part. */
  private pending: number[] = [];
  private flushedLength = 0;

  /** Encoded length in bytes so far. */
  get length(): number {
    return this.flushedLength + this.pending.length;
  }

  /** An int64/int32/enum/bool field (negative values take 10 bytes, as protobuf requires). */
  int(field: number, value: number): this {
    this.tag(field, WIRE_VARINT);
    this.varint(value);
    return this;
  }

  /** A repeated int64 field, unpacked (onnx.proto is proto2). */
  ints(field: number, values: readonly number[]): this {
    for (const value of values) this.int(field, value);
    return this;
  }

  /** A 32-bit float field. */
  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    const bytes = new Uint8Array(new Float32Array([value]).buffer);
    for (const byte of bytes) this.pending.push(byte);
    return this;
  }

  /** A repeated float field, unpacked. */
  floats(field: number, values: readonly number[]): this {
    for (const value of values) this.float(field, value);
    return this;
  }

  /** A UTF-8 string field. */
  string(field: number, value: string): this {
    return this.bytes(field, encoder.encode(value));
  }

  /** A bytes field; large arrays are referenced, not copied, until {@link finish}. */
  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_BYTES);
    this.varint(value.byteLength);
    if (value.byteLength < 64) {
      for (const byte of value) this.pending.push(byte);
    } else {
      this.flush();
      this.push(value);
    }
    return this;
  }

  /** A nested message field; the nested writer's parts are adopted, not copied. */
  message(field: number, nested: ProtoWriter): this {
    this.tag(field, WIRE_BYTES);
    this.varint(nested.length);
    nested.flush();
    this.flush();
    for (const part of nested.parts) this.push(part);
    return this;
  }

  /** Copies every part into one buffer: the serialised message. */
  finish(): Uint8Array {
    this.flush();
    const out = new Uint8Array(this.flushedLength);
    let offset = 0;
    for (const part of this.parts) {
      out.set(part, offset);
      offset += part.byteLength;
    }
    return out;
  }

  private tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  private varint(value: number): void {
    if (!Number.isSafeInteger(value)) throw new RangeError(`protobuf varint: ${value} is not a safe integer`);
    if (value < 0) {
      // Two's complement over 64 bits, as protobuf encodes negative int64.
      let big = BigInt.asUintN(64, BigInt(value));
      while (big >= 0x80n) {
        this.pending.push(Number(big & 0x7fn) | 0x80);
        big >>= 7n;
      }
      this.pending.push(Number(big));
      return;
    }
    let rest = value;
    while (rest >= 0x80) {
      this.pending.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    this.pending.push(rest);
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    this.push(Uint8Array.from(this.pending));
    this.pending = [];
  }

  private push(part: Uint8Array): void {
    this.parts.push(part);
    this.flushedLength += part.byteLength;
  }
}
