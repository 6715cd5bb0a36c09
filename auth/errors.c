/* auth/errors.c — auth's error range (-30600..-30699, see auth.h) and its
 * names. Store codes pass through auth functions and are named by
 * st_strerror; the JOSE sub-range by auth_jose_strerror (auth/jose.h). */
#include "auth/auth.h"
#include "auth/gtr.h"
#include "auth/jose.h"
#include "auth/login.h"
#include "auth/oauth_client.h"
#include "auth/oauth_params.h"
#include "auth/oauth_token.h"

const char *auth_strerror(int err) {
  if (err >= 0) return "ok";
  switch (err) {
  case AUTH_EINACTIVE: return "the user is not active";
  case AUTH_EINVALID: return "invalid settings";
  case AUTH_ENOSECRET: return "no client secret is stored";
  case AUTH_EFULL: return "the user holds as many tokens as allowed";
  case AUTH_ELOGIN: return "the sign-in could not be completed";
  case AUTH_ENOTLINKED: return "no provisioned user matches this sign-in";
  case AUTH_EUNVERIFIED: return "the e-mail address is not verified by the identity provider";
  case AUTH_EAMBIGUOUS: return "several users match this sign-in";
  case AUTH_EBOUND: return "this sign-in is bound to another user";
  case AUTH_ECLAIM: return "the ID token lacks the subject or link claim";
  case AUTH_EREPLAY: return "this sign-in was completed already";
  case AUTH_ECUT: return "the sign-in began before the user's access was last cut";
  case AUTH_ESTALE: return "this sign-in was bound by e-mail to a user whose externalId now names another subject";
  case AUTH_EOAUTH_METADATA: return "client metadata refused";
  case AUTH_EOAUTH_REDIRECT: return "a redirect URI refused";
  case AUTH_EOAUTH_CLIENT_GONE: return "the OAuth client was deleted";
  case AUTH_EOAUTH_GRANT: return "the grant is invalid, expired, revoked or for another client";
  case AUTH_EOAUTH_CLIENT_ID: return "the request's client_id is missing or malformed";
  case AUTH_EOAUTH_REQUEST: return "the OAuth request's parameters were refused";
  case AUTH_EOAUTH_CONSENT_GONE: return "the person's consent to this client was withdrawn meanwhile";
  case AUTH_EOAUTH_SIGNIN: return "the sign-in behind the grant is older than the tenant's maximum sign-in age";
  default: break;
  }
  if (err <= AUTH_JOSE_ERR_FIRST && err >= AUTH_JOSE_ERR_LAST) return auth_jose_strerror(err);
  if (err <= AUTH_EGTR_ERR_FIRST && err >= AUTH_EGTR_ERR_LAST && auth_gtr_strerror(err)) return auth_gtr_strerror(err);
  if (err <= AUTH_ERR_FIRST && err >= AUTH_ERR_LAST) return "unknown auth error";
  return st_strerror(err);
}
