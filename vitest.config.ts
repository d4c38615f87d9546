import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: [
            "operator/**/*.test.ts",
            "sidecar/**/*.test.ts",
            "migration/**/*.test.ts",
            "plugin/**/*.test.ts",
            "test/unit/**/*.test.ts",
          ],
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          // One real control plane, NATS and registry for every integration file.
          globalSetup: ["test/cluster/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "nodes",
          include: ["test/nodes/**/*.test.ts"],
          // One cluster of real nodes (kubelet + containerd + runc + CRIU) with the
          // install bundle applied, shared by every file of this project.
          globalSetup: ["test/nodes/global-setup.ts"],
          testTimeout: 180_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
