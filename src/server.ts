/**
 * The process entry point: reads the configuration, builds the app, listens, and shuts down
 * gracefully on SIGTERM / SIGINT (in-flight requests finish, the pool and PostgreSQL close).
 */
import { loadConfig, ConfigError } from './config.ts';
import { buildApp } from './app.ts';
import { releaseHeapWhenIdle } from './memory.ts';

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

const app = await buildApp(config);
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
} catch (err) {
  app.log.error({ err: String(err) }, 'could not start');
  await app.close().catch(() => {});
  process.exit(1);
}
