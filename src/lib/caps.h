/* caps.h — capability hardening of a sandbox's first process. Runs in the
 * clone child between clone and exec: syscalls only, no allocation. */
#ifndef CB_CAPS_H
#define CB_CAPS_H

#include <stdint.h>

/* Docker's default capability set: what sandbox root keeps (inside its own
 * user namespace only — these are never capabilities over the host). */
uint64_t cb_caps_default_keep(void);
/* Highest capability number the kernel knows (parent side, read once). */
int cb_caps_last_cap(void);

/* Child side. Each returns 0 or -errno. */
int cb_caps_drop_bounding(uint64_t keep, int last_cap);
int cb_caps_clear_ambient(void);
/* Lock keep-caps, setuid-fixup and noroot at their current (off) values so
 * sandbox code cannot change how uid changes affect capabilities. NOROOT
 * stays off: root inside needs its capabilities after exec. */
int cb_caps_lock_securebits(void);
int cb_caps_no_new_privs(void);

#endif
