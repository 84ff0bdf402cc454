// A real OpenID Provider for the tests: node oidc-provider (certified), over HTTPS on
// loopback, with its development login form (any user name, any password).
//
//   node provider.mjs '{"port":1234,"cert":"c.pem","key":"k.pem","clients":[...]}'
//
// Accounts are made up from the login name; a few names get special claims so the
// gateway's refusals can be tested against a real provider.
import https from 'node:https';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const cfg = JSON.parse(process.argv[2]);
const issuer = `https://127.0.0.1:${cfg.port}`;

function claimsOf(id) {
  const base = { sub: id, email: `${id}@example.com`, email_verified: true,
    preferred_username: id, groups: ['dev', 'staff'],
    realm_access: { roles: ['reader', 'writer'] } };
  if (id === 'unverified') base.email_verified = false;
  if (id === 'outsider') base.email = 'outsider@elsewhere.test';
  if (id === 'comma') base.preferred_username = 'a,b';
  return base;
}

const provider = new Provider(issuer, {
  clients: cfg.clients,
  pkce: { required: () => true, methods: ['S256'] },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'groups', 'realm_access'],
  },
  // Claims in the ID token itself, as Google, Keycloak and Entra ID put them there.
  conformIdTokenClaims: false,
  cookies: { keys: ['portcullis-test-cookie-key-0123456789'] },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => claimsOf(id) }),
  // Tests may widen what the provider signs ID tokens with (to see the gateway refuse it).
  ...(cfg.idTokenAlgs ? { enabledJWA: { idTokenSigningAlgValues: cfg.idTokenAlgs } } : {}),
  ttl: { AccessToken: cfg.access_ttl || 3600, IdToken: 3600, Interaction: 600, Session: 3600, Grant: 3600,
    RefreshToken: 3600 },
  // Every refresh token is single-use: the strictest provider behaviour, under which two
  // concurrent renewals of one session would end it.
  rotateRefreshToken: () => true,
});
// Count calls per endpoint, for the tests (GET /_counts).
const counts = {};
provider.use(async (ctx, next) => {
  if (ctx.path === '/_counts') { ctx.body = counts; return; }
  counts[ctx.path] = (counts[ctx.path] || 0) + 1;
  await next();
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

https.createServer({ cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key) }, provider.callback())
  .listen(cfg.port, '127.0.0.1', () => console.log(`ready ${issuer}`));
