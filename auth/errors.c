/* auth/errors.c — auth's error range (-30600..-30699, see auth.h) and its
 * names. Store codes pass through auth functions and are named by
 * st_strerror; the JOSE sub-range by auth_jose_strerror (auth/jose.h). */
#include "auth/auth.h"
#include "auth/jose.h"

const char *auth_strerror(int err) {
  if (err >= 0) return "ok";
  switch (err) {
  case AUTH_EINACTIVE: return "the user is not active";
  case AUTH_EINVALID: return "invalid settings";
  case AUTH_ENOSECRET: return "no client secret is stored";
  default: break;
  }
  if (err <= AUTH_JOSE_ERR_FIRST && err >= AUTH_JOSE_ERR_LAST) return auth_jose_strerror(err);
  if (err <= AUTH_ERR_FIRST && err >= AUTH_ERR_LAST) return "unknown auth error";
  return st_strerror(err);
}
