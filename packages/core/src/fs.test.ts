import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeFileAtomic } from "./fs.js";

describe("writeFileAtomic", () => {
  const folder = mkdtemp(join(tmpdir(), "ditcache-fs-"));
  afterAll(async () => rm(await folder, { recursive: true, force: true }));

  it("writes and replaces a file, leaving no temporary files", async () => {
    const path = join(await folder, "out.bin");
    await writeFile(path, "old");
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    expect(Array.from(await readFile(path))).toEqual([1, 2, 3]);
    await writeFileAtomic(path, "text");
    expect(await readFile(path, "utf8")).toBe("text");
    expect(await readdir(await folder)).toEqual(["out.bin"]);
  });

  it("removes the temporary file when the rename fails", async () => {
    const own = await mkdtemp(join(await folder, "rename-"));
    await mkdir(join(own, "target", "child"), { recursive: true }); // renaming a file over a non-empty folder fails
    await expect(writeFileAtomic(join(own, "target"), "data")).rejects.toThrow();
    expect(await readdir(own)).toEqual(["target"]);
  });
});
