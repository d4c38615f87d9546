// The edge node's link to the rest of the cluster is a veth the harness can
// shape (tc tbf) and cut (a partition), for migrations over a realistic edge
// uplink. Measured from inside the edge node against the image registry on the
// cluster network.
import { afterEach, describe, expect, it } from "vitest";
import { IMAGE_REGISTRY, nodeHandle } from "../cluster/nodes.ts";
import { cluster } from "./support.ts";

function edge() {
  const a = cluster().nodes.find((n) => n.name === "edge-1");
  if (!a) throw new Error("no edge-1");
  return nodeHandle(a);
}

/** The largest blob of busybox's image, fetched from inside the edge node: bytes/s, or undefined when unreachable. */
async function download(): Promise<{ bytesPerSecond: number; size: number } | undefined> {
  const n = edge();
  const manifest = await n
    .exec([
      "curl",
      "-sf",
      "-m",
      "3",
      "-H",
      "Accept: application/vnd.oci.image.manifest.v1+json",
      "-H",
      "Accept: application/vnd.oci.image.index.v1+json",
      `http://${IMAGE_REGISTRY}/v2/library/nats/manifests/2.11-alpine`,
    ])
    .then((r) => r.stdout)
    .catch(() => undefined);
  if (!manifest) return undefined;
  const layers = (JSON.parse(manifest) as { layers: { digest: string; size: number }[] }).layers;
  const big = layers.reduce((a, b) => (b.size > a.size ? b : a));
  const out = await n.exec([
    "curl",
    "-sf",
    "-m",
    "60",
    "-o",
    "/dev/null",
    "-w",
    "%{speed_download} %{size_download}",
    `http://${IMAGE_REGISTRY}/v2/library/nats/blobs/${big.digest}`,
  ]);
  const [speed, size] = out.stdout.trim().split(" ").map(Number);
  return { bytesPerSecond: speed ?? 0, size: size ?? 0 };
}

/** The fastest of three downloads (the link is not shaped: a busy machine, not the link, sets the pace). */
async function fastest(): Promise<{ bytesPerSecond: number; size: number }> {
  let best = { bytesPerSecond: 0, size: 0 };
  for (let i = 0; i < 3; i++) {
    const d = await download();
    if (d && d.bytesPerSecond > best.bytesPerSecond) best = d;
  }
  return best;
}

describe("edge link", () => {
  afterEach(async () => {
    await edge().heal();
    await edge().unshape();
  });

  it("is shaped to a bandwidth and back", async () => {
    const plain = await fastest();
    await edge().shape(20);
    const shaped = await download();
    await edge().unshape();
    const again = await fastest();
    expect(plain.size).toBeGreaterThan(1 << 20);
    // 20 Mbit/s is 2.5 MB/s. The unshaped veth carries far more on an idle
    // machine (hundreds of MB/s), but under a full CI run the registry's share
    // of two busy cores was seen as low as 8.6 MB/s: the claims are that the
    // shaper caps the rate and that removing it lifts the cap, so the unshaped
    // figure is the best of three and need only be twice the shaped one.
    expect(shaped?.bytesPerSecond).toBeLessThan(2.5e6 * 1.2);
    expect(plain.bytesPerSecond).toBeGreaterThan((shaped?.bytesPerSecond ?? 0) * 2);
    expect(again.bytesPerSecond).toBeGreaterThan((shaped?.bytesPerSecond ?? 0) * 2);
  });

  it("is cut (a partition) and healed", async () => {
    expect(await download()).toBeDefined();
    await edge().cut();
    expect(await download()).toBeUndefined();
    await edge().heal();
    let back: Awaited<ReturnType<typeof download>>;
    for (let i = 0; i < 20 && !back; i++) back = await download();
    expect(back).toBeDefined();
  });
});
