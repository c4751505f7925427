/* The control API server: HTTP/1.1 with JSON bodies on a 0600 UNIX socket,
 * served by libmicrohttpd with one thread per connection. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "control/api.h"
#include "migrate/mig_pool.h"
#include "core/text.h"
#include "core/timings.h"
#include "core/unix_socket.h"

/* One thread per connection: clients that send half a request and wait
 * (slow-loris) each hold one until the idle timeout, so the limit leaves
 * room for many of them and for 64 busy clients at once, and an idle
 * connection is dropped after 10 s. */
#define API_MAX_CONNECTIONS 256
#define API_BACKLOG 128
#define API_IDLE_TIMEOUT_S 10
#define API_STOP_GRACE_S 2
#define API_DRAIN_MAX (16 * API_BODY_MAX)
#define API_JSON_DEPTH 8
#define API_ERR_MAX 512
/* How much of a client's key, URL or method an error quotes (text_escape:
 * bounded, one line of plain text whatever the client sent). */
#define API_QUOTE_MAX 64
#define API_JSON_OUT (JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE)
#define API_NOMEM_BODY "{ \"error\": \"out of memory\" }\n"

struct api_server {
	struct MHD_Daemon *mhd;
	const struct api_ops *ops;
	void *ctx;
	char *socket_path;
	dev_t sock_dev; /* identify our socket file, to never unlink another */
	ino_t sock_ino;
	uid_t uid;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned active; /* requests between first callback and completion */
};

struct api_route;

/* Per-request state, from the first access callback to completion. */
struct api_request {
	const struct api_route *route;
	bool answered; /* a reply was queued before the body was read */
	bool too_large;
	bool nomem;
	char *body;
	size_t len;
	uint64_t received; /* including bytes dropped past the limit */
};

typedef enum MHD_Result (*api_handler)(struct api_server *s,
				       struct MHD_Connection *c,
				       const struct api_request *req);

struct api_route {
	struct api_endpoint ep;
	api_handler handle;
};

static const char *const api_then_names[] = {
	[VM_THEN_RESUME] = "resume",
	[VM_THEN_PAUSE] = "pause",
	[VM_THEN_EXIT] = "exit",
};

/* JSON whitespace, RFC 8259 section 2. */
static bool api_is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static bool api_is_blank(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (!api_is_space(s[i]))
			return false;
	}
	return true;
}

/* json-c stores object keys as C strings, so "path\u0000x" would alias
 * "path"; refuse the escape outright. In valid JSON a backslash only
 * starts an escape inside a string, so pairing them left to right is
 * exact. */
static bool api_has_nul_escape(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && len - i >= 6 &&
		    !memcmp(s + i + 2, "0000", 4))
			return true;
		i++;
	}
	return false;
}

struct json_object *api_parse_json_object(const char *body, size_t len,
					  char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t end;

	for (end = 0; end < len && api_is_space(body[end]); end++)
		;
	if (end == len || body[end] != '{') {
		snprintf(err, errlen, "request body must be a JSON object");
		return NULL;
	}
	if (memchr(body, '\0', len) || api_has_nul_escape(body, len)) {
		snprintf(err, errlen, "request body contains a NUL character");
		return NULL;
	}
	/* The same check as config files and snapshot CONFIG records. */
	if (!text_is_utf8(body, len, &end)) {
		snprintf(err, errlen,
			 "malformed JSON: not valid UTF-8 at byte %zu", end);
		return NULL;
	}
	tok = json_tokener_new_ex(API_JSON_DEPTH);
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, body, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!obj) {
		if (jerr == json_tokener_continue)
			snprintf(err, errlen,
				 "malformed JSON: unexpected end of input");
		else
			snprintf(err, errlen, "malformed JSON: %s at byte %zu",
				 json_tokener_error_desc(jerr), end);
		return NULL;
	}
	/* Strict json-c refuses trailing data itself; older versions stop
	 * at the closing brace. */
	if (end > len || !api_is_blank(body + end, len - end)) {
		snprintf(err, errlen,
			 "malformed JSON: trailing data after the object");
		json_object_put(obj);
		return NULL;
	}
	return obj;
}

static int api_unknown_key(const char *key, char *err, size_t errlen)
{
	char q[API_QUOTE_MAX + 4];

	text_escape(q, sizeof(q), key, strlen(key));
	snprintf(err, errlen, "unknown key \"%s\"", q);
	return -EINVAL;
}

/* Bodies of the endpoints that take no arguments: nothing, or {}. */
static int api_parse_empty_request(const char *body, size_t len, char *err,
				   size_t errlen)
{
	struct json_object *obj;
	int ret = 0;

	if (api_is_blank(body, len))
		return 0;
	obj = api_parse_json_object(body, len, err, errlen);
	if (!obj)
		return -EINVAL;
	json_object_object_foreach(obj, key, val)
	{
		(void)val;
		ret = api_unknown_key(key, err, errlen);
		break;
	}
	json_object_put(obj);
	return ret;
}

/* A non-empty JSON string for @key, copied into @path (@pathlen bytes
 * with its NUL): 0, or -EINVAL with one line. */
static int api_get_path(struct json_object *val, const char *key, char *path,
			size_t pathlen, char *err, size_t errlen)
{
	const char *s;
	size_t len;

	if (!json_object_is_type(val, json_type_string)) {
		snprintf(err, errlen, "\"%s\" must be a string", key);
		return -EINVAL;
	}
	s = json_object_get_string(val);
	len = (size_t)json_object_get_string_len(val);
	if (!len) {
		snprintf(err, errlen, "\"%s\" must not be empty", key);
		return -EINVAL;
	}
	if (strlen(s) != len) {
		snprintf(err, errlen, "\"%s\" contains a NUL character", key);
		return -EINVAL;
	}
	if (len >= pathlen) {
		snprintf(err, errlen, "\"%s\" is longer than %zu bytes", key,
			 pathlen - 1);
		return -EINVAL;
	}
	memcpy(path, s, len + 1);
	return 0;
}

/* A JSON boolean for @key into *@out: 0, or -EINVAL with one line. */
static int api_get_bool(struct json_object *val, const char *key, bool *out,
			char *err, size_t errlen)
{
	if (!json_object_is_type(val, json_type_boolean)) {
		snprintf(err, errlen, "\"%s\" must be true or false", key);
		return -EINVAL;
	}
	*out = json_object_get_boolean(val);
	return 0;
}

static int api_get_then(struct json_object *val, enum vm_then *then, char *err,
			size_t errlen)
{
	const char *s;
	size_t i;

	if (json_object_is_type(val, json_type_string)) {
		s = json_object_get_string(val);
		for (i = 0;
		     i < sizeof(api_then_names) / sizeof(*api_then_names);
		     i++) {
			if (!strcmp(s, api_then_names[i])) {
				*then = (enum vm_then)i;
				return 0;
			}
		}
	}
	snprintf(err, errlen,
		 "\"then\" must be \"resume\", \"pause\" or \"exit\"");
	return -EINVAL;
}

static int api_get_compress(struct json_object *val,
			    struct snap_compress *compress, char *err,
			    size_t errlen)
{
	if (!json_object_is_type(val, json_type_string)) {
		snprintf(err, errlen,
			 "\"compress\" must be a string such as \"zstd:3\"");
		return -EINVAL;
	}
	return snap_compress_parse(json_object_get_string(val), compress, err,
				   errlen);
}

/* The start of a body that must name @key, a string of less than @room
 * bytes (PUT /vm/snapshot, /vm/restore, /vm/migrate): bounded, present,
 * one JSON object, which *@obj then holds; api_parse_end() finishes it. */
static int api_parse_start(const char *body, size_t len, const char *key,
			   size_t room, struct json_object **obj, char *err,
			   size_t errlen)
{
	if (len > API_BODY_MAX) {
		snprintf(err, errlen, "request body is larger than %d bytes",
			 API_BODY_MAX);
		return -EMSGSIZE;
	}
	if (!room) {
		snprintf(err, errlen, "no room for the \"%s\"", key);
		return -EINVAL;
	}
	if (api_is_blank(body, len)) {
		snprintf(err, errlen,
			 "missing request body: expected {\"%s\": ...}", key);
		return -EINVAL;
	}
	*obj = api_parse_json_object(body, len, err, errlen);
	return *obj ? 0 : -EINVAL;
}

/* The end of such a body: @ret, the first key's error, or else an error
 * if @key was not there; *@obj is put either way. */
static int api_parse_end(struct json_object *obj, int ret, bool have_key,
			 const char *key, char *err, size_t errlen)
{
	if (!ret && !have_key) {
		snprintf(err, errlen, "missing key \"%s\"", key);
		ret = -EINVAL;
	}
	json_object_put(obj);
	return ret;
}

int api_parse_snapshot_request(const char *body, size_t len, char *path,
			       size_t pathlen, char *base, enum vm_then *then,
			       struct snap_compress *compress, bool *live,
			       char *err, size_t errlen)
{
	struct json_object *obj;
	bool have_path = false;
	int ret;

	ret = api_parse_start(body, len, "path", pathlen, &obj, err, errlen);
	if (ret)
		return ret;
	*then = VM_THEN_RESUME;
	*live = false;
	base[0] = '\0';
	*compress =
	    (struct snap_compress){ .codec = SNAP_COMPRESS_DEFAULT_CODEC };
	json_object_object_foreach(obj, key, val)
	{
		if (!strcmp(key, "path")) {
			ret =
			    api_get_path(val, key, path, pathlen, err, errlen);
			have_path = !ret;
		} else if (!strcmp(key, "then")) {
			ret = api_get_then(val, then, err, errlen);
		} else if (!strcmp(key, "compress")) {
			ret = api_get_compress(val, compress, err, errlen);
		} else if (!strcmp(key, "base")) {
			ret =
			    api_get_path(val, key, base, pathlen, err, errlen);
		} else if (!strcmp(key, "live")) {
			ret = api_get_bool(val, key, live, err, errlen);
		} else {
			ret = api_unknown_key(key, err, errlen);
		}
		if (ret)
			break;
	}
	return api_parse_end(obj, ret, have_path, "path", err, errlen);
}

static const char *const api_memory_names[] = {
	[API_MEMORY_DEFAULT] = "default",
	[API_MEMORY_ONDEMAND] = "ondemand",
	[API_MEMORY_MAP] = "map",
	[API_MEMORY_COPY] = "copy",
};

const char *api_memory_name(enum api_memory m)
{
	return m <= API_MEMORY_COPY ? api_memory_names[m] : "?";
}

/* One of @names[1..n) for the string @val, as its index; 0 if none. */
static unsigned api_get_word(struct json_object *val, const char *const *names,
			     unsigned n)
{
	if (!json_object_is_type(val, json_type_string))
		return 0;
	for (unsigned i = 1; i < n; i++)
		if (!strcmp(json_object_get_string(val), names[i]))
			return i;
	return 0;
}

int api_parse_restore_request(const char *body, size_t len, char *path,
			      size_t pathlen, struct api_restore *req,
			      char *err, size_t errlen)
{
	static const char *const clocks[] = { "default", "advance", "frozen" };
	struct json_object *obj;
	bool have_path = false;
	int ret;

	ret = api_parse_start(body, len, "path", pathlen, &obj, err, errlen);
	if (ret)
		return ret;
	*req = (struct api_restore){ .path = path };
	json_object_object_foreach(obj, key, val)
	{
		if (!strcmp(key, "path")) {
			ret =
			    api_get_path(val, key, path, pathlen, err, errlen);
			have_path = !ret;
		} else if (!strcmp(key, "memory")) {
			req->memory = (enum api_memory)api_get_word(
			    val, api_memory_names, 4);
			if (!req->memory) {
				snprintf(err, errlen,
					 "\"memory\" must be \"ondemand\", "
					 "\"map\" or \"copy\"");
				ret = -EINVAL;
			}
		} else if (!strcmp(key, "clock")) {
			req->clock =
			    (enum api_clock)api_get_word(val, clocks, 3);
			if (!req->clock) {
				snprintf(err, errlen,
					 "\"clock\" must be \"advance\" or "
					 "\"frozen\"");
				ret = -EINVAL;
			}
		} else if (!strcmp(key, "paused")) {
			ret = api_get_bool(val, key, &req->paused, err, errlen);
		} else {
			ret = api_unknown_key(key, err, errlen);
		}
		if (ret)
			break;
	}
	return api_parse_end(obj, ret, have_path, "path", err, errlen);
}

static int api_get_uint(struct json_object *val, const char *key, int64_t min,
			int64_t max, int64_t *out, char *err, size_t errlen)
{
	int64_t v = 0;

	if (!json_object_is_type(val, json_type_int) ||
	    (v = json_object_get_int64(val)) < min || v > max) {
		snprintf(err, errlen,
			 "\"%s\" must be an integer from %lld to %lld", key,
			 (long long)min, (long long)max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int api_parse_migrate_request(const char *body, size_t len,
			      struct migrate_opts *o, char *err, size_t errlen)
{
	struct json_object *obj;
	bool have_dest = false;
	int64_t v = 0;
	int ret;

	memset(o, 0, sizeof(*o));
	o->compress =
	    (struct snap_compress){ .codec = SNAP_COMPRESS_DEFAULT_CODEC };
	ret = api_parse_start(body, len, "destination", sizeof(o->dest), &obj,
			      err, errlen);
	if (ret)
		return ret;
	json_object_object_foreach(obj, key, val)
	{
		if (!strcmp(key, "destination")) {
			ret = api_get_path(val, key, o->dest, sizeof(o->dest),
					   err, errlen);
			if (ret)
				snprintf(err, errlen,
					 "\"destination\" must be a string "
					 "unix:PATH or tcp:HOST:PORT of at "
					 "most %zu bytes",
					 sizeof(o->dest) - 1);
			have_dest = !ret;
		} else if (!strcmp(key, "insecure")) {
			ret = api_get_bool(val, key, &o->insecure, err, errlen);
		} else if (!strcmp(key, "timeout_s")) {
			ret = api_get_uint(val, key, 1, 86400, &v, err, errlen);
			o->timeout_s = (unsigned)v;
		} else if (!strcmp(key, "downtime_ms")) {
			ret = api_get_uint(val, key, 1, 60000, &v, err, errlen);
			o->downtime_ms = (unsigned)v;
		} else if (!strcmp(key, "connections")) {
			ret = api_get_uint(val, key, 1, MIG_POOL_MAX, &v, err,
					   errlen);
			o->connections = (unsigned)v;
		} else if (!strcmp(key, "tls_dir")) {
			ret = api_get_path(val, key, o->tls_dir,
					   sizeof(o->tls_dir), err, errlen);
			if (!ret && o->tls_dir[0] != '/') {
				snprintf(err, errlen,
					 "\"tls_dir\" must be an absolute "
					 "path");
				ret = -EINVAL;
			}
		} else if (!strcmp(key, "compress")) {
			ret = api_get_compress(val, &o->compress, err, errlen);
		} else if (!strcmp(key, "auto_converge")) {
			bool on = true;

			ret = api_get_bool(val, key, &on, err, errlen);
			o->no_auto_converge = !on;
		} else if (!strcmp(key, "postcopy")) {
			ret = api_get_bool(val, key, &o->postcopy, err, errlen);
		} else if (!strcmp(key, "on_timeout")) {
			const char *s =
			    json_object_is_type(val, json_type_string)
				? json_object_get_string(val)
				: "";

			if (!strcmp(s, "abort") || !strcmp(s, "postcopy")) {
				o->timeout_postcopy = !strcmp(s, "postcopy");
			} else {
				snprintf(err, errlen,
					 "\"on_timeout\" must be \"abort\" or "
					 "\"postcopy\"");
				ret = -EINVAL;
			}
		} else {
			ret = api_unknown_key(key, err, errlen);
		}
		if (ret)
			break;
	}
	return api_parse_end(obj, ret, have_dest, "destination", err, errlen);
}

/* Queues a reply; @body may be NULL for none, @allow adds an Allow header
 * (RFC 9110 section 15.5.6 requires it with 405). */
static enum MHD_Result api_reply(struct MHD_Connection *c, unsigned status,
				 const char *body, const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret = MHD_NO;

	r = MHD_create_response_from_buffer(
	    body ? strlen(body) : 0, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (body && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
					    "application/json") != MHD_YES)
		goto out;
	if (allow &&
	    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)
		goto out;
	ret = MHD_queue_response(c, status, r);
out:
	MHD_destroy_response(r);
	return ret;
}

/* Queues @obj, as one line, and puts it; NULL (an object that could not
 * be built) is a 500. json-c does the escaping, so the body is as long
 * as it needs to be. */
static enum MHD_Result api_reply_object(struct MHD_Connection *c,
					unsigned status, const char *allow,
					struct json_object *obj)
{
	const char *text = NULL;
	enum MHD_Result ret;
	char *body = NULL;

	if (obj)
		text = json_object_to_json_string_ext(obj, API_JSON_OUT);
	if (!text || asprintf(&body, "%s\n", text) < 0) {
		json_object_put(obj);
		return api_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				 API_NOMEM_BODY, NULL);
	}
	json_object_put(obj);
	ret = api_reply(c, status, body, allow);
	free(body);
	return ret;
}

/* Queues {"k0": "v0", ...} from @n key/value pairs. */
static enum MHD_Result api_reply_strings(struct MHD_Connection *c,
					 unsigned status, const char *allow,
					 const char *const *kv, size_t n)
{
	struct json_object *obj, *str;

	obj = json_object_new_object();
	for (size_t i = 0; obj && i + 1 < n; i += 2) {
		str = json_object_new_string(kv[i + 1]);
		if (!str || json_object_object_add(obj, kv[i], str)) {
			json_object_put(str);
			json_object_put(obj);
			obj = NULL;
		}
	}
	return api_reply_object(c, status, allow, obj);
}

static enum MHD_Result api_reply_error(struct MHD_Connection *c,
				       unsigned status, const char *allow,
				       const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum MHD_Result api_reply_error(struct MHD_Connection *c,
				       unsigned status, const char *allow,
				       const char *fmt, ...)
{
	char msg[API_ERR_MAX];
	const char *kv[2] = { "error", msg };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	text_escape_inplace(msg, sizeof(msg));
	return api_reply_strings(c, status, allow, kv, 2);
}

/* A request body the parser refused: too large (413) or wrong (400). */
static enum MHD_Result api_reply_bad_body(struct MHD_Connection *c, int ret,
					  const char *err)
{
	return api_reply_error(c,
			       ret == -EMSGSIZE ? MHD_HTTP_CONTENT_TOO_LARGE
						: MHD_HTTP_BAD_REQUEST,
			       NULL, "%s", err);
}

/* The errno-to-status mapping documented in api.h. */
static unsigned api_errno_status(int ret)
{
	switch (ret) {
	case -EALREADY:
	case -EBUSY:
		return MHD_HTTP_CONFLICT;
	case -EINVAL:
		return MHD_HTTP_BAD_REQUEST;
	case -ENOSPC:
		return MHD_HTTP_INSUFFICIENT_STORAGE;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* Replies to a failed callback with its own reason, or strerror. */
static enum MHD_Result api_reply_op_error(struct MHD_Connection *c, int ret,
					  const char *what, char *err,
					  size_t errlen)
{
	char buf[128];

	/* Not a -errno: a callback bug, but still an error for the client. */
	if (ret > 0 || ret < -4095)
		ret = -EIO;
	err[errlen - 1] = '\0';
	if (err[0])
		return api_reply_error(c, api_errno_status(ret), NULL, "%s",
				       err);
	return api_reply_error(c, api_errno_status(ret), NULL, "%s failed: %s",
			       what, strerror_r(-ret, buf, sizeof(buf)));
}

/* The restore's phases as a JSON object of "NAME_us" members (null for
 * a phase not reached), or null for a VM that was booted. */
static void api_format_timings(const struct timings *t, char *out,
			       size_t outlen)
{
	size_t len;

	if (!t) {
		snprintf(out, outlen, "null");
		return;
	}
	/* exec_source is one of timings.c's fixed strings. */
	len = (size_t)snprintf(out, outlen, "{ \"exec_source\": \"%s\"",
			       t->exec_source ? t->exec_source : "unknown");
	for (int m = 0; m < TIMING_COUNT && len < outlen; m++) {
		int64_t us = timings_us(t, (enum timing_mark)m);
		char v[24] = "null";

		if (us >= 0)
			snprintf(v, sizeof(v), "%lld", (long long)us);
		len +=
		    (size_t)snprintf(out + len, outlen - len, ", \"%s_us\": %s",
				     timings_name((enum timing_mark)m), v);
	}
	if (len < outlen)
		snprintf(out + len, outlen - len, " }");
}

static enum MHD_Result api_handle_status(struct api_server *s,
					 struct MHD_Connection *c,
					 const struct api_request *req)
{
	struct vm_status st = { 0 };
	char err[API_ERR_MAX] = "";
	char last_pause[24] = "null";
	char snapshot[80] = "null";
	char migration[320] = "null";
	char postcopy[320] = "null";
	char timings[640];
	char last[160] = "null";
	char body[1856];

	if (api_parse_empty_request(req->body, req->len, err, sizeof(err)))
		return api_reply_error(c, MHD_HTTP_BAD_REQUEST, NULL, "%s",
				       err);
	s->ops->status(s->ctx, &st);
	if (st.last_pause_ns)
		snprintf(last_pause, sizeof(last_pause), "%llu",
			 (unsigned long long)(st.last_pause_ns / 1000));
	if (st.snapshot_active)
		snprintf(snapshot, sizeof(snapshot),
			 "{ \"done_bytes\": %llu, \"total_bytes\": %llu }",
			 (unsigned long long)st.snapshot_done_bytes,
			 (unsigned long long)st.snapshot_total_bytes);
	if (st.migration_state)
		snprintf(migration, sizeof(migration),
			 "{ \"state\": \"%s\", \"rounds\": %llu, "
			 "\"bytes_sent\": %llu, \"dirty_rate\": %llu, "
			 "\"link_rate\": %llu, \"expected_downtime_ms\": %llu, "
			 "\"throttle_percent\": %u }",
			 st.migration_state,
			 (unsigned long long)st.migration_rounds,
			 (unsigned long long)st.migration_bytes_sent,
			 (unsigned long long)st.migration_dirty_rate,
			 (unsigned long long)st.migration_link_rate,
			 (unsigned long long)st.migration_expected_downtime_ms,
			 st.migration_throttle_pct);
	if (st.postcopy.on)
		snprintf(
		    postcopy, sizeof(postcopy),
		    "{ \"state\": \"%s\", \"faults\": %llu, "
		    "\"blocked_total_us\": %llu, \"blocked_p50_us\": %llu, "
		    "\"blocked_p99_us\": %llu, \"blocked_max_us\": %llu, "
		    "\"chunks_left\": %llu }",
		    st.postcopy.done ? "done" : "running",
		    (unsigned long long)st.postcopy.faults,
		    (unsigned long long)st.postcopy.blocked_total_us,
		    (unsigned long long)st.postcopy.blocked_p50_us,
		    (unsigned long long)st.postcopy.blocked_p99_us,
		    (unsigned long long)st.postcopy.blocked_max_us,
		    (unsigned long long)st.postcopy.chunks_left);
	api_format_timings(st.timings, timings, sizeof(timings));
	if (st.have_last_snapshot)
		snprintf(
		    last, sizeof(last),
		    "{ \"live\": %s, \"pause_us\": %llu, "
		    "\"total_ms\": %llu, \"extra_bytes\": %llu }",
		    st.last_snapshot.live ? "true" : "false",
		    (unsigned long long)(st.last_snapshot.pause_ns / 1000),
		    (unsigned long long)(st.last_snapshot.total_ns / 1000000),
		    (unsigned long long)st.last_snapshot.extra_bytes);
	/* Only numbers and fixed words: no escaping needed. */
	snprintf(body, sizeof(body),
		 "{ \"state\": \"%s\", \"vcpus\": %u, \"memory_bytes\": %llu, "
		 "\"uptime_ms\": %llu, \"last_pause_us\": %s, "
		 "\"snapshot\": %s, \"migration\": %s, \"postcopy\": %s, "
		 "\"timings\": %s, \"last_snapshot\": %s }\n",
		 st.waiting  ? "waiting"
		 : st.paused ? "paused"
			     : "running",
		 st.ncpus, (unsigned long long)st.mem_size,
		 (unsigned long long)(st.uptime_ns / 1000000), last_pause,
		 snapshot, migration, postcopy, timings, last);
	return api_reply(c, MHD_HTTP_OK, body, NULL);
}

static enum MHD_Result
api_handle_action(struct MHD_Connection *c, const struct api_request *req,
		  int (*op)(void *ctx, char *err, size_t errlen), void *ctx,
		  const char *what, unsigned ok_status)
{
	char err[API_ERR_MAX] = "";
	int ret;

	if (api_parse_empty_request(req->body, req->len, err, sizeof(err)))
		return api_reply_error(c, MHD_HTTP_BAD_REQUEST, NULL, "%s",
				       err);
	ret = op(ctx, err, sizeof(err));
	if (ret)
		return api_reply_op_error(c, ret, what, err, sizeof(err));
	return api_reply(c, ok_status, NULL, NULL);
}

static enum MHD_Result api_handle_pause(struct api_server *s,
					struct MHD_Connection *c,
					const struct api_request *req)
{
	return api_handle_action(c, req, s->ops->pause, s->ctx, "pause",
				 MHD_HTTP_NO_CONTENT);
}

static enum MHD_Result api_handle_resume(struct api_server *s,
					 struct MHD_Connection *c,
					 const struct api_request *req)
{
	return api_handle_action(c, req, s->ops->resume, s->ctx, "resume",
				 MHD_HTTP_NO_CONTENT);
}

/* 202: the VM has been asked to stop and will do so after this reply. */
static enum MHD_Result api_handle_shutdown(struct api_server *s,
					   struct MHD_Connection *c,
					   const struct api_request *req)
{
	return api_handle_action(c, req, s->ops->shutdown, s->ctx, "shutdown",
				 MHD_HTTP_ACCEPTED);
}

/* PUT /vm/snapshot's reply: what was written and what it cost. */
static enum MHD_Result api_reply_snapshot(struct MHD_Connection *c,
					  const char *path, const char *base,
					  enum vm_then then,
					  const struct snap_compress *compress,
					  const struct snapshot_stats *st)
{
	struct json_object *obj = json_object_new_object();
	char name[16];

	snap_compress_format(compress, name, sizeof(name));
	if (!obj ||
	    json_object_object_add(obj, "path", json_object_new_string(path)) ||
	    json_object_object_add(
		obj, "then", json_object_new_string(api_then_names[then])) ||
	    json_object_object_add(obj, "compress",
				   json_object_new_string(name)) ||
	    json_object_object_add(obj, "base", json_object_new_string(base)) ||
	    json_object_object_add(obj, "live",
				   json_object_new_boolean(st->live)) ||
	    json_object_object_add(
		obj, "pause_us",
		json_object_new_int64((int64_t)(st->pause_ns / 1000))) ||
	    json_object_object_add(
		obj, "total_ms",
		json_object_new_int64((int64_t)(st->total_ns / 1000000))) ||
	    json_object_object_add(
		obj, "extra_bytes",
		json_object_new_int64((int64_t)st->extra_bytes))) {
		json_object_put(obj);
		obj = NULL;
	}
	return api_reply_object(c, MHD_HTTP_OK, NULL, obj);
}

/* 204: the recording has ended and its file is written. */
static enum MHD_Result api_handle_working_set(struct api_server *s,
					      struct MHD_Connection *c,
					      const struct api_request *req)
{
	return api_handle_action(c, req, s->ops->working_set, s->ctx,
				 "working set", MHD_HTTP_NO_CONTENT);
}

static enum MHD_Result api_handle_snapshot(struct api_server *s,
					   struct MHD_Connection *c,
					   const struct api_request *req)
{
	char err[API_ERR_MAX] = "";
	struct snapshot_stats stats = { 0 };
	struct snap_compress compress;
	enum vm_then then;
	enum MHD_Result mret;
	bool live;
	char *path, *base;
	int ret;

	path = malloc(2 * PATH_MAX);
	if (!path)
		return api_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				 API_NOMEM_BODY, NULL);
	base = path + PATH_MAX;
	ret = api_parse_snapshot_request(req->body, req->len, path, PATH_MAX,
					 base, &then, &compress, &live, err,
					 sizeof(err));
	if (ret) {
		mret = api_reply_bad_body(c, ret, err);
		goto out;
	}
	/* A snapshot may run for minutes with the socket silent; the idle
	 * timeout must not cut the connection before the reply. */
	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0U);
	ret = s->ops->snapshot(s->ctx, path, base[0] ? base : NULL, then,
			       &compress, live, &stats, err, sizeof(err));
	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
				  (unsigned)API_IDLE_TIMEOUT_S);
	if (ret) {
		mret = api_reply_op_error(c, ret, "snapshot", err, sizeof(err));
		goto out;
	}
	mret = api_reply_snapshot(c, path, base, then, &compress, &stats);
out:
	free(path);
	return mret;
}

/* 200 once the snapshot is restored and about to run; 400 for a bad
 * request or a snapshot this target cannot take (the target waits on);
 * 409 when this is no waiting target, or it has restored already. */
static enum MHD_Result api_handle_restore(struct api_server *s,
					  struct MHD_Connection *c,
					  const struct api_request *req)
{
	char err[API_ERR_MAX] = "";
	struct api_restore r;
	const char *kv[6];
	enum MHD_Result mret;
	char *path;
	int ret;

	if (!s->ops->restore)
		return api_reply_error(c, MHD_HTTP_CONFLICT, NULL,
				       "this VM is running already (PUT "
				       "/vm/restore is for stasis restore "
				       "--wait)");
	path = malloc(PATH_MAX);
	if (!path)
		return api_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				 API_NOMEM_BODY, NULL);
	ret = api_parse_restore_request(req->body, req->len, path, PATH_MAX, &r,
					err, sizeof(err));
	if (ret) {
		mret = api_reply_bad_body(c, ret, err);
		goto out;
	}
	/* A copy restore of a large guest reads for a while. */
	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0U);
	ret = s->ops->restore(s->ctx, &r, err, sizeof(err));
	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
				  (unsigned)API_IDLE_TIMEOUT_S);
	if (ret) {
		mret = api_reply_op_error(c, ret, "restore", err, sizeof(err));
		goto out;
	}
	kv[0] = "path";
	kv[1] = path;
	kv[2] = "memory";
	kv[3] = api_memory_name(r.memory);
	kv[4] = "state";
	kv[5] = r.paused ? "paused" : "running";
	mret = api_reply_strings(c, MHD_HTTP_OK, NULL, kv, 6);
out:
	free(path);
	return mret;
}

/* The reply's "postcopy": null, or what the destination reported. */
static int api_add_postcopy(struct json_object *obj,
			    const struct migrate_result *res)
{
	static const char *const names[] = { "faults", "blocked_total_us",
					     "blocked_p50_us", "blocked_p99_us",
					     "blocked_max_us" };
	const uint64_t v[] = { res->pc.faults, res->pc.blocked_total_us,
			       res->pc.blocked_p50_us, res->pc.blocked_p99_us,
			       res->pc.blocked_max_us };
	struct json_object *pc;

	if (!res->postcopy)
		return json_object_object_add(obj, "postcopy", NULL);
	pc = json_object_new_object();
	if (!pc)
		return -1;
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++)
		if (json_object_object_add(
			pc, names[i], json_object_new_int64((int64_t)v[i])))
			return json_object_put(pc), -1;
	return json_object_object_add(obj, "postcopy", pc);
}

static enum MHD_Result api_handle_migrate(struct api_server *s,
					  struct MHD_Connection *c,
					  const struct api_request *req)
{
	char err[API_ERR_MAX] = "";
	struct migrate_result res;
	struct migrate_opts o;
	struct json_object *obj;
	int ret;

	ret = api_parse_migrate_request(req->body, req->len, &o, err,
					sizeof(err));
	if (ret)
		return api_reply_bad_body(c, ret, err);
	if (!s->ops->migrate)
		return api_reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
				       "migration is not available here");
	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0U);
	ret = s->ops->migrate(s->ctx, &o, &res, err, sizeof(err));
	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
				  (unsigned)API_IDLE_TIMEOUT_S);
	if (ret)
		return api_reply_op_error(c, ret, "migration", err,
					  sizeof(err));
	/* The destination is the client's text: json-c escapes it. */
	obj = json_object_new_object();
	if (obj && (json_object_object_add(obj, "destination",
					   json_object_new_string(o.dest)) ||
		    json_object_object_add(
			obj, "bytes_sent",
			json_object_new_int64((int64_t)res.bytes_sent)) ||
		    json_object_object_add(
			obj, "total_ms",
			json_object_new_int64((int64_t)res.total_ms)) ||
		    json_object_object_add(
			obj, "downtime_ms",
			json_object_new_int64((int64_t)res.downtime_ms)) ||
		    json_object_object_add(obj, "rounds",
					   json_object_new_int64(res.rounds)) ||
		    api_add_postcopy(obj, &res))) {
		json_object_put(obj);
		obj = NULL;
	}
	/* Auto-converge's last step, 0 when it did not throttle. */
	if (obj &&
	    json_object_object_add(obj, "throttle_percent",
				   json_object_new_int64(res.throttle_pct))) {
		json_object_put(obj);
		obj = NULL;
	}
	return api_reply_object(c, MHD_HTTP_OK, NULL, obj);
}

const unsigned api_common_statuses[] = {
	MHD_HTTP_FORBIDDEN,
	MHD_HTTP_METHOD_NOT_ALLOWED,
	MHD_HTTP_CONTENT_TOO_LARGE,
	MHD_HTTP_INTERNAL_SERVER_ERROR,
	0,
};

static const unsigned api_status_statuses[] = { MHD_HTTP_OK,
						MHD_HTTP_BAD_REQUEST, 0 };
/* 409: already paused (running), or a snapshot is being written. */
static const unsigned api_pause_statuses[] = { MHD_HTTP_NO_CONTENT,
					       MHD_HTTP_BAD_REQUEST,
					       MHD_HTTP_CONFLICT, 0 };
static const unsigned api_shutdown_statuses[] = { MHD_HTTP_ACCEPTED,
						  MHD_HTTP_BAD_REQUEST, 0 };
/* 409: no recording runs. */
static const unsigned api_working_set_statuses[] = { MHD_HTTP_NO_CONTENT,
						     MHD_HTTP_BAD_REQUEST,
						     MHD_HTTP_CONFLICT, 0 };
static const unsigned api_snapshot_statuses[] = {
	MHD_HTTP_OK, MHD_HTTP_BAD_REQUEST, MHD_HTTP_CONFLICT,
	MHD_HTTP_INSUFFICIENT_STORAGE, 0
};
static const char *const api_status_fields[] = {
	"state",
	"vcpus",
	"memory_bytes",
	"uptime_ms",
	"last_pause_us",
	"snapshot",
	"snapshot.done_bytes",
	"snapshot.total_bytes",
	"migration",
	"migration.state",
	"migration.rounds",
	"migration.bytes_sent",
	"migration.dirty_rate",
	"migration.link_rate",
	"migration.expected_downtime_ms",
	"migration.throttle_percent",
	"postcopy",
	"postcopy.state",
	"postcopy.faults",
	"postcopy.blocked_total_us",
	"postcopy.blocked_p50_us",
	"postcopy.blocked_p99_us",
	"postcopy.blocked_max_us",
	"postcopy.chunks_left",
	"timings",
	"timings.exec_source",
	"timings.main_us",
	"timings.kvm_us",
	"timings.memory_us",
	"timings.vcpus_us",
	"timings.request_us",
	"timings.file_us",
	"timings.machine_us",
	"timings.state_us",
	"timings.devices_us",
	"timings.first_run_us",
	"timings.first_exit_us",
	"last_snapshot",
	"last_snapshot.live",
	"last_snapshot.pause_us",
	"last_snapshot.total_ms",
	"last_snapshot.extra_bytes",
	NULL
};
static const unsigned api_migrate_statuses[] = { MHD_HTTP_OK,
						 MHD_HTTP_BAD_REQUEST,
						 MHD_HTTP_CONFLICT, 0 };
static const char *const api_migrate_keys[] = {
	"destination", "insecure",    "tls_dir",  "timeout_s",
	"downtime_ms", "connections", "compress", "auto_converge",
	"postcopy",    "on_timeout",  NULL
};
static const char *const api_migrate_required[] = { "destination", NULL };
static const char *const api_migrate_fields[] = { "destination",
						  "bytes_sent",
						  "total_ms",
						  "downtime_ms",
						  "rounds",
						  "throttle_percent",
						  "postcopy",
						  "postcopy.faults",
						  "postcopy.blocked_total_us",
						  "postcopy.blocked_p50_us",
						  "postcopy.blocked_p99_us",
						  "postcopy.blocked_max_us",
						  NULL };
static const char *const api_snapshot_keys[] = { "path", "then", "compress",
						 "live", "base", NULL };
static const char *const api_snapshot_fields[] = {
	"path",	    "then",	"compress",    "live", "base",
	"pause_us", "total_ms", "extra_bytes", NULL
};
static const char *const api_snapshot_required[] = { "path", NULL };
static const unsigned api_restore_statuses[] = { MHD_HTTP_OK,
						 MHD_HTTP_BAD_REQUEST,
						 MHD_HTTP_CONFLICT, 0 };
static const char *const api_restore_keys[] = { "path", "memory", "clock",
						"paused", NULL };
static const char *const api_restore_fields[] = { "path", "memory", "state",
						  NULL };

static const struct api_route api_routes[] = {
	{ { "/vm", MHD_HTTP_METHOD_GET, api_status_statuses, NULL, NULL,
	    api_status_fields },
	  api_handle_status },
	{ { "/vm/pause", MHD_HTTP_METHOD_PUT, api_pause_statuses, NULL, NULL,
	    NULL },
	  api_handle_pause },
	{ { "/vm/resume", MHD_HTTP_METHOD_PUT, api_pause_statuses, NULL, NULL,
	    NULL },
	  api_handle_resume },
	{ { "/vm/shutdown", MHD_HTTP_METHOD_PUT, api_shutdown_statuses, NULL,
	    NULL, NULL },
	  api_handle_shutdown },
	{ { "/vm/snapshot", MHD_HTTP_METHOD_PUT, api_snapshot_statuses,
	    api_snapshot_keys, api_snapshot_required, api_snapshot_fields },
	  api_handle_snapshot },
	{ { "/vm/migrate", MHD_HTTP_METHOD_PUT, api_migrate_statuses,
	    api_migrate_keys, api_migrate_required, api_migrate_fields },
	  api_handle_migrate },
	{ { "/vm/restore", MHD_HTTP_METHOD_PUT, api_restore_statuses,
	    api_restore_keys, api_snapshot_required, api_restore_fields },
	  api_handle_restore },
	{ { "/vm/working-set", MHD_HTTP_METHOD_PUT, api_working_set_statuses,
	    NULL, NULL, NULL },
	  api_handle_working_set },
};

#define API_NROUTES (sizeof(api_routes) / sizeof(*api_routes))

const struct api_endpoint *api_endpoint_get(size_t i)
{
	return i < API_NROUTES ? &api_routes[i].ep : NULL;
}

static const struct api_route *api_find_route(const char *url)
{
	size_t i;

	for (i = 0; i < API_NROUTES; i++) {
		if (!strcmp(url, api_routes[i].ep.url))
			return &api_routes[i];
	}
	return NULL;
}

/* Root, or the uid stasis runs as; the 0600 socket mode already keeps
 * others out, this holds even if someone loosens the mode. */
static int api_check_peer(const struct api_server *s, struct MHD_Connection *c,
			  char *err, size_t errlen)
{
	const union MHD_ConnectionInfo *info;
	struct ucred cred;
	socklen_t len = sizeof(cred);

	info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!info ||
	    getsockopt(info->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred,
		       &len) ||
	    len != sizeof(cred)) {
		snprintf(err, errlen, "cannot identify the client");
		return -EACCES;
	}
	if (cred.uid != 0 && cred.uid != s->uid) {
		snprintf(err, errlen,
			 "permission denied: uid %u is neither root nor the "
			 "owner of this VM",
			 (unsigned)cred.uid);
		return -EACCES;
	}
	return 0;
}

/* First callback of a request: headers are in, the body is not. Anything
 * refused here is answered before the body is read. */
static enum MHD_Result api_begin(struct api_server *s, struct MHD_Connection *c,
				 const char *url, const char *method,
				 void **con_cls)
{
	const struct api_route *route;
	struct api_request *req;
	char err[API_ERR_MAX];
	char q[API_QUOTE_MAX + 4];
	const char *clen;
	char *end;
	unsigned long long n;

	req = calloc(1, sizeof(*req));
	if (!req)
		return MHD_NO;
	*con_cls = req;
	pthread_mutex_lock(&s->lock);
	s->active++;
	pthread_mutex_unlock(&s->lock);

	req->answered = true;
	if (api_check_peer(s, c, err, sizeof(err)))
		return api_reply_error(c, MHD_HTTP_FORBIDDEN, NULL, "%s", err);
	route = api_find_route(url);
	if (!route) {
		text_escape(q, sizeof(q), url, strlen(url));
		return api_reply_error(c, API_STATUS_NO_ENDPOINT, NULL,
				       "no such endpoint: %s", q);
	}
	if (strcmp(method, route->ep.method)) {
		text_escape(q, sizeof(q), method, strlen(method));
		return api_reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
				       route->ep.method,
				       "method %s not allowed on %s (use %s)",
				       q, route->ep.url, route->ep.method);
	}
	/* Only an early refusal for honest clients; the body is capped as
	 * it arrives whatever this header says. */
	clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					   MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (clen) {
		errno = 0;
		n = strtoull(clen, &end, 10);
		if (!errno && end != clen && n > API_BODY_MAX)
			return api_reply_error(
			    c, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
			    "request body is larger than %d bytes",
			    API_BODY_MAX);
	}
	req->route = route;
	req->answered = false;
	return MHD_YES;
}

static void api_append_body(struct api_request *req, const char *data, size_t n)
{
	char *body;

	if (req->too_large || req->nomem)
		return;
	if (n > API_BODY_MAX - req->len) {
		req->too_large = true;
		return;
	}
	body = realloc(req->body, req->len + n + 1);
	if (!body) {
		req->nomem = true;
		return;
	}
	memcpy(body + req->len, data, n);
	req->len += n;
	body[req->len] = '\0';
	req->body = body;
}

static enum MHD_Result api_access(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct api_server *s = cls;
	struct api_request *req = *con_cls;

	if (!req)
		return api_begin(s, c, url, method, con_cls);
	if (*upload_data_size) {
		if (!req->answered)
			api_append_body(req, upload_data, *upload_data_size);
		req->received += *upload_data_size;
		*upload_data_size = 0;
		/* MHD cannot reply before the body ends; a client streaming
		 * far past the limit is cut off instead of drained forever. */
		return req->received > API_DRAIN_MAX ? MHD_NO : MHD_YES;
	}
	if (req->answered)
		return MHD_YES;
	req->answered = true;
	if (req->too_large)
		return api_reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
				       "request body is larger than %d bytes",
				       API_BODY_MAX);
	if (req->nomem)
		return api_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				 API_NOMEM_BODY, NULL);
	return req->route->handle(s, c, req);
}

static void api_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			  enum MHD_RequestTerminationCode toe)
{
	struct api_server *s = cls;
	struct api_request *req = *con_cls;

	if (!req)
		return;
	*con_cls = NULL;
	free(req->body);
	free(req);
	pthread_mutex_lock(&s->lock);
	if (!--s->active)
		pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->lock);
}

/* umask rather than only a chmod afterwards, so the socket never exists
 * with looser permissions. umask is process-wide: the server is started
 * before stasis creates other threads that make files. */
static int api_bind(int fd, const struct sockaddr_un *addr)
{
	mode_t old = umask(0177);
	int ret = 0;

	if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)))
		ret = -errno;
	umask(old);
	return ret;
}

/* Removes the socket file at @addr only if it is a socket nobody listens
 * on (connect() refused): a crashed stasis leaves one behind. */
static int api_remove_stale(const struct sockaddr_un *addr, char *err,
			    size_t errlen)
{
	const char *path = addr->sun_path;
	int ret = unix_socket_clear_stale(path, SOCK_STREAM);

	if (ret == -EEXIST)
		snprintf(err, errlen,
			 "api socket %s exists and is not a socket", path);
	else if (ret == -EADDRINUSE)
		snprintf(err, errlen, "api socket %s is in use", path);
	else if (ret)
		snprintf(err, errlen, "cannot clear stale api socket %s: %s",
			 path, strerror(-ret));
	return ret;
}

/* Creates the listening socket at @path with mode 0600 and records its
 * identity in @s. Returns the fd or -errno. */
static int api_listen(struct api_server *s, const char *path, char *err,
		      size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	struct stat st;
	int fd, ret;

	if (!len) {
		snprintf(err, errlen, "api socket path is empty");
		return -EINVAL;
	}
	if (len >= sizeof(addr.sun_path)) {
		snprintf(err, errlen,
			 "api socket path %s is longer than %zu bytes", path,
			 sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, path, len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create api socket: %s",
			 strerror(-ret));
		return ret;
	}
	ret = api_bind(fd, &addr);
	if (ret == -EADDRINUSE) {
		err[0] = '\0';
		ret = api_remove_stale(&addr, err, errlen);
		if (ret && err[0])
			goto err_close;
		if (!ret)
			ret = api_bind(fd, &addr);
	}
	if (ret) {
		snprintf(err, errlen, "cannot bind api socket %s: %s",
			 addr.sun_path, strerror(-ret));
		goto err_close;
	}
	if (chmod(addr.sun_path, 0600) || lstat(addr.sun_path, &st) ||
	    listen(fd, API_BACKLOG)) {
		ret = -errno;
		snprintf(err, errlen, "cannot set up api socket %s: %s",
			 addr.sun_path, strerror(-ret));
		goto err_unlink;
	}
	s->sock_dev = st.st_dev;
	s->sock_ino = st.st_ino;
	return fd;

err_unlink:
	unlink(addr.sun_path);
err_close:
	close(fd);
	return ret;
}

static void api_unlink_own(const struct api_server *s)
{
	struct stat st;

	if (!lstat(s->socket_path, &st) && st.st_dev == s->sock_dev &&
	    st.st_ino == s->sock_ino)
		unlink(s->socket_path);
}

/* Starts the daemon on listening socket @fd; NULL on failure. */
static struct MHD_Daemon *api_daemon_start(struct api_server *s, int fd)
{
	return MHD_start_daemon(
	    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
		MHD_USE_POLL | MHD_USE_ITC,
	    0, NULL, NULL, api_access, s, MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_MAX_CONNECTIONS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_IDLE_TIMEOUT_S,
	    MHD_OPTION_NOTIFY_COMPLETED, api_completed, s, MHD_OPTION_END);
}

struct api_launch {
	struct api_server *s;
	int fd;
	int ret;
};

static void *api_launch_main(void *arg)
{
	struct api_launch *l = arg;

	l->ret = l->s->ops->thread_init(l->s->ctx);
	if (!l->ret)
		l->s->mhd = api_daemon_start(l->s, l->fd);
	return NULL;
}

/* With ops->thread_init, the daemon is started from a short-lived thread
 * that runs it first: the daemon's threads are made by (and inherit from)
 * the thread that starts it, and the caller's own thread must stay as it
 * is. */
static int api_daemon_launch(struct api_server *s, int fd)
{
	struct api_launch l = { .s = s, .fd = fd, .ret = 0 };
	pthread_t t;
	int ret;

	if (!s->ops->thread_init) {
		s->mhd = api_daemon_start(s, fd);
		return 0;
	}
	ret = pthread_create(&t, NULL, api_launch_main, &l);
	if (ret)
		return -ret;
	pthread_join(t, NULL);
	return l.ret;
}

int api_server_start(struct api_server **out, const char *socket_path,
		     const struct api_ops *ops, void *ctx, char *err,
		     size_t errlen)
{
	struct api_server *s;
	pthread_condattr_t attr;
	int fd, ret;

	if (!ops || !ops->pause || !ops->resume || !ops->snapshot ||
	    !ops->shutdown || !ops->status || !socket_path) {
		snprintf(err, errlen, "api server: missing callbacks");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto err_nomem;
	s->socket_path = strdup(socket_path);
	if (!s->socket_path)
		goto err_free;
	s->ops = ops;
	s->ctx = ctx;
	pthread_mutex_init(&s->lock, NULL);
	/* Monotonic, so the stop grace period ignores clock changes. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->idle, &attr);
	pthread_condattr_destroy(&attr);

	fd = api_listen(s, socket_path, err, errlen);
	if (fd < 0) {
		ret = fd;
		goto err_sync;
	}
	if (ops->listening) {
		ret = ops->listening(ctx, err, errlen);
		if (ret) {
			close(fd);
			goto err_unlink;
		}
	}
	/* Who we are from now on, which may not be who bound the socket. */
	s->uid = geteuid();
	ret = api_daemon_launch(s, fd);
	if (ret) {
		close(fd);
		snprintf(err, errlen,
			 "cannot start the api server on %s: its threads' "
			 "set-up failed: %s",
			 socket_path, strerror(-ret));
		goto err_unlink;
	}
	if (!s->mhd) {
		/* MHD may already have closed @fd; leaking it on this fatal
		 * path beats closing a descriptor someone else now owns. */
		ret = -EIO;
		snprintf(err, errlen, "cannot start the api server on %s",
			 socket_path);
		goto err_unlink;
	}
	*out = s;
	return 0;

err_unlink:
	api_unlink_own(s);
err_sync:
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->lock);
	free(s->socket_path);
	free(s);
	return ret;
err_free:
	free(s);
err_nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

void api_server_stop(struct api_server *s)
{
	struct timespec deadline;
	int fd;

	if (!s)
		return;
	/* Unlink first so no new client finds us while we drain. */
	api_unlink_own(s);
	fd = MHD_quiesce_daemon(s->mhd);
	if (fd >= 0)
		close(fd);
	/* Let replies already being computed reach their clients (a
	 * snapshot with "then": "exit" answers, then stasis stops). */
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += API_STOP_GRACE_S;
	pthread_mutex_lock(&s->lock);
	while (s->active && pthread_cond_timedwait(&s->idle, &s->lock,
						   &deadline) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&s->lock);
	MHD_stop_daemon(s->mhd);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->lock);
	free(s->socket_path);
	free(s);
}
