import { describe, expect, it } from "vitest";
import { matchArchive } from "./match.ts";

const owner = { namespace: "a", pod: "web", container: "b-c" };

describe("matchArchive", () => {
  it("matches on namespace, pod and container together", () => {
    expect(matchArchive({ namespace: "a", podName: "web", containerName: "b-c" }, owner)).toBe(
      undefined,
    );
  });

  it("tells apart what the kubelet's archive name cannot", () => {
    expect(matchArchive({ namespace: "a-b", podName: "web", containerName: "c" }, owner)).toBe(
      "the archive holds container c of pod a-b/web, not container b-c of pod a/web",
    );
    expect(matchArchive({ namespace: "a", podName: "web-0", containerName: "b-c" }, owner)).toMatch(
      /pod a\/web-0, not/,
    );
    expect(matchArchive({ namespace: "a", podName: "web", containerName: "b" }, owner)).toMatch(
      /container b of/,
    );
  });

  it("never matches an archive that does not name its pod or namespace", () => {
    expect(matchArchive({ containerName: "b-c" }, owner)).toMatch(/does not name its pod/);
    expect(matchArchive({ podName: "web", containerName: "b-c" }, owner)).toMatch(
      /does not name its pod/,
    );
  });
});
