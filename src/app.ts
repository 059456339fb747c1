/**
 * The root plugin: builds the Fastify app from a Config. It never reads the environment and
 * never listens (server.ts does both), so tests build as many apps as they like.
 */
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import fp from 'fastify-plugin';
import { randomUUID } from 'node:crypto';
import type { Config } from './config.ts';
import dbPlugin from '../plugins/db.ts';
import outboundPlugin from '../plugins/outbound.ts';
import corsPlugin from '../plugins/cors.ts';
import jobsPlugin from '../plugins/jobs.ts';
import corePlugin from '../plugins/core.ts';
import fhirRoutes from '../plugins/fhir.ts';
import health from '../plugins/health.ts';
import authPlugin from '../plugins/auth.ts';
import userRoutes from '../plugins/users.ts';
import adminRoutes from '../plugins/admin.ts';
import smartRoutes from '../plugins/smart.ts';
import directoryPlugin from '../plugins/directory.ts';
import sandboxPlugin from '../plugins/sandbox.ts';
import connectRoutes from '../plugins/connect.ts';
import syncPlugin from '../plugins/sync.ts';
import subscriptionsPlugin from '../plugins/subscriptions.ts';
import demoRoutes from '../plugins/demo.ts';
import { errorHandler } from '../plugins/errors.ts';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
  }
}

export interface BuildOptions {
  /** A pino logger configuration or false; defaults to JSON lines at config.logLevel. */
  logger?: FastifyServerOptions['logger'];
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logger ?? { level: config.logLevel },
    // Fastify's own two lines per request are replaced by the one line of the onResponse hook.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    // No limit on how long a plugin may take to start: the database's migrates the schema, which on
    // a large store rebuilds indexes for minutes (it logs each migration as it starts).
    pluginTimeout: 0,
    trustProxy: false,
    routerOptions: { maxParamLength: 200, ignoreTrailingSlash: true },
    // Errors Fastify answers before routing (a too-long URL, broken percent-encoding) get an
    // OperationOutcome like every other error.
    frameworkErrors: (err, req, reply) => errorHandler(err, req, reply),
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
  });
  app.register(
    fp(
      async (a) => {
        a.decorate('config', config);
      },
      { name: 'config' },
    ),
  );
  // One log line per request, with no headers (so no Authorization or token ever reaches a log).
  app.addHook('onResponse', async (req, reply) => {
    req.log.info(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 },
      'request',
    );
  });
  app.addHook('onSend', async (req, reply) => {
    reply.header('X-Request-Id', req.id);
  });
  app.setErrorHandler(errorHandler);
  app.register(dbPlugin);
  app.register(outboundPlugin);
  // Before the routes, so that its hook answers their preflights (SMART apps on other origins).
  app.register(corsPlugin);
  app.register(corePlugin);
  app.register(jobsPlugin);
  app.register(health);
  app.register(authPlugin);
  app.register(directoryPlugin);
  app.register(smartRoutes);
  app.register(userRoutes);
  app.register(adminRoutes, { prefix: '/admin' });
  // Before the sandboxes load their records: every write is matched against the subscriptions.
  app.register(subscriptionsPlugin);
  app.register(syncPlugin);
  app.register(sandboxPlugin);
  app.register(connectRoutes);
  app.register(demoRoutes);
  app.register(fhirRoutes, { prefix: '/fhir/r4' });
  app.register(fhirRoutes, { prefix: '/r4' });
  return app;
}
