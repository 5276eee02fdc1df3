// oidc-provider's storage in Redis, the way its documentation's example adapter
// (example/adapters/redis.js) keeps it: each model under "<Model>:<id>", JSON payloads, hashes
// for single-use models (codes, refresh tokens) so that "consumed" is one HSET, and a list per
// grant so that revoking a grant deletes all of its tokens. The production counterpart of the
// in-memory storage, which oidc-provider documents as unfit for production.
import Redis from 'ioredis';

const grantable = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken']);
const consumable = new Set(['AuthorizationCode', 'RefreshToken']);

let client;

const grantKeyFor = (id) => `grant:${id}`;
const uidKeyFor = (uid) => `uid:${uid}`;

export function connect(url) {
  client = new Redis(url);
  return client;
}

export class RedisAdapter {
  constructor(name) {
    this.name = name;
  }

  key(id) {
    return `${this.name}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const multi = client.multi();
    if (consumable.has(this.name)) {
      multi.hset(key, { payload: JSON.stringify(payload) });
    } else {
      multi.set(key, JSON.stringify(payload));
    }
    if (expiresIn) multi.expire(key, expiresIn);
    if (grantable.has(this.name) && payload.grantId) {
      const grantKey = grantKeyFor(payload.grantId);
      multi.rpush(grantKey, key);
      const ttl = await client.ttl(grantKey);
      if (expiresIn > ttl) multi.expire(grantKey, expiresIn);
    }
    if (payload.uid) {
      multi.set(uidKeyFor(payload.uid), id);
      if (expiresIn) multi.expire(uidKeyFor(payload.uid), expiresIn);
    }
    await multi.exec();
  }

  async find(id) {
    if (consumable.has(this.name)) {
      const data = await client.hgetall(this.key(id));
      if (!data || !data.payload) return undefined;
      const { payload, ...rest } = data;
      return { ...rest, ...JSON.parse(payload) };
    }
    const data = await client.get(this.key(id));
    return data ? JSON.parse(data) : undefined;
  }

  async findByUid(uid) {
    const id = await client.get(uidKeyFor(uid));
    return id ? this.find(id) : undefined;
  }

  async findByUserCode() {
    return undefined; // no device flow here
  }

  async consume(id) {
    await client.hset(this.key(id), 'consumed', Math.floor(Date.now() / 1000));
  }

  async destroy(id) {
    await client.del(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const grantKey = grantKeyFor(grantId);
    const tokens = await client.lrange(grantKey, 0, -1);
    const multi = client.multi();
    tokens.forEach((token) => multi.del(token));
    multi.del(grantKey);
    await multi.exec();
  }
}
