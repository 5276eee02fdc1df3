"""The acceptance flow with node's openid-client v6, a certified relying-party library: sign-in
through the hosted login, ID token checks (iss parameter, nonce, PKCE), userinfo, refresh
rotation and revocation. Skipped where node or npm is missing."""

import json
import shutil
import subprocess

import pytest

RP_SCRIPT = r"""
import * as client from 'openid-client';
import * as readline from 'node:readline';

const [issuer, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

const config = await client.discovery(new URL(issuer), clientId, clientSecret, undefined, {
  execute: [client.allowInsecureRequests],
});
const verifier = client.randomPKCECodeVerifier();
const nonce = client.randomNonce();
const state = client.randomState();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile email phone offline_access',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  nonce,
  state,
});
console.log(JSON.stringify({ url: url.href }));

const callback = new URL(await nextLine());
const tokens = await client.authorizationCodeGrant(config, callback, {
  pkceCodeVerifier: verifier,
  expectedNonce: nonce,
  expectedState: state,
  idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
await client.tokenRevocation(config, refreshed.refresh_token);
let afterRevocation = 'refresh worked';
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
} catch (error) {
  afterRevocation = error.error || error.code || String(error);
}
console.log(JSON.stringify({
  claims,
  userinfo,
  rotated: refreshed.refresh_token !== tokens.refresh_token,
  afterRevocation,
}));
lines.close();
"""


@pytest.fixture(scope="session")
def openid_client(tmp_path_factory):
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for openid-client")
    directory = tmp_path_factory.getbasetemp().parent / "openid-client-v6"
    directory.mkdir(exist_ok=True)
    if not (directory / "node_modules" / "openid-client").is_dir():
        (directory / "package.json").write_text('{"private": true, "type": "module"}')
        installed = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "openid-client@6"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if installed.returncode != 0:
            pytest.skip(f"npm could not install openid-client: {installed.stderr[-300:]}")
    script = directory / "rp.mjs"
    script.write_text(RP_SCRIPT)
    return script


def test_openid_client_v6_signs_in_refreshes_and_revokes(idp, browser, rp, openid_client):
    process = subprocess.Popen(
        ["node", str(openid_client), idp.issuer, rp.client_id, rp.client_secret, rp.redirect_uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = json.loads(process.stdout.readline())["url"]
        response = browser.visit(url)
        assert response.is_redirect
        process.stdin.write(response.headers["Location"] + "\n")
        process.stdin.flush()
        output, errors = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, errors
    result = json.loads(output.strip().splitlines()[-1])
    assert result["claims"]["amr"] == ["pwd", "sms", "mfa"]
    assert result["claims"]["aud"] == rp.client_id
    assert result["userinfo"]["preferred_username"] == "anna"
    assert result["rotated"] is True
    assert result["afterRevocation"] == "invalid_grant"
