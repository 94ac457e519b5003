// panva's oidc-provider on loopback, for fastapi-authkit's real-provider tests.
//
//   node provider.mjs CONFIG.json
//
// CONFIG (written by tests/support/oidc_server.py): port, issuer, keys (private JWKs; the first of
// each algorithm signs), clients, api (the resource indicator), audience (the aud of access
// tokens for it), apiByDefault (false: a resource only when the client names one),
// accessTokenAlg, accessTtl (seconds), clockOffset (seconds this provider's clock runs ahead),
// stateFile (grants and tokens survive a restart, as in production), and logFile (one JSON
// line per token endpoint answer, so tests can see which refresh token was presented and
// what the provider decided).
//
// Interactions are minimal: GET /interaction/:uid shows a login form, POST
// /interaction/:uid/login with login=<account> signs that account in, and consent is given
// automatically for whatever the client asked. Refresh tokens follow oidc-provider's
// default policy (issued only for a consented offline_access, OIDC Core §11), as a
// production deployment's would.
import fs from 'node:fs';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

// The provider's clock: real time plus an offset, which tests move (POST /__test/clock?offset=S)
// together with the app's injected clock, so "time passes" for both without waiting.
let clockOffset = config.clockOffset || 0;
const realNow = Date.now;
Date.now = () => realNow() + clockOffset * 1000;

const epoch = () => Math.floor(Date.now() / 1000);

// A file-backed adapter: the whole store in one JSON file, rewritten on every change.
let db = {};
try {
  db = JSON.parse(fs.readFileSync(config.stateFile, 'utf8'));
} catch {
  db = {};
}
function save() {
  const tmp = `${config.stateFile}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(db));
  fs.renameSync(tmp, config.stateFile);
}

class FileAdapter {
  constructor(name) {
    this.name = name;
  }

  key(id) {
    return `${this.name}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    db[this.key(id)] = { payload, expiresAt: expiresIn ? epoch() + expiresIn : null };
    save();
  }

  async find(id) {
    const entry = db[this.key(id)];
    if (!entry || (entry.expiresAt && entry.expiresAt < epoch())) return undefined;
    return entry.payload;
  }

  async findByUid(uid) {
    for (const [key, entry] of Object.entries(db)) {
      if (key.startsWith(`${this.name}:`) && entry.payload.uid === uid) return entry.payload;
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [key, entry] of Object.entries(db)) {
      if (key.startsWith(`${this.name}:`) && entry.payload.userCode === userCode) return entry.payload;
    }
    return undefined;
  }

  async consume(id) {
    const entry = db[this.key(id)];
    if (entry) {
      entry.payload.consumed = epoch();
      save();
    }
  }

  async destroy(id) {
    delete db[this.key(id)];
    save();
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of Object.entries(db)) {
      if (entry.payload.grantId === grantId) delete db[key];
    }
    save();
  }
}

const configuration = {
  adapter: FileAdapter,
  clients: config.clients,
  jwks: { keys: config.keys },
  cookies: { keys: ['fastapi-authkit-test-provider-cookie-key'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: id.charAt(0).toUpperCase() + id.slice(1), email: `${id}@example.test` };
      },
    };
  },
  claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'api'],
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // apiByDefault=false keeps oidc-provider's default: an access token for the API only
      // when the client names it (else one for the userinfo endpoint, and an ID token
      // holding only sub, the scopes' claims being at userinfo: OIDC Core §5.4).
      defaultResource: (ctx, client, oneOf) => (config.apiByDefault === false ? oneOf : config.api),
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, resourceIndicator) {
        if (resourceIndicator !== config.api) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: config.audience,
          accessTokenTTL: config.accessTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: config.accessTokenAlg } },
        };
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  rotateRefreshToken: true,
  pkce: { required: () => true },
  ttl: {
    AccessToken: config.accessTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 86400,
    RefreshToken: 86400,
  },
};

const provider = new Provider(config.issuer, configuration);

function log(entry) {
  fs.appendFileSync(config.logFile, `${JSON.stringify({ at: Date.now() / 1000, ...entry })}\n`);
}
provider.on('grant.success', (ctx) => {
  log({ event: 'grant.success', grant_type: ctx.oidc.params.grant_type, refresh_token: ctx.oidc.params.refresh_token });
});
provider.on('grant.error', (ctx, error) => {
  log({
    event: 'grant.error',
    grant_type: ctx.oidc.params?.grant_type,
    refresh_token: ctx.oidc.params?.refresh_token,
    error: error.error,
    error_description: error.error_description,
  });
});
provider.on('server_error', (ctx, error) => {
  log({ event: 'server_error', message: String(error && error.stack) });
});

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function interaction(req, res, isLogin) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    if (!isLogin) {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<form method="post" action="/interaction/${details.uid}/login"><input name="login"><button>Sign in</button></form>`);
      return;
    }
    const login = new URLSearchParams(await readBody(req)).get('login');
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  // Consent: grant whatever was asked.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const handle = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/__test/clock?')) {
    clockOffset = Number(new URL(req.url, config.issuer).searchParams.get('offset'));
    res.statusCode = 204;
    res.end();
    return;
  }
  const match = /^\/interaction\/([^/?]+)(\/login)?/.exec(req.url);
  if (match) {
    interaction(req, res, Boolean(match[2])).catch((error) => {
      res.statusCode = 500;
      res.end(String(error));
    });
    return;
  }
  handle(req, res);
});
server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening on ${config.issuer}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
