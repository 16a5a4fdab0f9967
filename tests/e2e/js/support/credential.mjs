// A TokenCredential (the interface @azure/core-auth defines: getToken(scopes, options) →
// { token, expiresOnTimestamp }) for a keyfoundry service principal: the OAuth2
// client_credentials grant at https://127.0.0.1:PORT/{tenant}/oauth2/v2.0/token, with the
// scope and tenant the SDK asks for (it takes both from the vault's 401 challenge).
//
// Written here rather than taken from @azure/identity to keep the test's dependencies to the
// one SDK package under test; the Python suite covers azure-identity against keyfoundryd.
// `calls` records what the SDK asked for, so the tests can check the challenge flow.
export class ServicePrincipalCredential {
  constructor({ authorityHost, tenantId, clientId, clientSecret }) {
    this.authorityHost = authorityHost;
    this.tenantId = tenantId;
    this.clientId = clientId;
    this.clientSecret = clientSecret;
    this.calls = [];
  }

  async getToken(scopes, options = {}) {
    const scopeList = Array.isArray(scopes) ? scopes : [scopes];
    const tenant = options.tenantId || this.tenantId;
    this.calls.push({ scopes: scopeList, tenantId: options.tenantId });
    const response = await fetch(`${this.authorityHost}/${tenant}/oauth2/v2.0/token`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "client_credentials",
        client_id: this.clientId,
        client_secret: this.clientSecret,
        scope: scopeList.join(" "),
      }).toString(),
      signal: options.abortSignal,
    });
    const body = await response.json().catch(() => ({}));
    if (response.status !== 200 || !body.access_token) {
      throw new Error(
        `token endpoint answered ${response.status}: ${body.error ?? ""} ${body.error_description ?? ""}`,
      );
    }
    return {
      token: body.access_token,
      expiresOnTimestamp: Date.now() + Number(body.expires_in) * 1000,
      tokenType: "Bearer",
    };
  }
}
