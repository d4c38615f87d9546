// Runs one validate + pack + push in its own process so a test or the bench
// can read that process's peak RSS. The request (credentials included) comes on
// stdin, never on the command line; the result goes to stdout as JSON.
import { readFileSync } from "node:fs";
import { text } from "node:stream/consumers";
import { validateArchive } from "../../migration/archive/validate.ts";
import type { Compression } from "../../migration/oci/image.ts";
import { RegistryCredentials } from "../../migration/registry/auth.ts";
import { type PushResult, pushCheckpointImage } from "../../migration/registry/push.ts";

export interface PushChildRequest {
  archivePath: string;
  checkpointDir?: string;
  repository: string;
  tag: string;
  compression: Compression;
  insecure?: boolean;
  username?: string;
  password?: string;
}

export interface PushChildResponse {
  result: PushResult;
  /**
   * Peak RSS of this program (VmHWM), baseline Node runtime included. Not
   * getrusage's maxrss: that keeps the pre-exec high-water mark of the forked
   * parent (a test runner) and over-reports by tens of MB.
   */
  maxRssBytes: number;
  elapsedMs: number;
}

function peakRssBytes(): number {
  const kib = readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+) kB$/m)?.[1];
  return kib ? Number(kib) * 1024 : process.resourceUsage().maxRSS * 1024;
}

const req = JSON.parse(await text(process.stdin)) as PushChildRequest;
const started = performance.now();
const archive = await validateArchive(req.archivePath, { checkpointDir: req.checkpointDir });
const result = await pushCheckpointImage({
  archive,
  repository: req.repository,
  tag: req.tag,
  compression: req.compression,
  insecure: req.insecure,
  credentials:
    req.username !== undefined && req.password !== undefined
      ? new RegistryCredentials(req.username, req.password)
      : undefined,
});
const out: PushChildResponse = {
  result,
  maxRssBytes: peakRssBytes(),
  elapsedMs: performance.now() - started,
};
process.stdout.write(`${JSON.stringify(out)}\n`);
