// The images the install bundle and the node cluster run, built without Docker
// under their upstream names (test/cluster/images/build-images.sh) and pushed
// into the cluster's plain-HTTP registry, which the nodes' containerd uses as
// the mirror of docker.io, ghcr.io and registry.k8s.io.
import { execFile, spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export interface LocalImage {
  /** Upstream name, e.g. docker.io/library/busybox:1.37 */
  name: string;
  /** repository:tag in our registry: the name without its registry host, e.g. library/busybox:1.37 */
  mirrorPath: string;
  /** skopeo source reference of the built image, oci:/path:tag */
  layout: string;
}

/**
 * Builds every image (or finds it in the cache, keyed by a hash of its inputs:
 * an unchanged image is not rebuilt; a warm run takes a few seconds) and
 * returns where each one is. `pause` and `coredns` are the static binaries the
 * pause and CoreDNS images hold.
 */
export async function ensureImages(opts: {
  pause: string;
  coredns: string;
  log?(m: string): void;
}): Promise<LocalImage[]> {
  const log = opts.log ?? (() => {});
  const child = spawn(
    "bash",
    [
      join(repoRoot, "test/cluster/images/build-images.sh"),
      "--pause",
      opts.pause,
      "--coredns",
      opts.coredns,
      "--repo",
      repoRoot,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const images: LocalImage[] = [];
  const tail: string[] = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    const [name, mirrorPath, layout] = line.trim().split(/\s+/);
    if (name && mirrorPath && layout) images.push({ name, mirrorPath, layout });
  });
  createInterface({ input: child.stderr }).on("line", (line) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
    // Progress lines only; the builds' own output stays in the tail for errors.
    if (line.startsWith("[images] ")) log(line.slice("[images] ".length));
  });
  const code = await new Promise<number | null>((res, rej) => {
    child.once("error", rej);
    child.once("close", res);
  });
  if (code !== 0) {
    throw new Error(`build-images.sh exited with ${code}:\n${tail.join("\n")}`);
  }
  return images;
}

/**
 * Pushes the images into a plain-HTTP registry (host:port) under their mirror
 * paths. skopeo asks the registry for each blob first, so an image pushed
 * before costs a few HEAD requests and its small manifest. `wrap` prefixes the
 * skopeo command, e.g. ["nsenter", "-t", pid, "-n", "--"] to push from inside a
 * network namespace.
 */
export async function pushImages(
  images: LocalImage[],
  registry: string,
  opts: { wrap?: string[] } = {},
): Promise<void> {
  const [cmd, ...prefix] = [...(opts.wrap ?? []), "skopeo"];
  for (const image of images) {
    const args = [
      ...prefix,
      "copy",
      "--quiet",
      // The layouts hold gzip layers already: pushed as they are, digests unchanged.
      "--preserve-digests",
      "--dest-tls-verify=false",
      image.layout,
      `docker://${registry}/${image.mirrorPath}`,
    ];
    try {
      await run(cmd ?? "skopeo", args, { maxBuffer: 16 * 1024 * 1024 });
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`pushing ${image.name} to ${registry}: ${e.stderr || e.message}`);
    }
  }
}
