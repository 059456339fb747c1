# Production image: runs Tributary against the PostgreSQL named by DATABASE_URL.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; the embedded PostgreSQL is not used when DATABASE_URL is set.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production PORT=8080 HOST=0.0.0.0 SANDBOXES=false
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
COPY plugins ./plugins
COPY profiles ./profiles
# The shipped health-system directory, imported at the first start (plugins/directory.ts).
COPY directory ./directory
COPY bin ./bin
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# A 16 MB young generation keeps RSS under 300 MB while ingesting (V8 would size it to 128 MB on a
# large machine); throughput is the same.
CMD ["node", "--max-semi-space-size=16", "src/server.ts"]
