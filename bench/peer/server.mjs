// The peer for python -m bench.run: node oidc-provider on 127.0.0.1, one confidential client,
// ES256 signing, refresh tokens rotated on every use (as ours are). Storage: in memory, or in
// Redis when PEER_REDIS_URL is set (redis_adapter.mjs).
// Usage: node server.mjs PORT GRANTS. Prints one JSON line (client, one refresh and one access
// token per grant) once it listens; runs until terminated.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';
import { connect, RedisAdapter } from './redis_adapter.mjs';

const port = Number(process.argv[2]);
const grants = Number(process.argv[3] || 8);
const issuer = `http://127.0.0.1:${port}`;
const scope = 'openid profile email phone offline_access';
const clientId = 'bench';
const clientSecret = 'bench-peer-client-secret-0123456789abcdef';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

const storage = {};
if (process.env.PEER_REDIS_URL) {
  connect(process.env.PEER_REDIS_URL);
  storage.adapter = RedisAdapter;
}

const provider = new Provider(issuer, {
  ...storage,
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: ['http://127.0.0.1:9/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'phone'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    phone: ['phone_number', 'phone_number_verified'],
  },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub,
      name: `Bench ${sub}`,
      preferred_username: sub,
      email: `${sub}@example.com`,
      email_verified: true,
      phone_number: '+4915110000000',
      phone_number_verified: true,
    }),
  }),
  features: { devInteractions: { enabled: false } },
  rotateRefreshToken: true,
  ttl: { AccessToken: 300, IdToken: 300, RefreshToken: 86400, Grant: 86400 },
});

const client = await provider.Client.find(clientId);
const tokens = [];
for (let i = 0; i < grants; i += 1) {
  const accountId = `user${i}`;
  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const common = {
    client, accountId, grantId, scope, gty: 'authorization_code',
    authTime: Math.floor(Date.now() / 1000), amr: ['pwd', 'sms', 'mfa'],
  };
  const refresh = await new provider.RefreshToken(common).save();
  const access = await new provider.AccessToken({ ...common, scope: 'openid profile email phone' }).save();
  tokens.push({ refresh_token: refresh, access_token: access });
}

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({
    issuer, client_id: clientId, client_secret: clientSecret, tokens,
  })}\n`);
});
