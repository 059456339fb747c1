/**
 * The PostgreSQL pool: DATABASE_URL when set, otherwise an embedded server in the data folder.
 * Migrations run before the pool is handed out. Closes what it opened.
 */
import fp from 'fastify-plugin';
import pg from 'pg';
import type { FastifyInstance } from 'fastify';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded.ts';
import { migrate } from '../src/storage/migrate.ts';

declare module 'fastify' {
  interface FastifyInstance {
    pg: pg.Pool;
    /** Search queries: no plan_cache_mode override, so each is planned for its values. */
    pgSearch: pg.Pool;
  }
}

// bigint (int8) stays a string: JavaScript numbers cannot hold every 64-bit id.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);

export default fp(
  async function db(app: FastifyInstance) {
    const { config } = app;
    let embedded: EmbeddedDatabase | undefined;
    let url = config.databaseUrl;
    if (!url) {
      app.log.info({ dataDir: config.dataDir }, 'starting embedded PostgreSQL');
      embedded = await startEmbeddedPostgres({
        dataDir: config.dataDir,
        port: config.embeddedPgPort,
        sharedBuffersMB: config.embeddedPgSharedBuffersMB,
        onLog: (m) => app.log.debug({ pg: m.trim() }, 'postgres'),
        onNotice: (m) => app.log.info(m),
      });
      url = embedded.url;
    }
    // Every connection starts with the statement and idle-in-transaction limits (startup
    // parameters, so no statement runs before them): a slow search is cancelled (57014, a 504)
    // instead of holding its connection, and a transaction left open is ended by the server.
    const limits = {
      statement_timeout: config.dbStatementTimeoutMs,
      idle_in_transaction_session_timeout: config.dbIdleInTransactionTimeoutMs,
    };
    const pool = new pg.Pool({
      connectionString: url,
      max: config.dbPoolSize,
      ...limits,
      application_name: 'tributary',
      // Named (prepared) statements are the fixed ones of src/storage/sql.ts, whose best plan does not
      // depend on the values: plan them once. The setting applies to unnamed statements too, so
      // search SQL, whose best plan depends on how common each value is, has a pool of its own.
      // Searches whose SQL fixes their plan (anchored on ids, includes) are named per shape here too:
      // connections are renewed every 10 minutes, which bounds the statements each one keeps.
      options: '-c plan_cache_mode=force_generic_plan',
      maxLifetimeSeconds: 600,
    });
    // Search statements are named per shape (parsed once per connection) but planned for each
    // request's values; connections are renewed every 10 minutes, which bounds the statements each
    // one keeps.
    const searchPool = new pg.Pool({
      connectionString: url,
      max: config.dbPoolSize,
      application_name: 'tributary-search',
      ...limits,
      options: '-c plan_cache_mode=force_custom_plan',
      maxLifetimeSeconds: 600,
    });
    let closing = false;
    for (const p of [pool, searchPool]) {
      p.on('error', (err) => {
        // While shutting down, PostgreSQL ending idle connections is expected.
        if (!closing) app.log.error({ err: err.message }, 'idle database connection failed');
      });
    }
    try {
      // Migrations may build indexes over large tables: they run on a connection of their own
      // without the statement limit (still ended if left idle in its transaction).
      const migrations = new pg.Pool({
        connectionString: url,
        max: 1,
        application_name: 'tributary-migrate',
        idle_in_transaction_session_timeout: config.dbIdleInTransactionTimeoutMs,
      });
      const started = Date.now();
      const applied = await migrate(migrations, undefined, (m) =>
        app.log.info(
          { migration: `${String(m.version).padStart(4, '0')}-${m.name}` },
          'migrating the database (on a large store this may take minutes; the server answers once it is done)',
        ),
      ).finally(() => migrations.end());
      if (applied.length) app.log.info({ applied, ms: Date.now() - started }, 'database migrated');
    } catch (err) {
      await pool.end();
      await searchPool.end();
      await embedded?.stop();
      throw err;
    }
    app.decorate('pg', pool);
    app.decorate('pgSearch', searchPool);
    app.addHook('onClose', async () => {
      closing = true;
      await pool.end();
      await searchPool.end();
      await embedded?.stop();
    });
  },
  { name: 'db', dependencies: ['config'] },
);
