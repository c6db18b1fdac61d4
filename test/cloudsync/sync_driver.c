/* sync_driver - runs one cw_syncer with the fake in-memory source, for the
 * integration scripts (test/cloudsync/ scripts). It writes its state as JSON to
 * --status FILE every 100 ms (atomically) and on exit, and stops on SIGTERM
 * or SIGINT, on --seconds, or when --until is met; on stop it prints
 * "free_ms=N" (how long cw_syncer_free took) to stderr. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_fake_source.h"
#include "cw_log.h"
#include "cw_sync.h"

static void write_status(const char *path, struct cw_syncer *s, struct fake_source *f)
{
	struct cw_sync_status st;
	char tmp[600];
	FILE *out;
	cJSON *o;
	char *text;

	if (!path)
		return;
	cw_syncer_status(s, &st);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "state", cw_sync_state_name(st.state));
	cJSON_AddStringToObject(o, "device_id", st.device_id);
	cJSON_AddNumberToObject(o, "high_water", (double)st.high_water);
	cJSON_AddNumberToObject(o, "batches", (double)st.batches_sent);
	cJSON_AddNumberToObject(o, "entries", (double)st.entries_sent);
	cJSON_AddNumberToObject(o, "last_ok_wall_ms", (double)st.last_ok_wall_ms);
	cJSON_AddStringToObject(o, "last_error", st.last_error);
	cJSON_AddStringToObject(o, "mqtt", cw_sync_mqtt_state_name(st.mqtt));
	cJSON_AddNumberToObject(o, "mqtt_commands", (double)st.mqtt_commands);
	pthread_mutex_lock(&f->mu);
	cJSON_AddNumberToObject(o, "acked", (double)f->acked);
	cJSON_AddNumberToObject(o, "last_seq", (double)f->last_seq);
	cJSON_AddNumberToObject(o, "ack_regressions", (double)f->ack_regressions);
	cJSON_AddNumberToObject(o, "sent_calls", (double)f->sent_calls);
	cJSON_AddNumberToObject(o, "sent_regressions", (double)f->sent_regressions);
	cJSON_AddNumberToObject(o, "sent_upto", (double)f->sent_upto);
	cJSON_AddNumberToObject(o, "unsent_calls", (double)f->unsent_calls);
	cJSON_AddBoolToObject(o, "sync_stopped", st.sync_stopped);
	cJSON_AddNumberToObject(o, "refused_seq", (double)st.refused_seq);
	cJSON_AddStringToObject(o, "refused_code", st.refused_code);
	cJSON_AddNumberToObject(o, "commands", f->commands_run);
	cJSON_AddNumberToObject(o, "replays", f->commands_replayed);
	cJSON_AddNumberToObject(o, "server_time_calls", (double)f->server_time_calls);
	cJSON_AddNumberToObject(o, "server_wall_ms", (double)f->server_wall_ms);
	pthread_mutex_unlock(&f->mu);
	cJSON_AddNumberToObject(o, "errors", (double)cw_log_error_count());
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	out = fopen(tmp, "w");
	if (out && text) {
		fprintf(out, "%s\n", text);
		if (fclose(out) == 0)
			rename(tmp, path);
	} else if (out) {
		fclose(out);
	}
	cJSON_free(text);
}

static void usage(void)
{
	fprintf(stderr, "usage: sync_driver --url URL --data-dir DIR --branch-code B [--code C] "
			"[--mac M] [--ca-file F] [--insecure] [--heartbeat-s N] [--entries N] "
			"[--acked N] [--sent N] [--pad N] [--bad-first] [--batch-entries N] [--batch-bytes N] "
			"[--backoff-base-ms N] [--backoff-cap-ms N] [--add N --add-every-ms M "
			"--add-times K] [--seconds S] [--until drained|enrolled|command] [--status FILE] "
			"[--firmware VERSION]\n");
	exit(2);
}

static void copy(char *dst, size_t cap, const char *src)
{
	if (strlen(src) >= cap) {
		fprintf(stderr, "argument too long\n");
		exit(2);
	}
	snprintf(dst, cap, "%s", src);
}

/* The source's ack comes a moment before the syncer publishes that batch's
 * outcome (state, counters, a refused entry cleared): wait until its status
 * stops changing (two reads 20 ms apart agree; at most 2 s), so that the
 * status written at the end is the batch's, not the one before it. */
static void settle(struct cw_syncer *s)
{
	struct cw_sync_status a, b;
	int64_t until = cw_mono_ms() + 2000;

	cw_syncer_status(s, &a);
	while (cw_mono_ms() < until) {
		usleep(20 * 1000);
		cw_syncer_status(s, &b);
		if (a.state == b.state && a.batches_sent == b.batches_sent &&
		    a.entries_sent == b.entries_sent && a.refused_seq == b.refused_seq &&
		    a.sync_stopped == b.sync_stopped)
			return;
		a = b;
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"url", 1, 0, 'u'},          {"data-dir", 1, 0, 'd'},    {"branch-code", 1, 0, 'b'},
		{"code", 1, 0, 'c'},         {"mac", 1, 0, 'm'},         {"ca-file", 1, 0, 'a'},
		{"insecure", 0, 0, 'i'},     {"heartbeat-s", 1, 0, 'h'}, {"entries", 1, 0, 'n'},
		{"acked", 1, 0, 'k'},        {"sent", 1, 0, 'z'},        {"pad", 1, 0, 'p'},         {"bad-first", 0, 0, 'B'},
		{"batch-entries", 1, 0, 'e'}, {"batch-bytes", 1, 0, 'y'},
		{"backoff-base-ms", 1, 0, 'x'}, {"backoff-cap-ms", 1, 0, 'X'},
		{"add", 1, 0, 'A'},          {"add-every-ms", 1, 0, 'E'}, {"add-times", 1, 0, 'T'},
		{"seconds", 1, 0, 's'},      {"until", 1, 0, 'U'},       {"status", 1, 0, 'S'},
		{"firmware", 1, 0, 'F'},     {0, 0, 0, 0}};
	struct cw_sync_config cfg = {.heartbeat_s = 1};
	struct fake_source f;
	struct cw_sync_source src;
	struct cw_syncer *s = NULL;
	long long entries = 0, acked = 0, sent = 0, add = 0, add_every = 100, add_times = 0, seconds = 120;
	int pad = 16, opt, rc, sig;
	bool bad_first = false;
	const char *until = "", *status = NULL;
	sigset_t set;
	struct timespec ts = {0, 100 * 1000000L};
	int64_t start, next_add, t0;

	snprintf(cfg.firmware_version, sizeof(cfg.firmware_version), "test-1.2.3");
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'u': copy(cfg.url, sizeof(cfg.url), optarg); break;
		case 'd': copy(cfg.data_dir, sizeof(cfg.data_dir), optarg); break;
		case 'b': copy(cfg.branch_code, sizeof(cfg.branch_code), optarg); break;
		case 'c': copy(cfg.enrollment_code, sizeof(cfg.enrollment_code), optarg); break;
		case 'm': copy(cfg.mac_address, sizeof(cfg.mac_address), optarg); break;
		case 'a': copy(cfg.ca_file, sizeof(cfg.ca_file), optarg); break;
		case 'i': cfg.insecure_http = true; break;
		case 'h': cfg.heartbeat_s = (int)strtol(optarg, NULL, 10); break;
		case 'n': entries = strtoll(optarg, NULL, 10); break;
		case 'k': acked = strtoll(optarg, NULL, 10); break;
		case 'z': sent = strtoll(optarg, NULL, 10); break;
		case 'p': pad = (int)strtol(optarg, NULL, 10); break;
		case 'B': bad_first = true; break;
		case 'e': cfg.batch_max_entries = (int)strtol(optarg, NULL, 10); break;
		case 'y': cfg.batch_max_bytes = (size_t)strtoull(optarg, NULL, 10); break;
		case 'x': cfg.backoff_base_ms = (int)strtol(optarg, NULL, 10); break;
		case 'X': cfg.backoff_cap_ms = (int)strtol(optarg, NULL, 10); break;
		case 'A': add = strtoll(optarg, NULL, 10); break;
		case 'E': add_every = strtoll(optarg, NULL, 10); break;
		case 'T': add_times = strtoll(optarg, NULL, 10); break;
		case 's': seconds = strtoll(optarg, NULL, 10); break;
		case 'U': until = optarg; break;
		case 'S': status = optarg; break;
		case 'F': copy(cfg.firmware_version, sizeof(cfg.firmware_version), optarg); break;
		default: usage();
		}
	}
	if (!cfg.url[0] || !cfg.data_dir[0] || !cfg.branch_code[0])
		usage();
	snprintf(cfg.device_name, sizeof(cfg.device_name), "sync-driver");
	cw_log_set_level(CW_LOG_DEBUG);
	fake_init(&f, entries, pad);
	f.acked = acked;
	f.sent_upto = sent;
	f.bad_payload_at_first = bad_first;
	src = fake_table(&f);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	rc = cw_syncer_new(&cfg, &src, &s);
	if (rc != CW_OK) {
		fprintf(stderr, "cw_syncer_new: %s\n", cw_strerror(rc));
		return 1;
	}
	rc = cw_syncer_start(s);
	if (rc != CW_OK) {
		fprintf(stderr, "cw_syncer_start: %s\n", cw_strerror(rc));
		cw_syncer_free(s);
		return 1;
	}
	start = cw_mono_ms();
	next_add = start + add_every;
	for (;;) {
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (add_times > 0 && cw_mono_ms() >= next_add) {
			fake_add(&f, add);
			cw_syncer_notify(s);
			add_times--;
			next_add += add_every;
		}
		write_status(status, s, &f);
		if (cw_mono_ms() - start > seconds * 1000)
			break;
		if (strcmp(until, "drained") == 0 && add_times == 0 && fake_acked(&f) >= f.last_seq) {
			settle(s);
			break;
		}
		if (strcmp(until, "command") == 0 && fake_commands(&f) > 0)
			break;
		if (strcmp(until, "enrolled") == 0) {
			struct cw_sync_status st;
			cw_syncer_status(s, &st);
			pthread_mutex_lock(&f.mu);
			bool hb = f.server_time_calls > 0;
			pthread_mutex_unlock(&f.mu);
			if (st.device_id[0] && hb)
				break;
		}
	}
	write_status(status, s, &f);
	t0 = cw_mono_ms();
	cw_syncer_free(s);
	fprintf(stderr, "free_ms=%lld\n", (long long)(cw_mono_ms() - t0));
	return 0;
}
