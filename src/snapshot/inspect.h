/* Reading a snapshot file for people and scripts, without a VM. */
#ifndef STASIS_INSPECT_H
#define STASIS_INSPECT_H

#include <stdbool.h>

/* Prints the header, each record (type, version, size, checksum, summary)
 * and memory statistics, as text or JSON; with @verify_only, prints one
 * line. Returns the exit status: 0 when every record is sound, 1 when
 * any is not, 2 when the file cannot be opened as a snapshot (inspect). */
struct snap_key;

/* With @key (may be NULL), the signature is checked too: a file not
 * signed with it is not sound. */
int snapshot_inspect(const char *path, bool as_json, bool verify_only,
		     const struct snap_key *key);

#endif
