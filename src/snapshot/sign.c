/* Signed snapshots: the key file, the SIGNATURE record and its check,
 * with GnuTLS's HMAC-SHA256. */
#include "snapshot/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/le.h"
#include "snapshot/snapfile.h"

/* Bytes hashed per read while signing or checking. */
#define SIGN_CHUNK (1u << 20)

static int sign_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int sign_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return code;
}

int snap_key_load(const char *path, struct snap_key *key, char *err,
		  size_t errlen)
{
	uint8_t digest[32];
	struct stat st;
	ssize_t n;
	size_t got = 0;
	int fd, ret = 0;

	memset(key, 0, sizeof(*key));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return sign_fail(err, errlen, -errno, "key file %s: %s", path,
				 strerror(errno));
	if (fstat(fd, &st)) {
		ret = sign_fail(err, errlen, -errno, "key file %s: %s", path,
				strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = sign_fail(err, errlen, -EINVAL,
				"key file %s is not a regular file", path);
		goto out;
	}
	/* A key others can read is not secret; one they can write is not
	 * the user's. */
	if (st.st_mode & 077) {
		ret = sign_fail(err, errlen, -EPERM,
				"key file %s is open to group or others (mode "
				"%03o; chmod 600 it)",
				path, (unsigned)(st.st_mode & 0777));
		goto out;
	}
	if (st.st_size < SNAP_KEY_MIN || st.st_size > SNAP_KEY_MAX) {
		ret = sign_fail(err, errlen, -EINVAL,
				"key file %s holds %lld bytes: a key is %d to "
				"%d bytes (e.g. head -c 32 /dev/urandom)",
				path, (long long)st.st_size, SNAP_KEY_MIN,
				SNAP_KEY_MAX);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, key->bytes + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = sign_fail(err, errlen, n ? -errno : -EIO,
					"key file %s: %s", path,
					n ? strerror(errno) : "short read");
			goto out;
		}
		got += (size_t)n;
	}
	key->len = got;
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, key->bytes, key->len, digest)) {
		ret = sign_fail(err, errlen, -EIO, "SHA-256 failed");
		goto out;
	}
	memcpy(key->id, digest, SNAP_KEY_ID_LEN);
out:
	if (ret)
		gnutls_memset(key, 0, sizeof(*key));
	close(fd);
	return ret;
}

struct snap_key *snap_key_new(const char *path, char *err, size_t errlen)
{
	struct snap_key *key = malloc(sizeof(*key));

	if (!key) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (snap_key_load(path, key, err, errlen)) {
		free(key);
		return NULL;
	}
	return key;
}

void snap_key_free(struct snap_key *key)
{
	if (!key)
		return;
	gnutls_memset(key, 0, sizeof(*key));
	free(key);
}

void snap_key_id_format(const uint8_t id[SNAP_KEY_ID_LEN], char out[17])
{
	for (int i = 0; i < SNAP_KEY_ID_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* The payload's first part (algorithm, reserved, key id), which the tag
 * covers too, so neither can be swapped. */
static void sign_payload_head(uint8_t *p, const uint8_t id[SNAP_KEY_ID_LEN])
{
	put_le32(p, SNAP_SIG_HMAC_SHA256);
	put_le32(p + 4, 0);
	memcpy(p + 8, id, SNAP_KEY_ID_LEN);
}

/* HMAC-SHA256 with @key of bytes [0, @end) of @fd, then @head. */
static int sign_compute(int fd, uint64_t end, const uint8_t *head,
			size_t head_len, const struct snap_key *key,
			uint8_t tag[SNAP_TAG_LEN])
{
	gnutls_hmac_hd_t h;
	uint64_t off = 0;
	uint8_t *buf;
	int ret = 0;

	buf = malloc(SIGN_CHUNK);
	if (!buf)
		return -ENOMEM;
	if (gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, key->bytes, key->len)) {
		free(buf);
		return -EIO;
	}
	while (off < end) {
		size_t want =
		    end - off < SIGN_CHUNK ? (size_t)(end - off) : SIGN_CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n ? -errno : -EIO;
			break;
		}
		if (gnutls_hmac(h, buf, (size_t)n)) {
			ret = -EIO;
			break;
		}
		off += (uint64_t)n;
	}
	if (!ret && gnutls_hmac(h, head, head_len))
		ret = -EIO;
	gnutls_hmac_deinit(h, tag);
	if (ret)
		gnutls_memset(tag, 0, SNAP_TAG_LEN);
	free(buf);
	return ret;
}

int snap_sign(struct snap_writer *w, const struct snap_key *key, char *err,
	      size_t errlen)
{
	uint8_t payload[SNAP_SIGNATURE_LEN];
	int ret;

	sign_payload_head(payload, key->id);
	ret = sign_compute(snap_writer_fd(w), snap_writer_offset(w), payload,
			   8 + SNAP_KEY_ID_LEN, key,
			   payload + 8 + SNAP_KEY_ID_LEN);
	if (ret)
		return sign_fail(err, errlen, ret, "cannot sign: %s",
				 strerror(-ret));
	return snap_write_record(w, SNAP_REC_SIGNATURE, SNAP_SIGNATURE_VERSION,
				 SNAP_REC_OPTIONAL, payload, sizeof(payload),
				 err, errlen);
}

int snap_signature_decode(const uint8_t *p, size_t len,
			  struct snap_signature *sig)
{
	if (len != SNAP_SIGNATURE_LEN || get_le32(p + 4))
		return -EINVAL;
	sig->algorithm = get_le32(p);
	memcpy(sig->key_id, p + 8, SNAP_KEY_ID_LEN);
	memcpy(sig->tag, p + 8 + SNAP_KEY_ID_LEN, SNAP_TAG_LEN);
	return 0;
}

/* Constant time, so a forger learns nothing from how long it took. */
static bool sign_tags_equal(const uint8_t *a, const uint8_t *b)
{
	uint8_t d = 0;

	for (int i = 0; i < SNAP_TAG_LEN; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

int snap_verify_signature(const char *path, const struct snap_key *key,
			  struct stat *st, char *err, size_t errlen)
{
	struct snap_signature sig;
	struct snap_record rec, sig_rec;
	struct snap_reader *r;
	uint8_t tag[SNAP_TAG_LEN], head[8 + SNAP_KEY_ID_LEN];
	char want[17], got[17];
	uint8_t *payload = NULL;
	bool have = false;
	int ret;

	r = snap_reader_open(path, err, errlen);
	if (!r)
		return -EINVAL;
	if (fstat(snap_reader_fd(r), st)) {
		ret = sign_fail(err, errlen, -errno, "%s", strerror(errno));
		goto out;
	}
	/* Framing only: the tag covers every byte, checksums included. */
	while ((ret = snap_reader_next(r, &rec, err, errlen)) == 1) {
		if (have) {
			ret = sign_fail(err, errlen, -EINVAL,
					"signature: record %" PRIu32
					" (%s) follows the SIGNATURE record, "
					"which must be last",
					rec.index,
					snap_record_type_name(rec.type));
			goto out;
		}
		if (rec.type == SNAP_REC_SIGNATURE) {
			sig_rec = rec;
			have = true;
		}
	}
	if (ret < 0)
		goto out;
	if (!have) {
		ret = sign_fail(err, errlen, -ENOKEY,
				"not signed (no SIGNATURE record)");
		goto out;
	}
	/* Nothing, not even an optional record, between it and END. */
	if (sig_rec.offset + ((sig_rec.length + 7) & ~7ull) !=
	    (uint64_t)st->st_size - SNAP_RECORD_HEADER_SIZE) {
		ret = sign_fail(err, errlen, -EINVAL,
				"signature: the SIGNATURE record is not the "
				"last before END");
		goto out;
	}
	if (sig_rec.version != SNAP_SIGNATURE_VERSION) {
		ret = sign_fail(err, errlen, -EINVAL,
				"signature: SIGNATURE version %u unknown",
				sig_rec.version);
		goto out;
	}
	ret = snap_read_payload(r, &sig_rec, SNAP_SIGNATURE_LEN,
				(void **)&payload, err, errlen);
	if (ret == -EFBIG ||
	    (!ret && snap_signature_decode(payload, sig_rec.length, &sig))) {
		ret = sign_fail(err, errlen, -EINVAL,
				"signature: malformed SIGNATURE record");
		goto out;
	}
	if (ret)
		goto out;
	if (sig.algorithm != SNAP_SIG_HMAC_SHA256) {
		ret = sign_fail(err, errlen, -EINVAL,
				"signature: algorithm %" PRIu32 " unknown",
				sig.algorithm);
		goto out;
	}
	if (memcmp(sig.key_id, key->id, SNAP_KEY_ID_LEN)) {
		snap_key_id_format(sig.key_id, got);
		snap_key_id_format(key->id, want);
		ret = sign_fail(err, errlen, -EKEYREJECTED,
				"signed with key id %s, not this key's (%s)",
				got, want);
		goto out;
	}
	memcpy(head, payload, sizeof(head));
	ret = sign_compute(snap_reader_fd(r),
			   sig_rec.offset - SNAP_RECORD_HEADER_SIZE, head,
			   sizeof(head), key, tag);
	if (ret) {
		sign_fail(err, errlen, ret, "signature: %s", strerror(-ret));
		goto out;
	}
	if (!sign_tags_equal(tag, sig.tag))
		ret = sign_fail(err, errlen, -EKEYREJECTED,
				"signature does not match: changed after it "
				"was signed, or not signed with this key");
out:
	free(payload);
	snap_reader_close(r);
	return ret;
}

bool snap_same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}
