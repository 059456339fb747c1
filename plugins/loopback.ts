/**
 * Surfaces meant for the person at this machine (the demo app, the sandbox health systems with
 * their published test passwords and fault switches) answer requests from this machine only,
 * unless a setting serves them to everyone (DEMO=on, SANDBOXES_PUBLIC=true).
 * "From this machine": the connection's peer is a loopback address (the socket's, never a
 * header's word, whatever trustProxy says) and no proxy forwarded the request — behind a reverse
 * proxy on the same machine every request would come from loopback, so a forwarded one counts as
 * from elsewhere. The sync and connect flow reach the sandboxes from this process itself, over
 * loopback to BASE_URL, without such headers.
 */
import ipaddr from 'ipaddr.js';
import type { FastifyRequest } from 'fastify';

const FORWARDING = ['forwarded', 'x-forwarded-for', 'x-real-ip'];

/** Whether the request comes straight from this machine. */
export function fromThisMachine(req: FastifyRequest): boolean {
  if (FORWARDING.some((h) => req.headers[h] !== undefined)) return false;
  const peer = req.socket?.remoteAddress;
  if (!peer || !ipaddr.isValid(peer)) return false;
  // process(): an IPv4-mapped IPv6 address (::ffff:127.0.0.1) is read as the IPv4 one.
  return ipaddr.process(peer).range() === 'loopback';
}

/** What a refused request is told: what answers on this machine only, and the setting that opens it. */
export const sandboxesLocalOnly =
  "The sandbox health systems answer requests from this machine only (their test patients' passwords are published). To serve them to other machines, set SANDBOXES_PUBLIC=true; never on a server with real users.";
export const demoLocalOnly =
  "The demo app answers requests from this machine only (DEMO=loopback). Open it on the server's machine, or set DEMO=on to serve it to everyone.";
