/* pool.h — the warm pool: sandboxes of the default shape (template `host`,
 * tier `container`) created and started ahead of demand, so POST
 * /v1/sandboxes only has to claim one (cb_container_claim: the name as
 * hostname, limits) instead of building it.
 *
 * Pool members are tier sandboxes made under the id their sandbox will
 * have ("sb_<hex>", hostname the same), marked as members by a file
 * CB_POOL_MARKER in their directory. They have no store record and are not
 * in the daemon's registry, so no API call lists, counts (tenant quotas)
 * or reaches them. A create that takes one (cb_pool_take, at request time)
 * gives the new sandbox the member's id, so the claim renames nothing
 * (directory, cgroups and uid-slot owner already carry it; the hostname is
 * rewritten only for a named sandbox) and only removes the marker; the
 * store record's insert then makes it a sandbox like any other. Members
 * of older daemons ("pool_<hex>") are claimed by renaming, as before.
 *
 * Life cycle: members are made on the worker pool, two at a time (refill
 * 20 ms after a claim, and after a member dies: the loop watches each
 * member's init pidfd). A graceful daemon stop destroys the members; after
 * a crash, cb_pool_open adopts the live ones (up to the pool size) and
 * destroys the rest, leftovers of half-made members included, and reaps
 * the directories of sandboxes that have no record (see cb_pool_reap).
 *
 * Threading: every function runs on the loop thread. */
#ifndef CB_DAEMON_POOL_H
#define CB_DAEMON_POOL_H

#include <stdbool.h>

#include "daemon.h"

#define CB_POOL_TEMPLATE "host"
#define CB_POOL_TIER "container"
#define CB_POOL_PREFIX "pool_" /* members made by older daemons */
/* In a member's sandbox directory (root's, outside the sandbox's root):
 * "this directory without a store record is a warm-pool member", not the
 * remains of a deleted sandbox (which are torn down, never reused). The
 * claim removes it before the record is inserted. */
#define CB_POOL_MARKER ".pool-member"

struct cb_pool;

/* Recover leftovers of a previous run, then start filling up to size
 * members (size 0: no pool; leftovers are still destroyed). Never fails: a
 * pool that cannot be filled only means cold creates. Free with
 * cb_pool_close(). */
struct cb_pool *cb_pool_open(struct cb_daemon *d, unsigned size);

/* A ready member for a sandbox of this template and tier, or NULL (empty
 * pool or another shape; where disk limits are fixed-size images, a
 * disk_bytes other than the pool's is another shape too). The caller owns the returned handle: it claims it
 * (cb_container_claim) or destroys and releases it. Schedules a refill.
 *
 * Network namespaces (netns.h, cb_netns_retire): a member runs in a new
 * one, which anyone may claim, or in one that sandboxes of a group
 * (tenant) used before, which only net_group's creates claim. Refills are
 * made for the group of the last take (so a tenant creating and deleting
 * in a loop gets its namespaces back through the pool), except that one
 * member at least stays in a new namespace for a create of any group. A
 * take prefers its group's members, then a new-namespace one; when only
 * other groups' members are left, the oldest is destroyed (its namespace
 * back to its group) to make room. */
struct cb_sandbox *cb_pool_take(struct cb_pool *p, const char *template_name,
                                const char *tier, const struct cb_limits *limits,
                                const char *net_group);

/* A member taken (cb_pool_take) but not claimed after all (the create
 * failed before it started): back into the pool, else (dead, pool full or
 * closing) torn down in the background (cb_pool_reap). */
void cb_pool_give_back(struct cb_pool *p, struct cb_sandbox *h);

/* Remove the member marker of sandbox <id> (claim, worker thread): 0, or
 * -errno (the claim fails then: a marked directory is a pool member). */
int cb_pool_unmark(const char *state_dir, const char *id);

/* Members ready now / target size. */
unsigned cb_pool_ready(const struct cb_pool *p);
unsigned cb_pool_size(const struct cb_pool *p);

/* Background teardown ("reaping") of what a deleted sandbox leaves behind.
 *
 * DELETE answers once the sandbox is gone for its tenant: record removed,
 * name free, every process killed and reaped (tier stop). What remains —
 * cgroup directories, disk image and files, the uid slot — is removed here,
 * on the worker pool, after the answer, a few at a time so that a burst of
 * deletes does not take every core from tenants' work (creates, execs).
 *
 * h: the stopped sandbox's handle (ownership moves to the pool: it is
 * destroyed and released), or NULL to find the remains of sandbox <id> by
 * adopting it from its directory, or failing that, piece by piece
 * (cb_container_reclaim). Crash safety: the store record is gone before the
 * teardown starts, so a daemon killed meanwhile finds a sandbox directory
 * with no record at its next start; cb_pool_open() reaps every such
 * directory. A graceful stop (cb_pool_close) finishes the teardowns first.
 * p must not be NULL (without a pool, destroy in place). */
void cb_pool_reap(struct cb_pool *p, struct cb_sandbox *h, const char *id);
/* Teardowns queued or running: 0 once every deleted sandbox's host
 * resources are freed (for /v1/info and metrics). */
unsigned cb_pool_reaping(const struct cb_pool *p);
/* Teardowns queued beyond which a delete no longer keeps the dead
 * sandbox's file systems mounted for its teardown (the tier's kill): its
 * init's exit unmounts them, as a stop does. A held teardown keeps the
 * overlay, disk image and loop device (~1 MiB of kernel memory); a delete
 * storm must not queue those without bound, and must not wait for them
 * either (1,500 deletes by 8 clients: answered in 4-6 s, torn down in
 * another 65 s, with or without the kill). */
#define CB_POOL_REAP_BACKLOG 64

/* Daemon stop: wait for refills and teardowns in flight (running the loop),
 * destroy every member, free the pool. NULL is fine. */
void cb_pool_close(struct cb_pool *p);

#endif
