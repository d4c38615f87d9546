import { describe, expect, it } from "vitest";
import { sanitizeTag, TAG_PATTERN, tagForMigration, tagFromArchiveName } from "./tag.ts";

describe("sanitizeTag", () => {
  it("replaces the ':' of an RFC 3339 time and other characters a tag cannot hold", () => {
    expect(sanitizeTag("web-0_shop-app-2024-02-29T18:28:17Z")).toBe(
      "web-0_shop-app-2024-02-29T18-28-17Z",
    );
    expect(sanitizeTag("a/b c+d@e")).toBe("a-b-c-d-e");
  });

  it("keeps valid tags unchanged", () => {
    for (const t of ["latest", "v1.2.3", "_x", "A_b-c.d"]) expect(sanitizeTag(t)).toBe(t);
  });

  it("drops leading '.' and '-', which a tag cannot start with", () => {
    expect(sanitizeTag("..-hidden")).toBe("hidden");
    expect(sanitizeTag(":::")).toBe("checkpoint");
    expect(sanitizeTag("")).toBe("checkpoint");
  });

  it("cuts names over 128 characters and keeps distinct inputs distinct", () => {
    const a = sanitizeTag(`${"x".repeat(200)}a`);
    const b = sanitizeTag(`${"x".repeat(200)}b`);
    expect(a).toHaveLength(128);
    expect(b).toHaveLength(128);
    expect(a).not.toBe(b);
  });

  it("always yields a valid tag", () => {
    const samples = [
      "",
      ":",
      "ünïcödé",
      "-a",
      ".a",
      "a".repeat(300),
      "checkpoint-p_n-c-2024-01-01T00:00:00+01:00.tar",
    ];
    for (const s of samples) expect(sanitizeTag(s)).toMatch(TAG_PATTERN);
  });
});

describe("tag helpers", () => {
  it("derives a tag from the kubelet's archive name", () => {
    expect(
      tagFromArchiveName(
        "/var/lib/kubelet/checkpoints/checkpoint-web-0_shop-app-2024-02-29T18:28:17Z.tar",
      ),
    ).toBe("web-0_shop-app-2024-02-29T18-28-17Z");
  });

  it("derives a deterministic tag from the Migration", () => {
    expect(tagForMigration("web-0-7f3c", "app")).toBe("web-0-7f3c-app");
    expect(tagForMigration("web-0-7f3c", "app")).toBe(tagForMigration("web-0-7f3c", "app"));
  });
});
