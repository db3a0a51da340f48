/* netns.h — network namespaces made ahead of time for new sandboxes.
 *
 * Why: a new network namespace is most of what cloning a sandbox costs
 * (measured here: clone with user, mount, pid, ipc and uts namespaces
 * 0.11 ms, 0.49 ms with a new network namespace as well: every pernet
 * subsystem of the kernel sets itself up). One thread of ours makes them
 * in advance, so a start takes a ready one instead of paying that.
 *
 * What a spare is: a network namespace with loopback up, made by root in
 * the host's user namespace, so the namespace belongs to the host's user
 * namespace rather than the sandbox's. Root in a sandbox therefore holds
 * no capability over its own network (no interface, route or firewall
 * change, no raw socket); the capabilities a sandbox keeps (caps.c, like
 * Docker's) have no network administration in them anyway, and the two
 * things they did give are set for everyone in the namespace instead:
 * binding ports below 1024 (net.ipv4.ip_unprivileged_port_start = 0) and
 * ping (ICMP datagram sockets, net.ipv4.ping_group_range for every gid).
 * With it comes a sysfs, made by the same thread (sysfs can only be
 * mounted by one who administers the network namespace, which the
 * sandbox's root no longer does): a detached, read-only mount of a
 * read-only superblock owned by the host, which the child moves into
 * place. It is one superblock shared by every sandbox (netns.c,
 * share_sysfs: a superblock per sandbox costs every memory cgroup), mounted
 * from a namespace of its own that is then left, so it lists no network
 * device of the host's or of any sandbox's (briefly, that namespace's own
 * "lo" until the kernel has torn it down); a sandbox's own loopback shows
 * in /proc/net and netlink, where programs look.
 *
 * Namespaces are made from a parent namespace of ours (netns.c,
 * parent_netns) whose net.ipv4.tcp_child_ehash_entries gives each one a
 * TCP connection table of its own instead of the host's global one.
 *
 * When none is ready (a burst of starts), cb_netns_take makes one in the
 * caller's thread: every sandbox of a host gets the same kind of network
 * namespace, whatever the timing. Only where the host refuses to make
 * them (unshare refused, e.g. inside a container without CAP_SYS_ADMIN)
 * does take fail, and callers clone a namespace of the sandbox's own, as
 * before. CB_NETNS_SPARES=N sets how many are kept ready (0: none made
 * ahead, each made at its start).
 *
 * A destroyed sandbox's namespace can also come back, to a later sandbox
 * of the same group only, once the maker has found nothing of the old one
 * left in it (cb_netns_retire below). Thread-safe. */
#ifndef CB_NETNS_H
#define CB_NETNS_H

#define CB_NETNS_SPARES_DEFAULT 4
#define CB_NETNS_GROUP_MAX 64 /* longest group name (cb_netns_retire) */

struct cb_netns_spares;

/* Start the maker thread keeping up to max spares ready (max 0, or
 * CB_NETNS_SPARES=0: no thread; takes make theirs). */
struct cb_netns_spares *cb_netns_open(int max);
/* Stop the maker; spares not taken are released. NULL is fine. */
void cb_netns_close(struct cb_netns_spares *s);

/* Take a namespace a sandbox of `group` used before (cb_netns_retire):
 * returns 1; else a ready spare, else make one now: returns 0. Either way
 * *netns_fd (the namespace) and *sysfs_fd (its detached sysfs mount), both
 * CLOEXEC and the caller's to close; -EAGAIN when this host does not make
 * them (or s is NULL). group NULL: never a used one. */
int cb_netns_take(struct cb_netns_spares *s, const char *group, int *netns_fd, int *sysfs_fd);

/* A destroyed sandbox's network namespace (every process of it dead), for
 * the next sandbox of the same group to take instead of a new one. Why:
 * making a namespace and the kernel's teardown of it cost ~0.75 ms of CPU
 * (measured here: loopback registration, sysctl tables of every protocol,
 * ...), ~12% of all the CPU a create+exec+delete churn uses. What a
 * namespace keeps once its processes are gone is small because a
 * sandbox's root administers nothing in it (see above: no address, route,
 * firewall rule, sysctl or interface of its making) and is checked by the
 * maker before any reuse: no socket of any kind left (sockets still
 * closing, TIME_WAIT entries, fragments, sockets someone else holds),
 * else the namespace is dropped. What it does keep are counters (loopback
 * bytes and packets, protocol statistics in /proc/net/snmp): the next
 * sandbox sees the earlier one's loopback traffic totals. Hence groups:
 * the caller names who may see them (cellboxd: the tenant), and a
 * namespace only goes to a sandbox of the same group. Takes netns (closes
 * it when not kept: no group, not a namespace the maker could have made,
 * no maker running, too many waiting). Kept at most 60 s unused. */
void cb_netns_retire(struct cb_netns_spares *s, int netns, const char *group);
/* How many checked namespaces of group wait for a take; how many retired
 * ones wait for the check. */
int cb_netns_reusable(struct cb_netns_spares *s, const char *group);
int cb_netns_checking(struct cb_netns_spares *s);

/* Bring loopback up in the calling thread's network namespace. -errno. */
int cb_netns_loopback_up(void);

/* The calling thread's own network namespace before any setns: opened once
 * per process (the namespace the maker and the clone step return to).
 * -errno when it cannot be opened. */
int cb_netns_host_fd(void);

#endif
