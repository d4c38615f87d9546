# syntax=docker/dockerfile:1
# One image for the operator, the monitor (sidecar) and the edge agent; the
# first argument picks the program (docker/edgeshift.sh):
#   operator | sidecar | agent
# Build: docker build -t ghcr.io/edgeshift/edgeshift:0.1.0 .

# --- build: full toolchain, compiles TypeScript to dist/ ----------------------
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Exactly the committed lock (`npm ci`). No install scripts: TypeScript ships its
# compiler per platform as an optional dependency and needs none; the `node` dev
# dependency (Node 24 for hosts whose own Node is older) is skipped this way, and
# the base image's Node 24 compiles.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY operator ./operator
COPY sidecar ./sidecar
COPY migration ./migration
COPY plugin ./plugin
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

# --- runtime: production dependencies and compiled JavaScript only -----------
FROM node:24-bookworm-slim
LABEL org.opencontainers.image.title="edgeshift" \
      org.opencontainers.image.description="Moves running containers from edge nodes to cloud nodes with CRIU checkpoints" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
# package.json also carries "type": "module", which the compiled files need.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY --chmod=0755 docker/edgeshift.sh /usr/local/bin/edgeshift
# Nothing is written at run time, so a read-only root filesystem works. Numeric
# so the kubelet can enforce runAsNonRoot; the agent DaemonSet overrides it
# with runAsUser 0 (checkpoint archives are root-owned 0600 files).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/edgeshift"]
CMD ["operator"]
