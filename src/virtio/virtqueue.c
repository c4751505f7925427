/* Split virtqueues (virtio 1.2, 2.7): a bounded, checked walk of the
 * driver's descriptor chains and the used ring with event index. Every
 * access to guest memory goes through guest_mem_ptr(). */
#include "virtio/virtio.h"

#include <errno.h>
#include <string.h>

/* A descriptor as laid out in guest memory (2.7.5), little-endian like the
 * x86 host stasis runs on. */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

_Static_assert(sizeof(struct virtq_desc) == VIRTQ_DESC_SIZE,
	       "descriptor layout");

/* Host views of the three parts of a queue, each inside one RAM region
 * and aligned as 2.7 requires (so the 16- and 32-bit ring fields can be
 * accessed atomically). */
struct virtq_rings {
	uint8_t *desc;
	uint16_t *avail; /* flags, idx, ring[size], used_event */
	uint16_t
	    *used; /* flags, idx, then {u32 id, u32 len}[size], avail_event */
};

#define AVAIL_FLAGS 0
#define AVAIL_IDX 1
#define AVAIL_RING 2
#define USED_FLAGS 0
#define USED_IDX 1

static bool virtq_size_ok(uint16_t size)
{
	return size && size <= VIRTQ_MAX_SIZE && !(size & (size - 1));
}

static int virtq_rings(const struct virtq *vq, struct virtq_rings *r)
{
	if (!vq->mem || !virtq_size_ok(vq->size))
		return -EIO;
	if ((vq->desc_gpa & (VIRTQ_DESC_ALIGN - 1)) ||
	    (vq->avail_gpa & (VIRTQ_AVAIL_ALIGN - 1)) ||
	    (vq->used_gpa & (VIRTQ_USED_ALIGN - 1)))
		return -EIO;
	r->desc =
	    guest_mem_ptr(vq->mem, vq->desc_gpa, VIRTQ_DESC_BYTES(vq->size));
	r->avail =
	    guest_mem_ptr(vq->mem, vq->avail_gpa, VIRTQ_AVAIL_BYTES(vq->size));
	r->used =
	    guest_mem_ptr(vq->mem, vq->used_gpa, VIRTQ_USED_BYTES(vq->size));
	if (!r->desc || !r->avail || !r->used)
		return -EIO;
	return 0;
}

int virtq_check(const struct virtq *vq)
{
	struct virtq_rings r;

	return virtq_rings(vq, &r) ? -EINVAL : 0;
}

/* The driver writes the rings from other CPUs: indices are read with
 * acquire and written with release (2.7.13), single fields with one
 * access each. */
static uint16_t load16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static uint16_t *used_avail_event(const struct virtq *vq,
				  const struct virtq_rings *r)
{
	/* After flags, idx and size 8-byte elements (2.7.8). */
	return r->used + 2 + 4 * (size_t)vq->size;
}

bool virtq_empty(const struct virtq *vq)
{
	struct virtq_rings r;

	if (virtq_rings(vq, &r))
		return true;
	return load16(&r.avail[AVAIL_IDX]) == vq->last_avail;
}

/* Appends one buffer to @c; readable buffers must all come before the
 * writable ones (2.7.4.2). */
static int virtq_add_buf(const struct virtq *vq, struct virtq_chain *c,
			 const struct virtq_desc *d)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	void *p;

	if (!writable && c->nin)
		return -EIO;
	/* Nothing to transfer: no memory is touched, so no check needed. */
	if (d->len == 0)
		return 0;
	p = guest_mem_ptr(vq->mem, d->addr, d->len);
	if (!p)
		return -EIO;
	/* The caller bounds the descriptors visited by VIRTQ_MAX_CHAIN. */
	c->iov[c->nout + c->nin] =
	    (struct iovec){ .iov_base = p, .iov_len = d->len };
	if (writable) {
		c->nin++;
		c->in_len += d->len;
	} else {
		c->nout++;
		c->out_len += d->len;
	}
	return 0;
}

/* Walks the chain starting at @head. A walk visits at most VIRTQ_MAX_CHAIN
 * descriptors overall and, in each table, at most as many as the table
 * holds: a longer walk must revisit one, so it is a loop. */
static int virtq_walk(const struct virtq *vq, const struct virtq_rings *r,
		      uint16_t head, struct virtq_chain *c)
{
	const uint8_t *table = r->desc;
	uint32_t table_len = vq->size; /* entries */
	uint32_t idx = head, in_table = 0, total = 0;
	bool indirect = false;
	struct virtq_desc d;
	int ret;

	c->head = head;
	c->nout = c->nin = 0;
	c->out_len = c->in_len = 0;
	for (;;) {
		if (idx >= table_len || ++in_table > table_len ||
		    ++total > VIRTQ_MAX_CHAIN)
			return -EIO;
		/* One copy: the driver may rewrite the table meanwhile. */
		memcpy(&d, table + (size_t)idx * VIRTQ_DESC_SIZE, sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* 2.7.5.3.1: only with the feature, never nested,
			 * never together with NEXT, a whole number of
			 * descriptors. */
			if (!vq->indirect || indirect ||
			    (d.flags & VIRTQ_DESC_F_NEXT) || d.len == 0 ||
			    d.len % VIRTQ_DESC_SIZE ||
			    d.len / VIRTQ_DESC_SIZE > VIRTQ_MAX_CHAIN)
				return -EIO;
			table = guest_mem_ptr(vq->mem, d.addr, d.len);
			if (!table)
				return -EIO;
			table_len = d.len / VIRTQ_DESC_SIZE;
			indirect = true;
			idx = 0;
			in_table = 0;
			continue;
		}
		ret = virtq_add_buf(vq, c, &d);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		idx = d.next;
	}
}

int virtq_pop(struct virtq *vq, struct virtq_chain *chain)
{
	struct virtq_rings r;
	uint16_t avail_idx, pending, head;
	int ret;

	if (virtq_rings(vq, &r))
		return -EIO;
	avail_idx = load16(&r.avail[AVAIL_IDX]);
	pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending == 0)
		return 0;
	/* 2.7.13.3: the driver never has more than size buffers out. */
	if (pending > vq->size)
		return -EIO;
	/* The acquire load of idx orders this read after the driver's
	 * write of the ring entry. */
	head = __atomic_load_n(
	    &r.avail[AVAIL_RING + (vq->last_avail & (vq->size - 1))],
	    __ATOMIC_RELAXED);
	ret = virtq_walk(vq, &r, head, chain);
	if (ret)
		return ret;
	vq->last_avail++;
	return 1;
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t written)
{
	struct virtq_rings r;
	uint32_t *elem;

	if (virtq_rings(vq, &r))
		return;
	elem = (uint32_t *)(r.used + 2) + 2 * (vq->used_idx & (vq->size - 1));
	__atomic_store_n(&elem[0], (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n(&elem[1], written, __ATOMIC_RELAXED);
	vq->used_idx++;
	/* Release: the element is visible before the index (2.7.8.2). */
	store16(&r.used[USED_IDX], vq->used_idx);
	/* KVM logs only vCPU writes: the used ring is ours to report. */
	guest_mem_mark_dirty(vq->mem, vq->used_gpa, VIRTQ_USED_BYTES(vq->size));
}

/* 2.7.10: whether moving the used index from @old to @new_idx passed the
 * driver's used_event. */
static bool virtq_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool virtq_needs_interrupt(struct virtq *vq)
{
	struct virtq_rings r;
	uint16_t old = vq->signalled_used;
	bool valid = vq->signalled_used_valid;

	if (virtq_rings(vq, &r))
		return false;
	if (valid && old == vq->used_idx)
		return false;
	/* Our used idx store must be visible before we read the driver's
	 * suppression fields, or both sides may wait (2.7.7.2). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	if (!vq->event_idx)
		return !(load16(&r.avail[AVAIL_FLAGS]) &
			 VIRTQ_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	return virtq_need_event(load16(&r.avail[AVAIL_RING + vq->size]),
				vq->used_idx, old);
}

void virtq_set_notify(struct virtq *vq, bool enable)
{
	struct virtq_rings r;
	uint16_t flags;

	if (virtq_rings(vq, &r))
		return;
	if (vq->event_idx) {
		/* 2.7.10: with event index the device cannot switch kicks
		 * off; it asks for one at the next new buffer. */
		if (enable)
			store16(used_avail_event(vq, &r), vq->last_avail);
	} else {
		flags = load16(&r.used[USED_FLAGS]);
		if (enable)
			flags &= (uint16_t)~VIRTQ_USED_F_NO_NOTIFY;
		else
			flags |= VIRTQ_USED_F_NO_NOTIFY;
		store16(&r.used[USED_FLAGS], flags);
	}
	guest_mem_mark_dirty(vq->mem, vq->used_gpa, VIRTQ_USED_BYTES(vq->size));
	/* The store above before the caller's next look at avail idx. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Copies between @buf and the iovecs [first, first + n) of @c, starting
 * @off bytes into them. */
static size_t virtq_chain_copy(const struct virtq_chain *c, unsigned first,
			       unsigned n, size_t off, void *buf, size_t len,
			       bool to_guest)
{
	size_t done = 0;

	for (unsigned i = first; i < first + n && done < len; i++) {
		const struct iovec *v = &c->iov[i];
		size_t chunk;

		if (off >= v->iov_len) {
			off -= v->iov_len;
			continue;
		}
		chunk = v->iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		if (to_guest)
			memcpy((uint8_t *)v->iov_base + off,
			       (const uint8_t *)buf + done, chunk);
		else
			memcpy((uint8_t *)buf + done,
			       (const uint8_t *)v->iov_base + off, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

void virtq_chain_mark_written(const struct virtq *vq,
			      const struct virtq_chain *c)
{
	for (unsigned i = c->nout; i < c->nout + c->nin; i++)
		guest_mem_mark_dirty_host(vq->mem, c->iov[i].iov_base,
					  c->iov[i].iov_len);
}

size_t virtq_chain_read(const struct virtq_chain *c, size_t off, void *buf,
			size_t len)
{
	return virtq_chain_copy(c, 0, c->nout, off, buf, len, false);
}

size_t virtq_chain_write(const struct virtq_chain *c, size_t off,
			 const void *buf, size_t len)
{
	return virtq_chain_copy(c, c->nout, c->nin, off, (void *)buf, len,
				true);
}
