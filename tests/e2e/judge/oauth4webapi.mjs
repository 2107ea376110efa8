// A strict third-party OAuth 2.0 client as judge: oauth4webapi (npm,
// panva/oauth4webapi) discovers the broker's metadata from an issuer the way
// RFC 8414 §3.1 builds the location (the well-known string inserted before
// the issuer's path), checks RFC 8414 §3.3 (the document's issuer is that
// issuer), and validates authorization responses as RFC 9207 says when the
// metadata advertises `authorization_response_iss_parameter_supported`.
//
// stdin: {"issuer": "<issuer>", "client_id": "<id>",
//         "responses": [{"url": "<redirect the broker sent>", "state": "<state>"|null}]}
// stdout: one JSON object: {"metadata": {...}} or {"discovery_error": "..."},
//   and "responses": per response {"ok": true, "params": {...}} or
//   {"ok": false, "kind": "<error class>", "error": "<OAuth error>"|null, "message": "..."}.
import * as oauth from 'oauth4webapi'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const issuer = new URL(input.issuer)
const client = { client_id: input.client_id }
const options = { algorithm: 'oauth2', [oauth.allowInsecureRequests]: true }

let as
try {
  as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, options))
} catch (e) {
  console.log(JSON.stringify({ discovery_error: `${e.name}: ${e.message}` }))
  process.exit(0)
}

const responses = input.responses.map(({ url, state }) => {
  try {
    const params = oauth.validateAuthResponse(as, client, new URL(url), state ?? oauth.expectNoState)
    return { ok: true, params: Object.fromEntries(params) }
  } catch (e) {
    const error = e instanceof oauth.AuthorizationResponseError ? e.error : null
    return { ok: false, kind: e.name, error, message: e.message }
  }
})
console.log(JSON.stringify({ metadata: as, responses }))
