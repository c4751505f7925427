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

struct virtio_blk {
	/* Saved (blk_state_desc): the image's identity when the snapshot
	 * was taken, filled by blk_pre_save. */
	uint64_t saved_size; /* bytes */
	uint64_t saved_mtime_ns;
	uint64_t saved_hash; /* xxh3-64 of the first MiB */

	/* From the config and the image; rebuilt on every start. */
	char *path;
	int fd;
	bool readonly;
	bool replaced; /* --disk at restore: skip the identity check */
	uint64_t size; /* bytes */
	uint64_t capacity; /* sectors */
	char id[BLK_ID_BYTES]; /* NUL-padded, not terminated when full */

	struct virtq_chain chain;
	struct iovec data[VIRTQ_MAX_CHAIN];
	uint8_t discard[BLK_MAX_DISCARD_SEG * BLK_DISCARD_SEG];
	struct virtio_device *vdev;
};

static const struct state_field blk_state_fields[] = {
	STATE_U64(struct virtio_blk, saved_size, 1),
	STATE_U64(struct virtio_blk, saved_mtime_ns, 1),
	STATE_U64(struct virtio_blk, saved_hash, 1),
};

static const struct state_desc blk_state_desc = {
	.name = "virtio-blk",
	.version = 1,
	.min_version = 1,
	.fields = blk_state_fields,
	.nfields = STATE_NFIELDS(blk_state_fields),
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

/* The identity of the image behind @fd: size, mtime and a hash of the
 * first MiB. */
static int blk_identity(int fd, uint64_t *size, uint64_t *mtime_ns,
			uint64_t *hash)
{
	XXH3_state_t *h;
	uint8_t *buf;
	struct stat st;
	uint64_t want, done = 0;
	int ret = 0;

	if (fstat(fd, &st))
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size))
			return -errno;
	} else {
		*size = (uint64_t)st.st_size;
	}
	*mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ull +
		    (uint64_t)st.st_mtim.tv_nsec;
	want =
	    *size < BLK_IDENTITY_HASH_BYTES ? *size : BLK_IDENTITY_HASH_BYTES;
	buf = malloc(BLK_IDENTITY_HASH_BYTES);
	h = XXH3_createState();
	if (!buf || !h) {
		ret = -ENOMEM;
		goto out;
	}
	XXH3_64bits_reset(h);
	while (done < want) {
		ssize_t n = pread(fd, buf, (size_t)(want - done), (off_t)done);

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

/* With the worker parked (no request in flight): make the image durable,
 * then record what restore will compare. */
static int blk_pre_save(struct virtio_device *vdev)
{
	struct virtio_blk *blk = vdev->priv;
	int ret;

	if (fdatasync(blk->fd)) {
		ret = -errno;
		log_error("%s: cannot flush %s: %s", vdev->name, blk->path,
			  strerror(-ret));
		return ret;
	}
	ret = blk_identity(blk->fd, &blk->saved_size, &blk->saved_mtime_ns,
			   &blk->saved_hash);
	if (ret)
		log_error("%s: cannot read %s: %s", vdev->name, blk->path,
			  strerror(-ret));
	return ret;
}

int virtio_blk_check_identity(struct virtio_device *vdev, char *err,
			      size_t errlen)
{
	struct virtio_blk *blk = vdev->priv;
	uint64_t size, mtime_ns, hash;
	int ret;

	ret = blk_identity(blk->fd, &size, &mtime_ns, &hash);
	if (ret) {
		snprintf(err, errlen, "disk %s: cannot read it: %s", blk->path,
			 strerror(-ret));
		return ret;
	}
	if (size != blk->saved_size)
		snprintf(err, errlen,
			 "disk %s changed since the snapshot: %" PRIu64
			 " bytes, was %" PRIu64
			 " (give --disk to restore to use it anyway)",
			 blk->path, size, blk->saved_size);
	else if (hash != blk->saved_hash)
		snprintf(err, errlen,
			 "disk %s changed since the snapshot: its first MiB "
			 "differs (give --disk to restore to use it anyway)",
			 blk->path);
	else if (mtime_ns != blk->saved_mtime_ns)
		snprintf(err, errlen,
			 "disk %s changed since the snapshot: modified at "
			 "%" PRIu64 " ns, was %" PRIu64
			 " (give --disk to restore to use it anyway)",
			 blk->path, mtime_ns, blk->saved_mtime_ns);
	else
		return 0;
	return -ESTALE;
}

static int blk_post_load(struct virtio_device *vdev, char *err, size_t errlen)
{
	struct virtio_blk *blk = vdev->priv;

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
