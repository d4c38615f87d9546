export const ArchiveErrorReason = {
  /** The path leaves the checkpoint directory (`..`, an absolute path elsewhere, a symlink). */
  PathOutsideCheckpointDir: "PathOutsideCheckpointDir",
  NotFound: "NotFound",
  NotARegularFile: "NotARegularFile",
  /** Not a tar, or not the shape of a container checkpoint. */
  ArchiveInvalid: "ArchiveInvalid",
} as const;
export type ArchiveErrorReason = (typeof ArchiveErrorReason)[keyof typeof ArchiveErrorReason];

export class ArchiveError extends Error {
  override name = "ArchiveError";
  readonly reason: ArchiveErrorReason;

  constructor(reason: ArchiveErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}
