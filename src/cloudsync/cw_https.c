/* cw_https.c - HTTPS JSON client on libcurl (see the header). */
#include "cw_https.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cw_error.h"
#include "cw_jwt.h"

struct cw_https {
	CURL *curl;
	char ca_file[512];
	bool insecure_http;
	long connect_ms, total_ms;
	size_t max_body;
	const atomic_bool *cancel;
	char errbuf[CURL_ERROR_SIZE];
	/* the socket of the connection in use, for cw_https_abort */
	pthread_mutex_t sock_mu;
	curl_socket_t sock;
};

struct sink {
	char *buf;
	size_t len, cap, max;
	bool too_big;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

/* curl_global_init is not thread-safe before 7.84; once per process. */
static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct sink *s = ud;
	size_t n = size * nmemb;

	if (n > s->max - s->len) {
		s->too_big = true;
		return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
	}
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		char *nb;
		while (cap < s->len + n + 1)
			cap *= 2;
		if (cap > s->max + 1)
			cap = s->max + 1;
		nb = realloc(s->buf, cap);
		if (!nb)
			return 0;
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, ptr, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	const struct cw_https *h = ud;

	return h->cancel && atomic_load(h->cancel) ? 1 : 0;
}

static curl_socket_t on_open(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct cw_https *h = ud;
	curl_socket_t fd;

	if (h->cancel && atomic_load(h->cancel))
		return CURL_SOCKET_BAD;
	fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	if (fd < 0)
		return CURL_SOCKET_BAD;
	pthread_mutex_lock(&h->sock_mu);
	h->sock = fd;
	pthread_mutex_unlock(&h->sock_mu);
	return fd;
}

/* closing under the mutex: cw_https_abort never shuts down a number that
 * has been reused for another file meanwhile */
static int on_close(void *ud, curl_socket_t fd)
{
	struct cw_https *h = ud;
	int rc;

	pthread_mutex_lock(&h->sock_mu);
	if (h->sock == fd)
		h->sock = CURL_SOCKET_BAD;
	rc = close(fd);
	pthread_mutex_unlock(&h->sock_mu);
	return rc;
}

void cw_https_abort(struct cw_https *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->sock_mu);
	if (h->sock != CURL_SOCKET_BAD)
		shutdown(h->sock, SHUT_RDWR);
	pthread_mutex_unlock(&h->sock_mu);
}

int cw_https_new(const struct cw_https_config *cfg, struct cw_https **out)
{
	struct cw_https *h;

	*out = NULL;
	if (!cfg)
		return CW_ERR_INVAL;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return CW_ERR_IO;
	if (cfg->ca_file && strlen(cfg->ca_file) >= sizeof(h->ca_file))
		return CW_ERR_TOOBIG;
	h = calloc(1, sizeof(*h));
	if (!h)
		return CW_ERR_NOMEM;
	h->curl = curl_easy_init();
	if (!h->curl) {
		free(h);
		return CW_ERR_NOMEM;
	}
	snprintf(h->ca_file, sizeof(h->ca_file), "%s", cfg->ca_file ? cfg->ca_file : "");
	h->insecure_http = cfg->insecure_http;
	h->connect_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 5000;
	h->total_ms = cfg->total_timeout_ms > 0 ? cfg->total_timeout_ms : 30000;
	h->max_body = cfg->max_body ? cfg->max_body : CW_HTTPS_BODY_MAX;
	h->cancel = cfg->cancel;
	h->sock = CURL_SOCKET_BAD;
	pthread_mutex_init(&h->sock_mu, NULL);
	*out = h;
	return CW_OK;
}

void cw_https_free(struct cw_https *h)
{
	if (!h)
		return;
	curl_easy_cleanup(h->curl);
	pthread_mutex_destroy(&h->sock_mu);
	free(h);
}

void cw_https_resp_clear(struct cw_https_resp *resp)
{
	if (!resp)
		return;
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}

static int map_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return CW_ERR_OFFLINE;
	case CURLE_OPERATION_TIMEDOUT:
		return CW_ERR_TIMEOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
		return CW_ERR_AUTH;
	case CURLE_ABORTED_BY_CALLBACK:
		return CW_ERR_AGAIN;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return CW_ERR_CONFIG;
	default:
		return CW_ERR_IO;
	}
}

static int request(struct cw_https *h, const char *method, const char *url, const char *bearer,
		   const char *content_type, const char *body, size_t body_len,
		   struct cw_https_resp *resp)
{
	/* "Authorization: Bearer " + a token of at most CW_JWT_MAX_LEN */
	char auth[CW_JWT_MAX_LEN + 32];
	struct curl_slist *hdrs = NULL, *t;
	struct sink sink = {.max = h ? h->max_body : 0};
	CURL *c;
	CURLcode cc;
	int rc = CW_ERR_NOMEM;
	bool post;

	if (!resp)
		return CW_ERR_INVAL;
	memset(resp, 0, sizeof(*resp));
	if (!h || !method || !url)
		return CW_ERR_INVAL;
	post = strcmp(method, "POST") == 0;
	if (!post && strcmp(method, "GET") != 0)
		return CW_ERR_INVAL;
	if (strncmp(url, "https://", 8) != 0 &&
	    !(h->insecure_http && strncmp(url, "http://", 7) == 0)) {
		snprintf(resp->err, sizeof(resp->err), "URL scheme not allowed");
		return CW_ERR_CONFIG;
	}
	if (bearer && strlen(bearer) > CW_JWT_MAX_LEN) {
		snprintf(resp->err, sizeof(resp->err), "token too long");
		return CW_ERR_TOOBIG;
	}
	c = h->curl;
	curl_easy_reset(c); /* keeps the connection cache (keep-alive) */
	h->errbuf[0] = '\0';

	t = curl_slist_append(hdrs, strcmp(content_type, "application/json") == 0
					    ? "Accept: application/json"
					    : "Accept: */*");
	if (!t)
		goto out;
	hdrs = t;
	if (post) {
		char ct[128];
		snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
		if (!(t = curl_slist_append(hdrs, ct)))
			goto out;
		hdrs = t;
		/* no "Expect: 100-continue" round trip before large batches */
		if (!(t = curl_slist_append(hdrs, "Expect:")))
			goto out;
		hdrs = t;
	}
	if (bearer) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
		t = curl_slist_append(hdrs, auth);
		sodium_memzero(auth, sizeof(auth));
		if (!t)
			goto out;
		hdrs = t;
	}

	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, h->insecure_http ? "http,https" : "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_file[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->total_ms);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "cartwise-edge");
	curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, h);
	curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, on_close);
	curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, h);
	if (post) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
	} else {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}

	cc = curl_easy_perform(c);
	/* the header list holds the token: drop it from curl's handle now */
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	if (cc != CURLE_OK) {
		if (sink.too_big) {
			rc = CW_ERR_TOOBIG;
			snprintf(resp->err, sizeof(resp->err), "response body over %zu bytes",
				 h->max_body);
		} else {
			rc = map_curl(cc);
			snprintf(resp->err, sizeof(resp->err), "%.120s",
				 h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc));
		}
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	resp->body = sink.buf;
	resp->len = sink.len;
	sink.buf = NULL;
	rc = CW_OK;
out:
	for (t = hdrs; t; t = t->next)
		if (t->data)
			sodium_memzero(t->data, strlen(t->data));
	curl_slist_free_all(hdrs);
	free(sink.buf);
	return rc;
}

int cw_https_request(struct cw_https *h, const char *method, const char *url, const char *bearer,
		     const char *body, size_t body_len, struct cw_https_resp *resp)
{
	return request(h, method, url, bearer, "application/json", body, body_len, resp);
}

int cw_https_post(struct cw_https *h, const char *url, const char *bearer,
		  const char *content_type, const char *body, size_t body_len,
		  struct cw_https_resp *resp)
{
	if (!content_type || strlen(content_type) > 100 || strpbrk(content_type, "\r\n")) {
		if (resp)
			memset(resp, 0, sizeof(*resp));
		return CW_ERR_INVAL;
	}
	return request(h, "POST", url, bearer, content_type, body, body_len, resp);
}
