/* Signed snapshots: an HMAC-SHA256 with a key the user holds, over every
 * byte of the file before the SIGNATURE record (the header, every record
 * header with its checksum, every payload), so that a file nobody with
 * the key wrote is refused before any of its state is used.
 * docs/snapshot-format.md#signature is the specification. */
#ifndef STASIS_SIGN_H
#define STASIS_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

struct snap_writer;

#define SNAP_KEY_MIN 32 /* bytes of key material, at least */
#define SNAP_KEY_MAX 1024
#define SNAP_KEY_ID_LEN 8 /* the first bytes of SHA-256(key) */
#define SNAP_TAG_LEN 32 /* HMAC-SHA256 */
#define SNAP_SIG_HMAC_SHA256 1
#define SNAP_SIGNATURE_VERSION 1
/* algorithm u32, reserved u32, key id, tag. */
#define SNAP_SIGNATURE_LEN (8 + SNAP_KEY_ID_LEN + SNAP_TAG_LEN)

struct snap_key {
	uint8_t bytes[SNAP_KEY_MAX];
	size_t len;
	uint8_t id[SNAP_KEY_ID_LEN];
};

/* Reads a key file: a regular file of SNAP_KEY_MIN to SNAP_KEY_MAX bytes,
 * used as they are, that neither group nor others may read or write.
 * Returns 0 or -errno with a one-line reason in @err. */
int snap_key_load(const char *path, struct snap_key *key, char *err,
		  size_t errlen);

/* Loads @path into a new key (free with snap_key_free), or NULL with
 * @err filled. */
struct snap_key *snap_key_new(const char *path, char *err, size_t errlen);
void snap_key_free(struct snap_key *key);

/* The key id as 16 lowercase hex digits. */
void snap_key_id_format(const uint8_t id[SNAP_KEY_ID_LEN], char out[17]);

/* Appends the SIGNATURE record to @w; call it last, right before
 * snap_writer_commit. */
int snap_sign(struct snap_writer *w, const struct snap_key *key, char *err,
	      size_t errlen);

/* A SIGNATURE payload, decoded. */
struct snap_signature {
	uint32_t algorithm;
	uint8_t key_id[SNAP_KEY_ID_LEN];
	uint8_t tag[SNAP_TAG_LEN];
};

/* Decodes a SIGNATURE payload; -EINVAL when malformed. */
int snap_signature_decode(const uint8_t *p, size_t len,
			  struct snap_signature *sig);

/* Checks the file at @path with @key: its records are well framed, the
 * last before END is its one SIGNATURE, made with @key over everything
 * before it. @st gets the file's status as checked, so the caller can
 * tell if it changes after. Returns 0, -ENOKEY when the file is not
 * signed, -EKEYREJECTED for another key or a tag that does not match,
 * or another -errno; @err has one line. */
int snap_verify_signature(const char *path, const struct snap_key *key,
			  struct stat *st, char *err, size_t errlen);

/* Whether @a and @b are the same file, unchanged (device, inode, size,
 * mtime, ctime). */
bool snap_same_file(const struct stat *a, const struct stat *b);

#endif
