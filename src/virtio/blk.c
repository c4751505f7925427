/* virtio-blk (virtio 1.2 section 5.2) on a raw image file: read, write,
 * flush, discard and get-id, done synchronously on the device's worker
 * thread; and the image identity a snapshot records so that restore can
 * refuse a disk that changed. */
#include "virtio/devices.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "core/log.h"
#include "virtio/device_priv.h"

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_DISCARD 13

/* Request types and status values (5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_DISCARD_F_UNMAP 1

#define BLK_SECTOR 512 /* 5.2.6: sectors are always 512 bytes */
#define BLK_REQ_HEADER 16 /* le32 type, le32 reserved, le64 sector */
#define BLK_DISCARD_SEG 16 /* le64 sector, le32 num_sectors, le32 flags */
#define BLK_ID_BYTES 20 /* 5.2.6: GET_ID returns 20 bytes */

/* What the config offers (5.2.4). A request's header and status byte take
 * two descriptors of a chain; the other limits bound one request's work on
 * the worker thread. */
#define BLK_SEG_MAX (VIRTQ_MAX_CHAIN - 2)
#define BLK_SIZE_MAX (1u << 20)
#define BLK_MAX_DISCARD_SECTORS (1u << 21) /* 1 GiB per segment */
#define BLK_MAX_DISCARD_SEG 32
#define BLK_DISCARD_ALIGN 8 /* sectors: 4 KiB, the host's page */

/* Config layout (5.2.4): byte offsets of struct virtio_blk_config. */
#define BLK_CFG_CAPACITY 0
#define BLK_CFG_SIZE_MAX 8
#define BLK_CFG_SEG_MAX 12
#define BLK_CFG_BLK_SIZE 20
#define BLK_CFG_NUM_QUEUES 34
#define BLK_CFG_MAX_DISCARD_SECTORS 36
#define BLK_CFG_MAX_DISCARD_SEG 40
#define BLK_CFG_DISCARD_ALIGN 44
#define BLK_CFG_LEN 60 /* through write_zeroes_may_unmap and padding */

/* The part of the image the identity hashes. */
#define BLK_IDENTITY_HASH_BYTES (1u << 20)

/* saved_ident bits (table version 2). */
#define BLK_IDENT_STAT 0x1 /* dev, ino (rdev for a device), ctime recorded */
#define BLK_IDENT_BLOCK 0x2 /* the image is a block device */
#define BLK_IDENT_FULL_HASH 0x4 /* saved_full_hash is the whole image's */
#define BLK_IDENT_KNOWN 0x7

/* Longest wait for the file-time clock to move past the image's ctime
 * (1 s granular file systems need up to a second). */
#define BLK_TICK_WAIT_MS 1100

struct virtio_blk {
	/* Saved (blk_state_desc): the image's identity when the snapshot
	 * was taken, filled by blk_pre_save. */
	uint64_t saved_size; /* bytes */
	uint64_t saved_mtime_ns;
	uint64_t saved_hash; /* xxh3-64 of the first MiB */
	/* Version 2: what the kernel sets and no user can. A version 1
	 * record leaves them 0 (saved_ident 0: checked as before). */
	uint32_t saved_ident; /* BLK_IDENT_* */
	uint64_t saved_dev; /* st_dev of a file, st_rdev of a device */
	uint64_t saved_ino;
	uint64_t saved_ctime_ns;
	uint64_t saved_full_hash; /* xxh3-64 of the image (verify=hash) */

	/* From the config and the image; rebuilt on every start. */
	char *path;
	int fd;
	bool readonly;
	bool replaced; /* --disk at restore: skip the identity check */
	bool verify_hash; /* verify=hash: record the whole image's hash */
	uint64_t size; /* bytes */
	uint64_t capacity; /* sectors */
	char id[BLK_ID_BYTES]; /* NUL-padded, not terminated when full */

	struct virtq_chain chain;
	struct iovec data[VIRTQ_MAX_CHAIN];
	uint8_t discard[BLK_MAX_DISCARD_SEG * BLK_DISCARD_SEG];
	struct virtio_device *vdev;
};

static int blk_state_validate(const void *obj)
{
	const struct virtio_blk *blk = obj;

	return blk->saved_ident & ~BLK_IDENT_KNOWN ? -EINVAL : 0;
}

static const struct state_field blk_state_fields[] = {
	STATE_U64(struct virtio_blk, saved_size, 1),
	STATE_U64(struct virtio_blk, saved_mtime_ns, 1),
	STATE_U64(struct virtio_blk, saved_hash, 1),
	STATE_U32(struct virtio_blk, saved_ident, 2),
	STATE_U64(struct virtio_blk, saved_dev, 2),
	STATE_U64(struct virtio_blk, saved_ino, 2),
	STATE_U64(struct virtio_blk, saved_ctime_ns, 2),
	STATE_U64(struct virtio_blk, saved_full_hash, 2),
};

static const struct state_desc blk_state_desc = {
	.name = "virtio-blk",
	.version = 2,
	.min_version = 1,
	.fields = blk_state_fields,
	.nfields = STATE_NFIELDS(blk_state_fields),
	.validate = blk_state_validate,
};

static uint64_t blk_features(struct virtio_device *vdev)
{
	struct virtio_blk *blk = vdev->priv;
	uint64_t f = 1ull << VIRTIO_BLK_F_SIZE_MAX |
		     1ull << VIRTIO_BLK_F_SEG_MAX |
		     1ull << VIRTIO_BLK_F_BLK_SIZE |
		     1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_DISCARD;

	if (blk->readonly)
		f |= 1ull << VIRTIO_BLK_F_RO;
	return f;
}

static void blk_config_read(struct virtio_device *vdev, uint32_t off,
			    uint8_t *data, uint32_t len)
{
	struct virtio_blk *blk = vdev->priv;
	uint8_t cfg[BLK_CFG_LEN] = { 0 };

	put_le64(cfg + BLK_CFG_CAPACITY, blk->capacity);
	put_le32(cfg + BLK_CFG_SIZE_MAX, BLK_SIZE_MAX);
	put_le32(cfg + BLK_CFG_SEG_MAX, BLK_SEG_MAX);
	put_le32(cfg + BLK_CFG_BLK_SIZE, BLK_SECTOR);
	put_le16(cfg + BLK_CFG_NUM_QUEUES, 1);
	put_le32(cfg + BLK_CFG_MAX_DISCARD_SECTORS, BLK_MAX_DISCARD_SECTORS);
	put_le32(cfg + BLK_CFG_MAX_DISCARD_SEG, BLK_MAX_DISCARD_SEG);
	put_le32(cfg + BLK_CFG_DISCARD_ALIGN, BLK_DISCARD_ALIGN);
	virtio_config_copy(cfg, sizeof(cfg), off, data, len);
}

static void blk_config_write(struct virtio_device *vdev, uint32_t off,
			     const uint8_t *data, uint32_t len)
{
	/* Nothing is writable without CONFIG_WCE, which is not offered. */
}

/* Whether [sector, sector + bytes / 512) lies inside the disk. */
static bool blk_in_range(const struct virtio_blk *blk, uint64_t sector,
			 uint64_t bytes)
{
	return bytes % BLK_SECTOR == 0 && sector <= blk->capacity &&
	       bytes / BLK_SECTOR <= blk->capacity - sector;
}

static uint8_t blk_read(struct virtio_blk *blk, const struct virtq_chain *c,
			uint64_t sector)
{
	uint64_t len = c->in_len - 1; /* the status byte is last */
	unsigned n;

	if (!blk_in_range(blk, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = iov_slice(c->iov + c->nout, c->nin, 0, len, blk->data);
	if (file_rw_full(blk->fd, false, blk->data, n, sector * BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_write(struct virtio_blk *blk, const struct virtq_chain *c,
			 uint64_t sector)
{
	uint64_t len = c->out_len - BLK_REQ_HEADER;
	unsigned n;

	/* 5.2.6.2: a write to a read-only device fails with IOERR. */
	if (blk->readonly || !blk_in_range(blk, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = iov_slice(c->iov, c->nout, BLK_REQ_HEADER, len, blk->data);
	if (file_rw_full(blk->fd, true, blk->data, n, sector * BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	/* Without FLUSH negotiated the driver expects writes to be durable
	 * when completed (5.2.6.2: write-through). */
	if (!(blk->vdev->driver_features & 1ull << VIRTIO_BLK_F_FLUSH) &&
	    fdatasync(blk->fd))
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_flush(struct virtio_blk *blk)
{
	return fdatasync(blk->fd) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static uint8_t blk_get_id(struct virtio_blk *blk, const struct virtq_chain *c)
{
	uint64_t room = c->in_len - 1;

	virtq_chain_write(c, 0, blk->id,
			  room < BLK_ID_BYTES ? (size_t)room : BLK_ID_BYTES);
	return VIRTIO_BLK_S_OK;
}

/* 5.2.6: the data of a discard request is an array of segments. */
static uint8_t blk_discard(struct virtio_blk *blk, const struct virtq_chain *c)
{
	uint64_t len = c->out_len - BLK_REQ_HEADER;
	unsigned nseg;

	if (blk->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (len == 0 || len % BLK_DISCARD_SEG || len > sizeof(blk->discard))
		return VIRTIO_BLK_S_IOERR;
	nseg = (unsigned)(len / BLK_DISCARD_SEG);
	virtq_chain_read(c, BLK_REQ_HEADER, blk->discard, (size_t)len);
	/* Check every segment before touching the image, so a bad request
	 * changes nothing. */
	for (unsigned i = 0; i < nseg; i++) {
		const uint8_t *s = blk->discard + i * BLK_DISCARD_SEG;
		uint64_t sector = get_le64(s);
		uint32_t num = get_le32(s + 8), flags = get_le32(s + 12);

		/* 5.2.6.2: unknown flags and the unmap flag on a discard
		 * are unsupported. */
		if (flags)
			return VIRTIO_BLK_S_UNSUPP;
		if (num > BLK_MAX_DISCARD_SECTORS ||
		    !blk_in_range(blk, sector, (uint64_t)num * BLK_SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	for (unsigned i = 0; i < nseg; i++) {
		const uint8_t *s = blk->discard + i * BLK_DISCARD_SEG;
		uint64_t sector = get_le64(s);
		uint32_t num = get_le32(s + 8);

		if (!num)
			continue;
		/* A discard only says the data is no longer needed: a
		 * file system that cannot punch holes keeps it. */
		if (fallocate(blk->fd,
			      FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(sector * BLK_SECTOR),
			      (off_t)num * BLK_SECTOR) &&
		    errno != EOPNOTSUPP)
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* One request (5.2.6): header in the readable part, status byte at the
 * end of the writable part. Requests are handled to completion here, on
 * the worker thread, one at a time: when the transport parks the worker
 * no request is in flight, which is how a snapshot never holds half a
 * request and none is lost or done twice after restore. */
static enum chain_result blk_request(void *opaque, const struct virtq_chain *c,
				     uint32_t *written)
{
	struct virtio_blk *blk = opaque;
	uint8_t hdr[BLK_REQ_HEADER];
	uint8_t status;

	*written = 0;
	/* Without room for the status byte nothing can be reported: give
	 * the buffers back untouched. */
	if (c->in_len == 0 || c->in_len > UINT32_MAX)
		return CHAIN_DONE;
	if (c->out_len < BLK_REQ_HEADER) {
		status = VIRTIO_BLK_S_IOERR;
		goto done;
	}
	virtq_chain_read(c, 0, hdr, sizeof(hdr));
	switch (get_le32(hdr)) {
	case VIRTIO_BLK_T_IN:
		status = blk_read(blk, c, get_le64(hdr + 8));
		break;
	case VIRTIO_BLK_T_OUT:
		status = blk_write(blk, c, get_le64(hdr + 8));
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = blk_flush(blk);
		break;
	case VIRTIO_BLK_T_GET_ID:
		status = blk_get_id(blk, c);
		break;
	case VIRTIO_BLK_T_DISCARD:
		status = blk_discard(blk, c);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
done:
	virtq_chain_write(c, (size_t)(c->in_len - 1), &status, 1);
	/* The status byte is the last of the writable part, so the whole
	 * writable part counts as written (2.7.8: len is an upper bound). */
	*written = (uint32_t)c->in_len;
	return CHAIN_DONE;
}

static int blk_queue_notify(struct virtio_device *vdev, unsigned q)
{
	struct virtio_blk *blk = vdev->priv;

	return virtio_queue_drain(vdev, q, &blk->chain, blk_request, blk) < 0
		   ? -EIO
		   : 0;
}

static void blk_reset(struct virtio_device *vdev)
{
	/* Nothing is kept between requests. */
}

/* What identifies an image: the kernel's view of the file and hashes of
 * its contents. */
struct blk_ident {
	uint64_t size;
	uint64_t mtime_ns;
	uint64_t ctime_ns;
	uint64_t dev; /* st_dev, or st_rdev for a block device */
	uint64_t ino; /* 0 for a block device */
	bool block;
	uint64_t hash; /* first MiB */
	uint64_t full_hash; /* the whole image, when asked for */
};

static uint64_t blk_ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}

/* xxh3-64 of bytes [0, @len) of @fd, read through one 1 MiB buffer. */
static int blk_hash_range(int fd, uint64_t len, uint64_t *hash)
{
	XXH3_state_t *h;
	uint8_t *buf;
	uint64_t done = 0;
	int ret = 0;

	buf = malloc(BLK_IDENTITY_HASH_BYTES);
	h = XXH3_createState();
	if (!buf || !h) {
		ret = -ENOMEM;
		goto out;
	}
	XXH3_64bits_reset(h);
	while (done < len) {
		uint64_t want = len - done;
		ssize_t n;

		if (want > BLK_IDENTITY_HASH_BYTES)
			want = BLK_IDENTITY_HASH_BYTES;
		n = pread(fd, buf, (size_t)want, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			goto out;
		}
		XXH3_64bits_update(h, buf, (size_t)n);
		done += (uint64_t)n;
	}
	*hash = XXH3_64bits_digest(h);
out:
	XXH3_freeState(h);
	free(buf);
	return ret;
}

/* The identity of the image behind @fd; the whole image is hashed only
 * with @full. */
static int blk_identity(int fd, bool full, struct blk_ident *id)
{
	struct stat st;
	int ret;

	memset(id, 0, sizeof(*id));
	if (fstat(fd, &st))
		return -errno;
	id->block = S_ISBLK(st.st_mode);
	if (id->block) {
		if (ioctl(fd, BLKGETSIZE64, &id->size))
			return -errno;
		id->dev = (uint64_t)st.st_rdev;
	} else {
		id->size = (uint64_t)st.st_size;
		id->dev = (uint64_t)st.st_dev;
		id->ino = (uint64_t)st.st_ino;
	}
	id->mtime_ns = blk_ts_ns(&st.st_mtim);
	id->ctime_ns = blk_ts_ns(&st.st_ctim);
	ret = blk_hash_range(fd,
			     id->size < BLK_IDENTITY_HASH_BYTES
				 ? id->size
				 : BLK_IDENTITY_HASH_BYTES,
			     &id->hash);
	if (!ret && full)
		ret = blk_hash_range(fd, id->size, &id->full_hash);
	return ret;
}

/* File times come from the kernel's coarse clock (one tick, 1 to 10 ms),
 * truncated to the file system's granularity (1 s on some). A write in
 * the same tick as the last one before the snapshot would leave ctime as
 * recorded; once the clock has moved past it, any later write moves
 * ctime. So the snapshot waits, at most a tick (or a second), before the
 * guest or anyone else can write again. */
static void blk_wait_past_ctime(uint64_t ctime_ns)
{
	/* A ctime on a whole second suggests a 1 s granular file system. */
	uint64_t until =
	    ctime_ns + (ctime_ns % 1000000000ull ? 1 : 1000000000ull);
	struct timespec now, nap = { 0, 1000000 };

	for (int i = 0; i < BLK_TICK_WAIT_MS; i++) {
		clock_gettime(CLOCK_REALTIME_COARSE, &now);
		if (blk_ts_ns(&now) >= until)
			return;
		nanosleep(&nap, NULL);
	}
}

/* With the worker parked (no request in flight): make the image durable,
 * then record what restore will compare. */
static int blk_pre_save(struct virtio_device *vdev)
{
	struct virtio_blk *blk = vdev->priv;
	struct blk_ident id;
	int ret;

	if (fdatasync(blk->fd)) {
		ret = -errno;
		log_error("%s: cannot flush %s: %s", vdev->name, blk->path,
			  strerror(-ret));
		return ret;
	}
	ret = blk_identity(blk->fd, blk->verify_hash, &id);
	if (ret) {
		log_error("%s: cannot read %s: %s", vdev->name, blk->path,
			  strerror(-ret));
		return ret;
	}
	blk->saved_size = id.size;
	blk->saved_mtime_ns = id.mtime_ns;
	blk->saved_hash = id.hash;
	blk->saved_ident = BLK_IDENT_STAT;
	if (id.block)
		blk->saved_ident |= BLK_IDENT_BLOCK;
	if (blk->verify_hash)
		blk->saved_ident |= BLK_IDENT_FULL_HASH;
	blk->saved_dev = id.dev;
	blk->saved_ino = id.ino;
	blk->saved_ctime_ns = id.ctime_ns;
	blk->saved_full_hash = id.full_hash;
	if (!id.block)
		blk_wait_past_ctime(id.ctime_ns);
	return 0;
}

/* Fills @err with "disk PATH changed since the snapshot: WHY (...)". */
static int blk_changed(const struct virtio_blk *blk, char *err, size_t errlen,
		       const char *why)
{
	snprintf(err, errlen,
		 "disk %s changed since the snapshot: %s (give --disk to "
		 "restore to use it anyway)",
		 blk->path, why);
	return -ESTALE;
}

/* Compares the image now open with what the snapshot recorded: the
 * content hashes, and on the same host the kernel's identity of the file.
 * docs/virtio.md says what each level catches. */
static int blk_compare(const struct virtio_blk *blk, const struct blk_ident *id,
		       bool hash_only, char *err, size_t errlen)
{
	uint32_t ident = blk->saved_ident;
	char why[160];

	if (hash_only && !(ident & BLK_IDENT_FULL_HASH)) {
		snprintf(err, errlen,
			 "disk %s: the snapshot holds no hash of this disk "
			 "(it was not run with verify=hash)",
			 blk->path);
		return -ESTALE;
	}
	if (id->size != blk->saved_size) {
		snprintf(why, sizeof(why), "%" PRIu64 " bytes, was %" PRIu64,
			 id->size, blk->saved_size);
		return blk_changed(blk, err, errlen, why);
	}
	if ((ident & BLK_IDENT_STAT) &&
	    id->block != !!(ident & BLK_IDENT_BLOCK))
		return blk_changed(blk, err, errlen,
				   id->block
				       ? "now a block device, was a file"
				       : "now a file, was a block device");
	if (id->hash != blk->saved_hash)
		return blk_changed(blk, err, errlen, "its first MiB differs");
	if (ident & BLK_IDENT_FULL_HASH) {
		/* The content is what matters: a copy on another host, with
		 * other times and inode, passes. */
		if (id->full_hash != blk->saved_full_hash)
			return blk_changed(blk, err, errlen,
					   "its content hash differs");
		return 0;
	}
	if (ident & BLK_IDENT_BLOCK) {
		/* A device node's times move only with writes through that
		 * node, not through a mount or a loop device's file: they
		 * tell nothing, so the device number is what is compared. */
		if (id->dev != blk->saved_dev) {
			snprintf(why, sizeof(why),
				 "another block device (%u:%u, was %u:%u)",
				 major(id->dev), minor(id->dev),
				 major(blk->saved_dev), minor(blk->saved_dev));
			return blk_changed(blk, err, errlen, why);
		}
		return 0;
	}
	if ((ident & BLK_IDENT_STAT) &&
	    (id->dev != blk->saved_dev || id->ino != blk->saved_ino)) {
		snprintf(why, sizeof(why),
			 "another file (a copy, or renamed over the path: "
			 "inode %" PRIu64 ", was %" PRIu64
			 "; verify=hash checks a copy)",
			 id->ino, blk->saved_ino);
		return blk_changed(blk, err, errlen, why);
	}
	if (id->mtime_ns != blk->saved_mtime_ns) {
		snprintf(why, sizeof(why),
			 "modified at %" PRIu64 " ns, was %" PRIu64,
			 id->mtime_ns, blk->saved_mtime_ns);
		return blk_changed(blk, err, errlen, why);
	}
	if ((ident & BLK_IDENT_STAT) && id->ctime_ns != blk->saved_ctime_ns) {
		snprintf(why, sizeof(why),
			 "its status changed at %" PRIu64
			 " ns (ctime), was %" PRIu64
			 ": written, or its times set back",
			 id->ctime_ns, blk->saved_ctime_ns);
		return blk_changed(blk, err, errlen, why);
	}
	return 0;
}

static int blk_check(struct virtio_blk *blk, bool hash_only, char *err,
		     size_t errlen)
{
	struct blk_ident id;
	int ret;

	ret =
	    blk_identity(blk->fd, blk->saved_ident & BLK_IDENT_FULL_HASH, &id);
	if (ret) {
		snprintf(err, errlen, "disk %s: cannot read it: %s", blk->path,
			 strerror(-ret));
		return ret;
	}
	return blk_compare(blk, &id, hash_only, err, errlen);
}

int virtio_blk_check_identity(struct virtio_device *vdev, char *err,
			      size_t errlen)
{
	return blk_check(vdev->priv, false, err, errlen);
}

static int blk_post_load(struct virtio_device *vdev, char *err, size_t errlen)
{
	struct virtio_blk *blk = vdev->priv;

	/* restore --disk PATH,verify=hash: a copy checked by content. */
	if (blk->replaced && blk->verify_hash)
		return blk_check(blk, true, err, errlen);
	if (blk->replaced) {
		if (blk->size != blk->saved_size)
			log_warn("%s: %s holds %" PRIu64
				 " bytes, the snapshot's disk %" PRIu64
				 "; the guest is not told",
				 vdev->name, blk->path, blk->size,
				 blk->saved_size);
		return 0;
	}
	return virtio_blk_check_identity(vdev, err, errlen);
}

static void blk_destroy(struct virtio_device *vdev)
{
	struct virtio_blk *blk = vdev->priv;

	if (!blk)
		return;
	if (blk->fd >= 0)
		close(blk->fd);
	free(blk->path);
	free(blk);
	vdev->priv = NULL;
}

static const struct virtio_device_ops blk_ops = {
	.kind = "blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1, /* 5.2.2: one requestq without MQ */
	.config_len = BLK_CFG_LEN,
	.features = blk_features,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.state_desc = &blk_state_desc,
	.post_load = blk_post_load,
	.destroy = blk_destroy,
	.pre_save = blk_pre_save,
};

/* Opens the image and fills the fields that come from it. */
static int blk_open(struct virtio_blk *blk, const struct disk_config *cfg,
		    const char *name)
{
	const char *id;
	struct stat st;
	int ret;

	blk->fd =
	    open(cfg->path, (cfg->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (blk->fd < 0) {
		ret = -errno;
		log_error("--disk: cannot open %s: %s", cfg->path,
			  strerror(-ret));
		return ret;
	}
	if (fstat(blk->fd, &st)) {
		ret = -errno;
		log_error("--disk: %s: %s", cfg->path, strerror(-ret));
		return ret;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		log_error("--disk: %s is not a file or block device",
			  cfg->path);
		return -EINVAL;
	}
	blk->size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(blk->fd, BLKGETSIZE64, &blk->size)) {
		ret = -errno;
		log_error("--disk: %s: %s", cfg->path, strerror(-ret));
		return ret;
	}
	blk->capacity = blk->size / BLK_SECTOR;
	if (blk->size % BLK_SECTOR)
		log_warn("%s: %s is not a multiple of 512 bytes; the guest "
			 "sees %" PRIu64 " sectors",
			 name, cfg->path, blk->capacity);
	/* 5.2.6: the id is NUL-padded; 20 bytes need no terminator. */
	id = cfg->id ? cfg->id : name;
	memcpy(blk->id, id, strnlen(id, sizeof(blk->id)));
	return 0;
}

int virtio_blk_create(struct virtio_device *vdev, struct vm *vm,
		      const struct disk_config *cfg, const char *name,
		      uint8_t slot)
{
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	int ret;

	if (!blk || !(blk->path = strdup(cfg->path))) {
		free(blk);
		log_error("%s: out of memory", name);
		return -ENOMEM;
	}
	blk->readonly = cfg->readonly;
	blk->replaced = cfg->replaced;
	blk->verify_hash = cfg->verify_hash;
	ret = blk_open(blk, cfg, name);
	if (ret)
		goto fail;
	ret = virtio_device_create(vdev, vm, &blk_ops, blk, name, slot);
	if (ret)
		goto fail;
	blk->vdev = vdev;
	vdev->extra_fd = -1;
	return 0;
fail:
	if (blk->fd >= 0)
		close(blk->fd);
	free(blk->path);
	free(blk);
	vdev->priv = NULL;
	return ret;
}
