/* vault/errors.c — vault's error range (-31000..-31099, see vault.h) and its
 * names. Store codes pass through vault functions and are named by
 * st_strerror. */
#include "vault/vault.h"

const char *vault_strerror(int err) {
  if (err >= 0) return "ok";
  switch (err) {
  case VAULT_EINVALID: return "invalid connector definition";
  case VAULT_ENOGRANT: return "not connected: the user has no grant for this connector";
  case VAULT_EEXPIRED: return "the user's grant for this connector needs a refresh";
  case VAULT_EMASKED: return "a masked URL query value has no stored value to keep";
  case -31010: return "connect state missing, expired or forged";
  case -31020: return "the upstream's authorization metadata is malformed";
  case -31021: return "the upstream's authorization metadata is unusable";
  default: break;
  }
  if (err <= VAULT_ERR_FIRST && err >= VAULT_ERR_LAST) return "unknown vault error";
  return st_strerror(err);
}
