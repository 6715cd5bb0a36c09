/* store/store_testing.h — hooks for tests/unit only; production code never
 * calls these. Kept out of store.h so the public API stays clean and out of
 * store_int.h so tests need not include lmdb.h. */
#ifndef MCPGATE_STORE_STORE_TESTING_H
#define MCPGATE_STORE_STORE_TESTING_H
#include <stdint.h>
#include "store/store.h"

/* st_open, but migrations stop at target_version (0: run none), so tests can
 * build a store at an old schema and reopen it with st_open. */
int st__open_at(st_store **out, const st_options *opts, uint32_t target_version);
/* Make the next n batch commits fail as if LMDB returned MDB_MAP_FULL at
 * commit (the batch is aborted, then the re-run path is taken). */
void st__test_fail_commits(st_store *st, int n);
/* Batches of several jobs that ran again with a child txn per job because
 * one of them failed in the batch's own txn (writer.c). */
int st__test_batch_fallbacks(st_store *st);
/* Gives user `id` of `tenant` the externalId ext in a write txn — record
 * and index, none of scim/'s rules asked: a store written before
 * externalIds were kept unique among a tenant's users, where two may
 * share one. 0 or ST_E*. */
int st__test_dir_user_set_external(st_txn *txn, const char *tenant, const char *id, const char *ext);

#endif
