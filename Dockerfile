# syntax=docker/dockerfile:1
# fortary-authz: Envoy ext_authz sidecar. Build: docker build -t fortary-authz:<version> .
# Runs as a non-root numeric user on a read-only root filesystem; logs go to stdout; no secrets in the image
# (REDIS_URL comes from the environment at run time, in Kubernetes from a Secret).

# ---- build: compile TypeScript with the dev dependencies ----
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# Files tsc does not emit (e.g. the Redis function library, *.lua) must sit next to the code that loads them.
RUN npm run build \
 && find src -type f ! -name '*.ts' -exec cp --parents {} dist/ \;

# ---- runtime: production dependencies and the compiled output only ----
FROM node:20.20.2-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
RUN groupadd --system --gid 10001 fortary \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin fortary
COPY package.json package-lock.json ./
# bcrypt ships prebuilt binaries: no compiler toolchain needed here.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The gRPC service definitions, loaded at startup by @grpc/proto-loader.
COPY proto ./proto
COPY bin ./bin
# Everything above is owned by root and read-only for the service user.
USER 10001:10001
# 9191 ext_authz Check (bind it to loopback in a sidecar), 9192 grpc.health.v1, 9464 /metrics /healthz /readyz
EXPOSE 9191 9192 9464
# Kubernetes probes (gRPC health on 9192) do the health checking.
HEALTHCHECK NONE
# Exec form: node is PID 1 and receives SIGTERM itself, so it can drain in-flight checks.
ENTRYPOINT ["node", "dist/src/main.js"]
