import { type FileHandle, open } from "node:fs/promises";
import { DitcacheError, invalidArgument } from "./errors.js";
import {
  bfloat16ToFloat32Array,
  float16ToFloat32Array,
  float32ToBfloat16Array,
  float32ToFloat16Array,
} from "./half.js";
import { formatShape, sizeOf } from "./shape.js";

/** Source element types {@link readSafetensors} converts to float32. */
export type SafetensorsDType = "F32" | "F16" | "BF16";

/** A tensor read from a safetensors file, converted to float32 on the host. */
export interface HostTensor {
  /** Element type in the file. */
  readonly dtype: SafetensorsDType;
  /** Dimensions, outermost first. */
  readonly shape: number[];
  /** Values converted to float32. */
  readonly data: Float32Array;
}

/** What {@link readSafetensors} returns. */
export interface SafetensorsContents {
  /** Tensors by name, in file order of their data. */
  readonly tensors: Map<string, HostTensor>;
  /** The `__metadata__` string map (empty when absent). */
  readonly metadata: Record<string, string>;
}

/** Options of {@link readSafetensors}. */
export interface ReadSafetensorsOptions {
  /** Name used in error messages (a file path). @defaultValue "safetensors" */
  name?: string;
  /**
   * What to do with tensors of a dtype other than F32/F16/BF16: throw UNSUPPORTED, or leave
   * them out of the result (they are still validated). @defaultValue "error"
   */
  unsupported?: "error" | "skip";
}

/** Options of {@link writeSafetensors}. */
export interface WriteSafetensorsOptions {
  /** Element type to store. @defaultValue "F32" */
  dtype?: SafetensorsDType;
  /** The `__metadata__` string map. */
  metadata?: Record<string, string>;
}

/** Largest JSON header accepted, as in the reference implementation. */
const MAX_HEADER_BYTES = 100_000_000;

const ITEM_SIZES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Parses a safetensors file held in memory. The header is validated completely before any
 * tensor data is read: sizes, JSON, dtypes, shapes, offsets inside the data section, byte
 * lengths matching the shapes, and tensors that neither overlap nor leave holes.
 *
 * @throws DitcacheError BAD_FILE naming the field at fault; UNSUPPORTED for other dtypes.
 * @example
 * const { tensors, metadata } = readSafetensors(new Uint8Array(await readFile("model.safetensors")));
 */
export function readSafetensors(
  bytes: Uint8Array,
  options: ReadSafetensorsOptions = {},
): SafetensorsContents {
  if (!(bytes instanceof Uint8Array)) invalidArgument("bytes", bytes, "a Uint8Array");
  const file = options.name ?? "safetensors";
  const bad = failWith(file);
  const headerLength = readHeaderLength(bytes.subarray(0, 8), bytes.length, bad);
  const dataStart = 8 + headerLength;
  const { entries, metadata } = parseHeader(
    bytes.subarray(8, dataStart),
    bytes.length - dataStart,
    options,
    file,
  );
  const tensors = new Map<string, HostTensor>();
  for (const entry of entries) {
    // Copy into a fresh buffer: aligned for typed-array views, and owned (a Node Buffer's
    // slice() would be a view into a shared pool).
    const raw = new Uint8Array(entry.end - entry.begin);
    raw.set(bytes.subarray(dataStart + entry.begin, dataStart + entry.end));
    tensors.set(entry.name, { dtype: entry.dtype, shape: entry.shape, data: decode(entry.dtype, raw) });
  }
  return { tensors, metadata };
}

/**
 * Reads and parses a safetensors file with the validation of {@link readSafetensors}; errors
 * name the path. The header is read and validated first, then each tensor is read straight into
 * its own buffer, so the whole file is never held at once (no 2 GiB `readFile` limit).
 *
 * @throws DitcacheError NOT_FOUND when the file does not exist, BAD_FILE when it is malformed.
 */
export async function readSafetensorsFile(
  path: string,
  options: Omit<ReadSafetensorsOptions, "name"> = {},
): Promise<SafetensorsContents> {
  const bad = failWith(path);
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new DitcacheError(
      code === "ENOENT" ? "NOT_FOUND" : "BAD_FILE",
      `${path}: cannot open safetensors file (${code ?? (error as Error).message})`,
      { cause: error },
    );
  }
  try {
    const fileLength = (await handle.stat()).size;
    const readAt = async (position: number, length: number): Promise<Uint8Array> => {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, position + done);
        if (bytesRead === 0)
          bad(`file ended at byte ${position + done} while reading ${length} bytes at ${position}`);
        done += bytesRead;
      }
      return out;
    };
    const headerLength = readHeaderLength(await readAt(0, Math.min(8, fileLength)), fileLength, bad);
    const dataStart = 8 + headerLength;
    const header = await readAt(8, headerLength);
    const { entries, metadata } = parseHeader(header, fileLength - dataStart, options, path);
    const tensors = new Map<string, HostTensor>();
    for (const entry of entries) {
      const raw = await readAt(dataStart + entry.begin, entry.end - entry.begin);
      tensors.set(entry.name, { dtype: entry.dtype, shape: entry.shape, data: decode(entry.dtype, raw) });
    }
    return { tensors, metadata };
  } finally {
    await handle.close();
  }
}

type Fail = (message: string) => never;

function failWith(file: string): Fail {
  return (message) => {
    throw new DitcacheError("BAD_FILE", `${file}: ${message}`);
  };
}

/** Bytes as text, with anything but printable ASCII shown as "." (what a wrong file starts with). */
function printable(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes).replace(/[^\x20-\x7e]/g, ".");
}

/** Validates the u64 little-endian header length against the file size and the limit. */
function readHeaderLength(prefix: Uint8Array, fileLength: number, bad: Fail): number {
  if (fileLength < 8 || prefix.length < 8)
    bad(`file is ${fileLength} bytes, expected at least 8 (header length)`);
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const headerLength = view.getUint32(4, true) * 2 ** 32 + view.getUint32(0, true);
  if (headerLength > MAX_HEADER_BYTES)
    bad(
      `header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file? it starts with ${JSON.stringify(printable(prefix.subarray(0, 8)))})`,
    );
  if (headerLength > fileLength - 8) {
    bad(
      `header length ${headerLength} exceeds the ${fileLength - 8} bytes after the length field (truncated file?)`,
    );
  }
  return headerLength;
}

interface ConvertibleEntry extends Entry {
  dtype: SafetensorsDType;
}

/**
 * Validates the whole header against the data section length and returns the entries to
 * convert, in data order, with the metadata.
 */
function parseHeader(
  headerBytes: Uint8Array,
  dataLength: number,
  options: ReadSafetensorsOptions,
  file: string,
): { entries: ConvertibleEntry[]; metadata: Record<string, string> } {
  const bad = failWith(file);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    return bad("header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (error) {
    return bad(`header is not valid JSON (${(error as Error).message.split("\n")[0]})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    bad("header is not a JSON object");

  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value))
        bad("__metadata__ is not an object");
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        if (typeof item !== "string") bad(`__metadata__[${quote(key)}] is ${typeof item}, expected a string`);
        metadata[key] = item as string;
      }
      continue;
    }
    entries.push(parseEntry(name, value, dataLength, bad));
  }

  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: Entry | undefined;
  for (const entry of byOffset) {
    if (entry.begin < covered) {
      bad(
        `tensor ${quote(entry.name)}: data_offsets [${entry.begin}, ${entry.end}] overlap tensor ${quote(previous?.name ?? "")} ending at ${covered}`,
      );
    }
    if (entry.begin > covered) {
      bad(
        `tensor ${quote(entry.name)}: data starts at ${entry.begin}, expected ${covered} (hole in the data section)`,
      );
    }
    covered = entry.end;
    previous = entry;
  }
  if (covered !== dataLength) bad(`data section is ${dataLength} bytes but tensors cover ${covered}`);

  const convertible: ConvertibleEntry[] = [];
  for (const entry of byOffset) {
    if (isConvertible(entry)) convertible.push(entry);
    else if (options.unsupported !== "skip") {
      throw new DitcacheError(
        "UNSUPPORTED",
        `${file}: tensor ${quote(entry.name)} has dtype ${entry.dtype}, expected F32, F16 or BF16 (pass unsupported: "skip" to leave it out)`,
      );
    }
  }
  return { entries: convertible, metadata };
}

/**
 * A name or key from the header, quoted for an error message: JSON escapes keep the message on
 * one line even when the (untrusted) name holds a newline, as a `\n` escape in the header does.
 */
function quote(text: string): string {
  return JSON.stringify(text);
}

function isConvertible(entry: Entry): entry is ConvertibleEntry {
  return entry.dtype === "F32" || entry.dtype === "F16" || entry.dtype === "BF16";
}

function parseEntry(
  name: string,
  value: unknown,
  dataLength: number,
  bad: (message: string) => never,
): Entry {
  const tensor = `tensor ${quote(name)}`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) bad(`${tensor} is not an object`);
  const record = value as Record<string, unknown>;
  const dtype = record.dtype;
  if (typeof dtype !== "string" || !Object.hasOwn(ITEM_SIZES, dtype)) {
    bad(`${tensor}: dtype ${JSON.stringify(dtype)} is not a safetensors dtype`);
  }
  const shape = record.shape;
  if (!Array.isArray(shape) || !shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
    bad(`${tensor}: shape ${JSON.stringify(shape)}, expected an array of non-negative integers`);
  }
  const offsets = record.data_offsets;
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0)
  ) {
    bad(`${tensor}: data_offsets ${JSON.stringify(offsets)}, expected [begin, end] non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) bad(`${tensor}: data_offsets [${begin}, ${end}] has begin > end`);
  if (end > dataLength)
    bad(`${tensor}: data_offsets [${begin}, ${end}] reach past the ${dataLength}-byte data section`);
  const expected = sizeOf(shape as number[]) * ITEM_SIZES[dtype as string]!;
  if (end - begin !== expected) {
    bad(
      `${tensor}: ${end - begin} data bytes, expected ${expected} for ${dtype} ${formatShape(shape as number[])}`,
    );
  }
  return { name, dtype: dtype as string, shape: [...(shape as number[])], begin, end };
}

function decode(dtype: SafetensorsDType, raw: Uint8Array): Float32Array {
  if (dtype === "F32") {
    if (LITTLE_ENDIAN) return new Float32Array(raw.buffer, 0, raw.length / 4);
    const view = new DataView(raw.buffer);
    return Float32Array.from({ length: raw.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
  }
  let bits: Uint16Array;
  if (LITTLE_ENDIAN) bits = new Uint16Array(raw.buffer, 0, raw.length / 2);
  else {
    const view = new DataView(raw.buffer);
    bits = Uint16Array.from({ length: raw.length / 2 }, (_, i) => view.getUint16(i * 2, true));
  }
  return dtype === "F16" ? float16ToFloat32Array(bits) : bfloat16ToFloat32Array(bits);
}

/**
 * Serialises float32 tensors as safetensors: keys sorted, tensors stored contiguously in key
 * order, the JSON header padded with spaces so the data section starts 8-byte aligned.
 *
 * @throws DitcacheError INVALID_ARGUMENT when a tensor's data length does not match its shape.
 * @example
 * await writeFileAtomic("out.safetensors", writeSafetensors({ w: { shape: [2], data: new Float32Array([1, 2]) } }));
 */
export function writeSafetensors(
  entries: Readonly<Record<string, { readonly shape: readonly number[]; readonly data: Float32Array }>>,
  options: WriteSafetensorsOptions = {},
): Uint8Array {
  const dtype = options.dtype ?? "F32";
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16") {
    invalidArgument("options.dtype", dtype, '"F32", "F16" or "BF16"');
  }
  const itemSize = dtype === "F32" ? 4 : 2;
  const names = Object.keys(entries).sort();
  const header: Record<string, unknown> = {};
  if (options.metadata !== undefined) {
    for (const [key, value] of Object.entries(options.metadata)) {
      if (typeof value !== "string") invalidArgument(`options.metadata["${key}"]`, value, "a string");
    }
    header.__metadata__ = options.metadata;
  }
  let offset = 0;
  for (const name of names) {
    if (name === "__metadata__") invalidArgument("entries", name, "tensor names other than __metadata__");
    const { shape, data } = entries[name]!;
    if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
      invalidArgument(`entries["${name}"].shape`, shape, "non-negative integers");
    }
    if (!(data instanceof Float32Array) || data.length !== sizeOf(shape)) {
      invalidArgument(
        `entries["${name}"].data`,
        data?.length,
        `a Float32Array of ${sizeOf(shape)} values for shape ${formatShape(shape)}`,
      );
    }
    const size = data.length * itemSize;
    header[name] = { dtype, shape: [...shape], data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  let jsonBytes = new TextEncoder().encode(json);
  const padding = (8 - (jsonBytes.length % 8)) % 8;
  if (padding > 0) {
    json += " ".repeat(padding);
    jsonBytes = new TextEncoder().encode(json);
  }
  const out = new Uint8Array(8 + jsonBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, jsonBytes.length, true);
  view.setUint32(4, 0, true);
  out.set(jsonBytes, 8);
  let position = 8 + jsonBytes.length;
  for (const name of names) {
    const data = entries[name]!.data;
    const encoded =
      dtype === "F32" ? data : dtype === "F16" ? float32ToFloat16Array(data) : float32ToBfloat16Array(data);
    const chunk = new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength);
    if (LITTLE_ENDIAN) out.set(chunk, position);
    else {
      for (let i = 0; i < encoded.length; i++) {
        if (itemSize === 4) view.setFloat32(position + i * 4, encoded[i]!, true);
        else view.setUint16(position + i * 2, encoded[i]!, true);
      }
    }
    position += chunk.length;
  }
  return out;
}
