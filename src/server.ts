/**
 * The process entry point: reads the configuration, builds the app, listens, and shuts down
 * gracefully on SIGTERM / SIGINT (in-flight requests finish, the pool and PostgreSQL close).
 */
import { loadConfig, ConfigError } from './config.ts';
import { buildApp } from './app.ts';
import { EmbeddedStartError } from './db/embedded.ts';
import { limitHeapGrowth, releaseHeapWhenIdle } from './memory.ts';

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`Configuration error: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

// The old generation grows by half at most between full collections (src/memory.ts).
limitHeapGrowth();

// Awaiting the app waits for its plugins to load (a Fastify instance is thenable): the embedded
// PostgreSQL starts there, and what stops it is said in one sentence, not a stack trace.
const app = await buildApp(config).catch((err: unknown) => {
  if (!(err instanceof EmbeddedStartError)) throw err;
  process.stderr.write(`Could not start: ${err.message}\n`);
  process.exit(1);
});
// V8 keeps the heap grown for the start-up work and for bursts of requests: give it back when idle.
releaseHeapWhenIdle(app);
let closing = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'shutting down');
    app.close().then(
      () => process.exit(0),
      (err) => {
        app.log.error({ err: String(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
try {
  await app.listen({ port: config.port, host: config.host });
  app.log.info({ fhirBase: `${config.baseUrl}/fhir/r4` }, 'Tributary is ready');
  if (config.fhirAuth === 'off')
    app.log.warn("FHIR_AUTH=off: FHIR requests without credentials reach all of the built-in app's data. Never use this in production.");
} catch (err) {
  app.log.error({ err: String(err) }, 'could not start');
  await app.close().catch(() => {});
  process.exit(1);
}
