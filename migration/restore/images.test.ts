import { describe, expect, it } from "vitest";
import { checkpointImages } from "./images.ts";

const D = `sha256:${"a".repeat(64)}`;
const REPO = "registry.example:5000/edgeshift/checkpoints";

describe("checkpointImages", () => {
  it("builds <repository>@<digest> from the EdgeNode's repository and the reported digest", () => {
    expect(checkpointImages(REPO, [{ name: "app", digest: D }])).toEqual({
      ok: true,
      images: { app: `${REPO}@${D}` },
    });
    // What the agent's push records is accepted as it is.
    expect(checkpointImages(REPO, [{ name: "app", digest: D, image: `${REPO}@${D}` }]).ok).toBe(
      true,
    );
    // Docker Hub short names are written as the push writes them.
    expect(checkpointImages("me/cp", [{ name: "a", digest: D }])).toEqual({
      ok: true,
      images: { a: `docker.io/me/cp@${D}` },
    });
  });

  it("refuses an image from anywhere else, or the right repository under another digest or a tag", () => {
    for (const image of [
      `evil.example/edgeshift/checkpoints@${D}`,
      `${REPO}@sha256:${"b".repeat(64)}`,
      `${REPO}:latest`,
      `${REPO}-x@${D}`,
      "busybox",
    ]) {
      const r = checkpointImages(REPO, [{ name: "app", digest: D, image }]);
      expect(r.ok, image).toBe(false);
      if (!r.ok) expect(r.message).toContain("container app: image");
    }
  });

  it("refuses a missing or malformed digest", () => {
    for (const digest of [
      undefined,
      "",
      "sha256:abc",
      `sha512:${"a".repeat(128)}`,
      `sha256:${"A".repeat(64)}`,
      `${D}\n`,
    ]) {
      const r = checkpointImages(REPO, [{ name: "app", digest }]);
      expect(r.ok, String(digest)).toBe(false);
    }
  });

  it("refuses without a repository or a container", () => {
    expect(checkpointImages(undefined, [{ name: "app", digest: D }])).toMatchObject({ ok: false });
    expect(checkpointImages(`${REPO}:tag`, [{ name: "app", digest: D }])).toMatchObject({
      ok: false,
    });
    expect(checkpointImages(REPO, [])).toMatchObject({ ok: false });
  });
});
