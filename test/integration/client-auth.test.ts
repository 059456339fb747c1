/**
 * Client authentication at the token endpoint, for apps bound to one method (as the sandbox
 * health systems require of their clients): client_secret_basic, client_secret_post and
 * private_key_jwt (RFC 7523: signature, iss/sub, aud, expiry, single-use jti); and an app's own
 * access-token lifetime.
 */
import t from 'tap';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { LightMyRequestResponse } from 'fastify';
import { buildTestApp } from '../helper.ts';

const app = await buildTestApp(t, { fhirAuth: 'required' });
const TOKEN_URL = `${app.config.baseUrl}/oauth2/token`;

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
async function token(fields: Record<string, string>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: '/oauth2/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    payload: form(fields),
  });
}
const basic = (id: string, secret: string) => ({
  authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`,
});

t.test('client_secret_basic: HTTP Basic only', async (t) => {
  const { app: client, clientSecret } = await app.auth.createApp({
    name: 'basic only',
    tokenAuthMethod: 'client_secret_basic',
    accessTokenSeconds: 600,
  });
  const post = await token({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: clientSecret });
  t.equal(post.statusCode, 401);
  t.match(post.json(), { error: 'invalid_client', error_description: /HTTP Basic/ });
  const ok = await token({ grant_type: 'client_credentials' }, basic(client.clientId, clientSecret));
  t.equal(ok.statusCode, 200);
  t.equal(ok.json().expires_in, 600, "the app's own access-token lifetime");
  const { rows } = await app.pg.query(
    "SELECT extract(epoch FROM expires_at - now())::int AS s FROM trb_token WHERE app_id = $1 AND kind = 'access'",
    [client.id],
  );
  t.ok(rows[0].s > 590 && rows[0].s <= 600, 'stored with that lifetime');
});

t.test('client_secret_post: the client_secret parameter only', async (t) => {
  const { app: client, clientSecret } = await app.auth.createApp({ name: 'post only', tokenAuthMethod: 'client_secret_post' });
  t.equal((await token({ grant_type: 'client_credentials' }, basic(client.clientId, clientSecret))).statusCode, 401);
  const ok = await token({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: clientSecret });
  t.equal(ok.statusCode, 200);
  t.equal(ok.json().expires_in, 7200, 'the default lifetime');
});

t.test('an app bound to no method takes its secret either way', async (t) => {
  const { app: client, clientSecret } = await app.auth.createApp({ name: 'either' });
  t.equal((await token({ grant_type: 'client_credentials' }, basic(client.clientId, clientSecret))).statusCode, 200);
  t.equal((await token({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: clientSecret })).statusCode, 200);
});

t.test('private_key_jwt: a signed assertion, once, for this server', async (t) => {
  const { publicKey, privateKey } = await generateKeyPair('RS384');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS384', use: 'sig' };
  const { app: client, clientSecret } = await app.auth.createApp({ name: 'jwt', tokenAuthMethod: 'private_key_jwt', jwks: { keys: [jwk] } });
  t.equal(clientSecret, '', 'no secret to show');
  const assertion = (claims: { aud?: string; exp?: number; iss?: string; jti?: string | null } = {}, key = privateKey) => {
    const jwt = new SignJWT({})
      .setProtectedHeader({ alg: 'RS384', kid: 'k1' })
      .setIssuer(claims.iss ?? client.clientId)
      .setSubject(client.clientId)
      .setAudience(claims.aud ?? TOKEN_URL)
      .setIssuedAt()
      .setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 300);
    if (claims.jti !== null) jwt.setJti(claims.jti ?? crypto.randomUUID());
    return jwt.sign(key);
  };
  const withAssertion = async (a: string) =>
    token({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: a });

  const good = await assertion();
  const ok = await withAssertion(good);
  t.equal(ok.statusCode, 200, ok.body);
  t.ok(ok.json().access_token);
  t.equal((await withAssertion(good)).statusCode, 401, 'the same assertion twice: refused (its jti is spent)');
  t.equal((await withAssertion(await assertion({ aud: 'https://elsewhere.example/token' }))).statusCode, 401, 'for another server');
  t.equal((await withAssertion(await assertion({ exp: Math.floor(Date.now() / 1000) - 60 }))).statusCode, 401, 'expired');
  t.equal((await withAssertion(await assertion({ jti: null }))).statusCode, 401, 'without a jti');
  t.equal((await withAssertion(await assertion({ iss: 'someone-else' }))).statusCode, 401, 'another issuer');
  const other = await generateKeyPair('RS384');
  t.equal((await withAssertion(await assertion({}, other.privateKey))).statusCode, 401, 'signed by a key the app did not register');
  t.equal((await withAssertion('not.a.jwt')).statusCode, 401);
  const wrongType = await token({ grant_type: 'client_credentials', client_assertion_type: 'urn:other', client_assertion: await assertion() });
  t.match(wrongType.json(), { error: 'invalid_client' });
  t.equal(
    (await token({ grant_type: 'client_credentials', client_id: client.clientId, client_secret: 'x'.repeat(43) })).statusCode,
    401,
    'a secret does not do',
  );

  // Revocation takes the same client authentication.
  const tokenToRevoke = ok.json().access_token as string;
  const revoked = await app.inject({
    method: 'POST',
    url: '/oauth2/revoke',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: form({
      token: tokenToRevoke,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await assertion({ aud: `${app.config.baseUrl}/oauth2/revoke` }),
    }),
  });
  t.equal(revoked.statusCode, 200);
  t.equal(await app.auth.accessFor(tokenToRevoke), undefined, 'revoked');
});

t.test('the SMART configuration advertises the methods', async (t) => {
  const conf = (await app.inject({ method: 'GET', url: '/fhir/r4/.well-known/smart-configuration' })).json();
  t.same(conf.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']);
  t.ok(conf.capabilities.includes('client-confidential-asymmetric'));
});
