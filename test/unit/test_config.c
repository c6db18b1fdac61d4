/* test_config.c - the edge configuration: defaults, auto-numbered carts, the
 * documented example, and every class of bad input naming its key. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_config.h"
#include "cw_error.h"
#include "cw_file.h"
#include "cw_testutil.h"

/* Test JSON is written with ' for readability; q() turns it into real JSON. */
static char *q(const char *s)
{
	char *o = strdup(s);
	ck_assert_ptr_nonnull(o);
	for (char *c = o; *c; c++) {
		if (*c == '\'')
			*c = '"';
	}
	return o;
}

#define HEAD                                                                                      \
	"'chain_id':'chain-1','branch_id':'b1','device_id':'d1','data_dir':'/tmp/cw',"              \
	"'api':{'admin_token':'0123456789abcdef'}"
#define BOARD(a, n) "{'address':" #a ",'locks':" #n "}"
#define BUS(name, port, proto, boards)                                                            \
	"{'name':'" name "','port':'" port "','protocol':'" proto "','boards':[" boards "]}"
#define MB1 BUS("bus0", "/dev/ttyUSB0", "modbus", BOARD(1, 16))

static struct cw_edge_config cfg; /* big: keep it off the stack */

static int parse_q(const char *text, char *err, size_t errlen)
{
	char *j = q(text);
	int rc = cw_edge_config_parse(j, strlen(j), &cfg, err, errlen);
	free(j);
	return rc;
}

START_TEST(minimal_gets_defaults)
{
	char err[512];

	ck_assert_int_eq(parse_q("{" HEAD ",'buses':[" MB1 "]}", err, sizeof(err)), CW_OK);
	ck_assert_str_eq(err, "");
	ck_assert_str_eq(cfg.chain_id, "chain-1");
	ck_assert_str_eq(cfg.branch_id, "b1");
	ck_assert_str_eq(cfg.device_id, "d1");
	ck_assert_str_eq(cfg.device_name, "d1"); /* defaults to device_id */
	ck_assert_str_eq(cfg.data_dir, "/tmp/cw");
	ck_assert_str_eq(cfg.log_level, "info");
	ck_assert_str_eq(cfg.api_bind, "127.0.0.1");
	ck_assert_int_eq(cfg.api_port, 8080);
	ck_assert_str_eq(cfg.admin_token, "0123456789abcdef");

	struct cw_rules r;
	cw_rules_defaults(&r);
	ck_assert_int_eq(cfg.rules.rental_minutes, r.rental_minutes);
	ck_assert_int_eq(cfg.rules.one_per_phone, r.one_per_phone);
	ck_assert_int_eq(cfg.rules.grace_minutes, r.grace_minutes);
	ck_assert_int_eq(cfg.rules.take_timeout_s, r.take_timeout_s);
	ck_assert_int_eq(cfg.rules.return_timeout_s, r.return_timeout_s);

	struct cw_bus_config d;
	cw_bus_config_defaults(&d);
	ck_assert_int_eq(cfg.nbuses, 1);
	ck_assert_str_eq(cfg.buses[0].name, "bus0");
	ck_assert_str_eq(cfg.buses[0].port, "/dev/ttyUSB0");
	ck_assert_int_eq(cfg.buses[0].protocol, CW_PROTO_MODBUS);
	ck_assert_int_eq(cfg.buses[0].baud, d.baud);
	ck_assert_int_eq(cfg.buses[0].parity, d.parity);
	ck_assert_int_eq(cfg.buses[0].response_timeout_ms, d.response_timeout_ms);
	ck_assert_int_eq(cfg.buses[0].retries, d.retries);
	ck_assert_int_eq(cfg.buses[0].inter_frame_gap_ms, d.inter_frame_gap_ms);
	ck_assert_int_eq(cfg.buses[0].poll_interval_ms, d.poll_interval_ms);
	ck_assert_int_eq(cfg.buses[0].confirm_timeout_ms, d.confirm_timeout_ms);
	ck_assert_int_eq(cfg.buses[0].offline_after, d.offline_after);
	ck_assert_int_eq(cfg.buses[0].offline_backoff_max_ms, d.offline_backoff_max_ms);

	struct cw_board_config bd;
	cw_board_config_defaults(&bd, 1, 16);
	ck_assert_int_eq(cfg.buses[0].nboards, 1);
	ck_assert_int_eq(cfg.buses[0].boards[0].address, 1);
	ck_assert_int_eq(cfg.buses[0].boards[0].locks, 16);
	ck_assert_int_eq(cfg.buses[0].boards[0].pulse_ms, bd.pulse_ms);
	ck_assert_int_eq(cfg.buses[0].boards[0].has_present_sensor, bd.has_present_sensor);
	ck_assert_int_eq(cfg.buses[0].boards[0].coil_base, bd.coil_base);
	ck_assert_int_eq(cfg.buses[0].boards[0].hook_input_base, bd.hook_input_base);
	ck_assert_int_eq(cfg.buses[0].boards[0].present_input_base, 16);

	/* carts absent: 1..16 over the one board */
	ck_assert_int_eq(cfg.ncarts, 16);
	for (int i = 0; i < 16; i++) {
		ck_assert_int_eq(cfg.carts[i].number, i + 1);
		ck_assert_int_eq(cfg.carts[i].bus_index, 0);
		ck_assert_int_eq(cfg.carts[i].board_index, 0);
		ck_assert_int_eq(cfg.carts[i].lock, i);
	}
}
END_TEST

START_TEST(auto_numbering_spans_buses_and_boards)
{
	char err[512];
	int rc = parse_q("{" HEAD ",'buses':["
			 BUS("a", "/dev/ttyA", "modbus", BOARD(3, 2) "," BOARD(1, 3)) ","
			 BUS("b", "/dev/ttyB", "kerong", BOARD(0, 2)) "]}",
			 err, sizeof(err));
	ck_assert_msg(rc == CW_OK, "%s", err);
	ck_assert_int_eq(cfg.ncarts, 7);
	/* config order, not address order */
	const int want[7][4] = {{1, 0, 0, 0}, {2, 0, 0, 1}, {3, 0, 1, 0}, {4, 0, 1, 1},
				{5, 0, 1, 2}, {6, 1, 0, 0}, {7, 1, 0, 1}};
	for (int i = 0; i < 7; i++) {
		ck_assert_int_eq(cfg.carts[i].number, want[i][0]);
		ck_assert_int_eq(cfg.carts[i].bus_index, want[i][1]);
		ck_assert_int_eq(cfg.carts[i].board_index, want[i][2]);
		ck_assert_int_eq(cfg.carts[i].lock, want[i][3]);
	}
	ck_assert_int_eq(cfg.buses[1].protocol, CW_PROTO_KERONG);
	ck_assert_int_eq(cfg.buses[0].boards[1].present_input_base, 3);
}
END_TEST

START_TEST(golden_example_file)
{
	char path[1024], err[512];
	const char *src = getenv("CW_SOURCE_DIR");

	snprintf(path, sizeof(path), "%s/docs/examples/edge.json", src ? src : "../..");
	ck_assert_msg(cw_edge_config_load(path, &cfg, err, sizeof(err)) == CW_OK, "%s", err);
	ck_assert_str_eq(cfg.chain_id, "rami-levi");
	ck_assert_str_eq(cfg.branch_id, "branch-001");
	ck_assert_str_eq(cfg.device_id, "rpi-001");
	ck_assert_str_eq(cfg.device_name, "Entrance kiosk Pi");
	ck_assert_str_eq(cfg.data_dir, "/var/lib/cartwise");
	ck_assert_str_eq(cfg.api_bind, "127.0.0.1");
	ck_assert_int_eq(cfg.api_port, 8080);
	ck_assert_int_eq(cfg.rules.rental_minutes, 120);
	ck_assert_int_eq(cfg.rules.take_timeout_s, 60);
	ck_assert_int_eq(cfg.nbuses, 2);
	ck_assert_str_eq(cfg.buses[0].name, "bus0");
	ck_assert_int_eq(cfg.buses[0].nboards, 2);
	ck_assert_int_eq(cfg.buses[0].boards[1].address, 2);
	ck_assert_int_eq(cfg.buses[0].boards[1].locks, 8);
	ck_assert_int_eq(cfg.buses[0].boards[1].present_input_base, 8);
	ck_assert_str_eq(cfg.buses[1].port, "/dev/ttyUSB1");
	ck_assert_int_eq(cfg.buses[1].protocol, CW_PROTO_KERONG);
	ck_assert_int_eq(cfg.buses[1].baud, 9600);
	ck_assert_int_eq(cfg.buses[1].boards[0].pulse_ms, 600);
	ck_assert_int_eq(cfg.ncarts, 4);
	ck_assert_int_eq(cfg.carts[2].number, 3);
	ck_assert_int_eq(cfg.carts[2].bus_index, 0);
	ck_assert_int_eq(cfg.carts[2].board_index, 1);
	ck_assert_int_eq(cfg.carts[3].number, 101);
	ck_assert_int_eq(cfg.carts[3].bus_index, 1);
	ck_assert_int_eq(cfg.carts[3].board_index, 0);
	ck_assert_int_eq(cfg.carts[3].lock, 15);
}
END_TEST

START_TEST(every_key_overrides)
{
	char err[512];
	int rc = parse_q(
		"{" HEAD ",'device_name':'Pi \xd7\xa9','log_level':'debug',"
		"'rules':{'rental_minutes':30,'one_per_phone':false,'grace_minutes':0,"
		"'take_timeout_s':20,'return_timeout_s':300},"
		"'buses':[{'name':'x','port':'/dev/ttyS1','protocol':'modbus','baud':9600,"
		"'parity':'E','response_timeout_ms':30,'retries':0,'inter_frame_gap_ms':5,"
		"'poll_interval_ms':100,'confirm_timeout_ms':1500,'offline_after':5,"
		"'offline_backoff_max_ms':8000,'boards':[{'address':7,'locks':8,'pulse_ms':300,"
		"'has_present_sensor':false,'coil_base':100,'hook_input_base':200,"
		"'present_input_base':300}]}]}",
		err, sizeof(err));
	ck_assert_msg(rc == CW_OK, "%s", err);
	ck_assert_str_eq(cfg.device_name, "Pi \xd7\xa9");
	ck_assert_str_eq(cfg.log_level, "debug");
	ck_assert_int_eq(cfg.rules.rental_minutes, 30);
	ck_assert(!cfg.rules.one_per_phone);
	ck_assert_int_eq(cfg.rules.grace_minutes, 0);
	ck_assert_int_eq(cfg.rules.take_timeout_s, 20);
	ck_assert_int_eq(cfg.rules.return_timeout_s, 300);
	const struct cw_bus_config *b = &cfg.buses[0];
	ck_assert_int_eq(b->baud, 9600);
	ck_assert_int_eq(b->parity, 'E');
	ck_assert_int_eq(b->response_timeout_ms, 30);
	ck_assert_int_eq(b->retries, 0);
	ck_assert_int_eq(b->inter_frame_gap_ms, 5);
	ck_assert_int_eq(b->poll_interval_ms, 100);
	ck_assert_int_eq(b->confirm_timeout_ms, 1500);
	ck_assert_int_eq(b->offline_after, 5);
	ck_assert_int_eq(b->offline_backoff_max_ms, 8000);
	ck_assert_int_eq(b->boards[0].address, 7);
	ck_assert_int_eq(b->boards[0].pulse_ms, 300);
	ck_assert(!b->boards[0].has_present_sensor);
	ck_assert_int_eq(b->boards[0].coil_base, 100);
	ck_assert_int_eq(b->boards[0].hook_input_base, 200);
	ck_assert_int_eq(b->boards[0].present_input_base, 300);
	ck_assert_int_eq(cfg.ncarts, 8);
}
END_TEST

/* ---- bad input: each case must fail with the code and name its key ---- */
struct bad_case {
	const char *json;
	int rc;
	const char *msg; /* substring of the error message */
};

static const struct bad_case bad_cases[] = {
	/* the example of the task, verbatim */
	{"{" HEAD ",'buses':[" BUS("bus0", "/dev/a", "modbus", BOARD(1, 8) "," BOARD(2, 40)) "]}",
	 CW_ERR_CONFIG, "buses[0].boards[1].locks: expected an integer 1..32, got 40"},
	/* syntax */
	{"", CW_ERR_CONFIG, "empty"},
	{"{'chain_id': 'a',\n 'branch_id' 'b'}", CW_ERR_CONFIG, "not valid JSON: error near line 2"},
	{"{" HEAD ",'buses':[" MB1 "]", CW_ERR_CONFIG, "ends too early"},
	{"{" HEAD ",'buses':[" MB1 "]} {}", CW_ERR_CONFIG, "unexpected text after"},
	{"[1,2]", CW_ERR_CONFIG, "must be a JSON object"},
	/* unknown and repeated keys */
	{"{" HEAD ",'buses':[" MB1 "],'colour':'red'}", CW_ERR_CONFIG, "colour: unknown key"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'rental_mins':5}}", CW_ERR_CONFIG,
	 "rules.rental_mins: unknown key"},
	{"{" HEAD ",'buses':[{'name':'a','port':'/dev/a','protocol':'modbus','speed':9600,"
	 "'boards':[{'address':1,'locks':4}]}]}",
	 CW_ERR_CONFIG, "buses[0].speed: unknown key"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", "{'address':1,'locks':4,'lock':2}") "]}",
	 CW_ERR_CONFIG, "buses[0].boards[0].lock: unknown key"},
	{"{" HEAD ",'buses':[" MB1 "],'carts':[{'number':1,'bus':'bus0','board':1,'lock':0,'x':1}]}",
	 CW_ERR_CONFIG, "carts[0].x: unknown key"},
	{"{" HEAD ",'branch_id':'b2','buses':[" MB1 "]}", CW_ERR_CONFIG, "branch_id: key given twice"},
	/* required keys */
	{"{'chain_id':'c','device_id':'d','data_dir':'/x','api':{'admin_token':'0123456789abcdef'},"
	 "'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "branch_id: missing"},
	{"{'chain_id':'c','branch_id':'b','data_dir':'/x','api':{'admin_token':'0123456789abcdef'},"
	 "'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "device_id: missing"},
	{"{'chain_id':'c','branch_id':'b','device_id':'d','api':{'admin_token':'0123456789abcdef'},"
	 "'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "data_dir: missing"},
	{"{'chain_id':'c','branch_id':'b','device_id':'d','data_dir':'/x','buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "api: missing"},
	{"{'chain_id':'c','branch_id':'b','device_id':'d','data_dir':'/x','api':{},'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "api.admin_token: missing"},
	{"{" HEAD "}", CW_ERR_CONFIG, "buses: missing"},
	{"{" HEAD ",'buses':[{'port':'/dev/a','protocol':'modbus','boards':[{'locks':4}]}]}",
	 CW_ERR_CONFIG, "buses[0].boards[0].address: missing"},
	{"{" HEAD ",'buses':[{'port':'/dev/a','boards':[{'address':1,'locks':4}]}]}", CW_ERR_CONFIG,
	 "buses[0].protocol: missing"},
	{"{" HEAD ",'buses':[{'protocol':'modbus','boards':[{'address':1,'locks':4}]}]}",
	 CW_ERR_CONFIG, "buses[0].port: missing"},
	/* wrong types */
	{"{" HEAD ",'buses':" MB1 "}", CW_ERR_CONFIG, "buses: expected an array, got an object"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'rental_minutes':'120'}}", CW_ERR_CONFIG,
	 "rules.rental_minutes: expected an integer 1..10080, got a string"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'one_per_phone':1}}", CW_ERR_CONFIG,
	 "rules.one_per_phone: expected true or false, got 1"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'grace_minutes':2.5}}", CW_ERR_CONFIG,
	 "rules.grace_minutes: expected an integer 0..1440, got 2.5"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':[]}", CW_ERR_CONFIG, "rules: expected an object"},
	{"{" HEAD ",'buses':[" MB1 "],'carts':{}}", CW_ERR_CONFIG, "carts: expected an array"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", "7") "]}", CW_ERR_CONFIG,
	 "buses[0].boards[0]: expected an object, got 7"},
	{"{" HEAD ",'buses':[null]}", CW_ERR_CONFIG, "buses[0]: expected an object, got null"},
	{"{" HEAD ",'device_name':null,'buses':[" MB1 "]}", CW_ERR_CONFIG, "device_name: expected"},
	/* values out of range or badly formed */
	{"{'chain_id':'c','branch_id':'b 1','device_id':'d','data_dir':'/x',"
	 "'api':{'admin_token':'0123456789abcdef'},'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "branch_id: expected a string of 1-63 characters [A-Za-z0-9_-]"},
	{"{'chain_id':'c','branch_id':'','device_id':'d','data_dir':'/x',"
	 "'api':{'admin_token':'0123456789abcdef'},'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "branch_id: expected a string of 1-63"},
	{"{'chain_id':'c','branch_id':'"
	 "0123456789012345678901234567890123456789012345678901234567890123"
	 "','device_id':'d','data_dir':'/x','api':{'admin_token':'0123456789abcdef'},'buses':[" MB1
	 "]}",
	 CW_ERR_CONFIG, "branch_id: expected a string of 1-63"},
	{"{'chain_id':'c;drop','branch_id':'b','device_id':'d','data_dir':'/x',"
	 "'api':{'admin_token':'0123456789abcdef'},'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "chain_id: expected"},
	{"{" HEAD ",'log_level':'verbose','buses':[" MB1 "]}", CW_ERR_CONFIG,
	 "log_level: expected \"debug\", \"info\", \"warn\" or \"error\""},
	{"{'chain_id':'c','branch_id':'b','device_id':'d','data_dir':'/x',"
	 "'api':{'admin_token':'short-secret'},'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "api.admin_token: expected a secret string of 16-127 characters, got 12"},
	{"{'chain_id':'c','branch_id':'b','device_id':'d','data_dir':'/x',"
	 "'api':{'admin_token':'0123456789abcdef','port':70000},'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "api.port: expected an integer 0..65535, got 70000"},
	{"{'chain_id':'c','branch_id':'b','device_id':'d','data_dir':'/x',"
	 "'api':{'admin_token':'0123456789abcdef','bind':'localhost'},'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "api.bind: expected an IPv4 or IPv6 address"},
	/* numbers no int (or long) can hold, and fractions: refused by range
	 * before any conversion (converting them is undefined behaviour) */
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'rental_minutes':1e300}}", CW_ERR_CONFIG,
	 "rules.rental_minutes: expected an integer 1..10080, got 1.0000000000000001e+300"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'rental_minutes':-1e300}}", CW_ERR_CONFIG,
	 "rules.rental_minutes: expected an integer 1..10080, got -1.0000000000000001e+300"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'rental_minutes':3.5}}", CW_ERR_CONFIG,
	 "rules.rental_minutes: expected an integer 1..10080, got 3.5"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'grace_minutes':1e19}}", CW_ERR_CONFIG,
	 "rules.grace_minutes: expected an integer 0..1440, got 1e+19"},
	{"{'chain_id':'c','branch_id':'b','device_id':'d','data_dir':'/x',"
	 "'api':{'admin_token':'0123456789abcdef','port':1e300},'buses':[" MB1 "]}",
	 CW_ERR_CONFIG, "api.port: expected an integer 0..65535, got 1.0000000000000001e+300"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", "{'address':4294967297,'locks':4}")
	 "]}",
	 CW_ERR_CONFIG, "buses[0].boards[0].address: expected an integer 1..247, got 4294967297"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", "{'address':1,'locks':4.000001}") "]}",
	 CW_ERR_CONFIG, "buses[0].boards[0].locks: expected an integer 1..32, got 4.0000010000000001"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'rental_minutes':0}}", CW_ERR_CONFIG,
	 "rules.rental_minutes: expected an integer 1..10080, got 0"},
	{"{" HEAD ",'buses':[" MB1 "],'rules':{'take_timeout_s':-1}}", CW_ERR_CONFIG,
	 "rules.take_timeout_s: expected an integer 5..3600, got -1"},
	{"{" HEAD ",'buses':[{'port':'/dev/a','protocol':'rtu','boards':[{'address':1,'locks':4}]}]}",
	 CW_ERR_CONFIG, "buses[0].protocol: expected \"modbus\" or \"kerong\""},
	{"{" HEAD ",'buses':[{'port':'/dev/a','protocol':'modbus','baud':12345,"
	 "'boards':[{'address':1,'locks':4}]}]}",
	 CW_ERR_CONFIG, "buses[0].baud: expected one of"},
	{"{" HEAD ",'buses':[{'port':'/dev/a','protocol':'modbus','parity':'X',"
	 "'boards':[{'address':1,'locks':4}]}]}",
	 CW_ERR_CONFIG, "buses[0].parity: expected \"N\", \"E\" or \"O\""},
	{"{" HEAD ",'buses':[{'port':'/dev/a','protocol':'modbus','retries':11,"
	 "'boards':[{'address':1,'locks':4}]}]}",
	 CW_ERR_CONFIG, "buses[0].retries: expected an integer 0..10, got 11"},
	{"{" HEAD ",'buses':[{'port':'/dev/a','protocol':'modbus','response_timeout_ms':0,"
	 "'boards':[{'address':1,'locks':4}]}]}",
	 CW_ERR_CONFIG, "buses[0].response_timeout_ms: expected an integer 1..10000, got 0"},
	{"{" HEAD ",'buses':[{'port':'','protocol':'modbus','boards':[{'address':1,'locks':4}]}]}",
	 CW_ERR_CONFIG, "buses[0].port: expected a non-empty string"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", BOARD(0, 4)) "]}", CW_ERR_CONFIG,
	 "buses[0].boards[0].address: expected an integer 1..247, got 0"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", BOARD(248, 4)) "]}", CW_ERR_CONFIG,
	 "buses[0].boards[0].address: expected an integer 1..247, got 248"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", "{'address':1,'locks':4,'pulse_ms':1}")
	 "]}",
	 CW_ERR_CONFIG, "buses[0].boards[0].pulse_ms: expected an integer 10..10000, got 1"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus",
				  "{'address':1,'locks':4,'coil_base':65535}") "]}",
	 CW_ERR_CONFIG, "buses[0].boards[0].coil_base: expected an integer 0..65532, got 65535"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", "") "]}", CW_ERR_CONFIG,
	 "buses[0].boards: expected 1..16 boards, got 0"},
	{"{" HEAD ",'buses':[]}", CW_ERR_CONFIG, "buses: expected 1..8 buses, got 0"},
	/* Kerong limits (address nibble, 16 locks, no register map) */
	{"{" HEAD ",'buses':[" BUS("k", "/dev/k", "kerong", BOARD(16, 4)) "]}", CW_ERR_CONFIG,
	 "buses[0].boards[0].address: expected an integer 0..15, got 16"},
	{"{" HEAD ",'buses':[" BUS("k", "/dev/k", "kerong", BOARD(1, 17)) "]}", CW_ERR_CONFIG,
	 "buses[0].boards[0].locks: expected an integer 1..16, got 17"},
	{"{" HEAD ",'buses':[" BUS("k", "/dev/k", "kerong", "{'address':1,'locks':4,'coil_base':0}")
	 "]}",
	 CW_ERR_CONFIG, "buses[0].boards[0].coil_base: only valid for protocol \"modbus\""},
	/* duplicates */
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", BOARD(1, 4)) ","
	 BUS("a", "/dev/b", "modbus", BOARD(1, 4)) "]}",
	 CW_ERR_CONFIG, "buses[1].name: \"a\" is already the name of buses[0]"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", BOARD(1, 4)) ","
	 BUS("b", "/dev/a", "modbus", BOARD(1, 4)) "]}",
	 CW_ERR_CONFIG, "buses[1].port: already used by buses[0]"},
	{"{" HEAD ",'buses':[" BUS("a", "/dev/a", "modbus", BOARD(1, 4) "," BOARD(2, 4) "," BOARD(1, 2))
	 "]}",
	 CW_ERR_CONFIG, "buses[0].boards[2].address: 1 is already used by boards[0]"},
	{"{" HEAD ",'buses':[" MB1 "],'carts':[{'number':1,'bus':'bus0','board':1,'lock':0},"
	 "{'number':1,'bus':'bus0','board':1,'lock':1}]}",
	 CW_ERR_CONFIG, "carts[1].number: cart 1 is already defined by carts[0]"},
	{"{" HEAD ",'buses':[" MB1 "],'carts':[{'number':1,'bus':'bus0','board':1,'lock':3},"
	 "{'number':2,'bus':'bus0','board':1,'lock':3}]}",
	 CW_ERR_CONFIG, "carts[1].lock: this slot is already cart 1"},
	/* carts pointing nowhere */
	{"{" HEAD ",'buses':[" MB1 "],'carts':[{'number':1,'bus':'bus9','board':1,'lock':0}]}",
	 CW_ERR_CONFIG, "carts[0].bus: no bus named \"bus9\""},
	{"{" HEAD ",'buses':[" MB1 "],'carts':[{'number':1,'bus':'bus0','board':2,'lock':0}]}",
	 CW_ERR_CONFIG, "carts[0].board: no board with address 2 on bus \"bus0\""},
	{"{" HEAD ",'buses':[" MB1 "],'carts':[{'number':1,'bus':'bus0','board':1,'lock':16}]}",
	 CW_ERR_CONFIG, "carts[0].lock: board 1 on bus \"bus0\" has locks 0..15, got 16"},
	{"{" HEAD ",'buses':[" MB1 "],'carts':[{'number':0,'bus':'bus0','board':1,'lock':0}]}",
	 CW_ERR_CONFIG, "carts[0].number: expected an integer 1..99999, got 0"},
	{"{" HEAD ",'buses':[" MB1 "],'carts':[{'bus':'bus0','board':1,'lock':0}]}", CW_ERR_CONFIG,
	 "carts[0].number: missing"},
	{"{" HEAD ",'buses':[" MB1 "],'carts':[]}", CW_ERR_CONFIG, "carts: expected 1..512 carts, got 0"},
	/* the cloud section (issue 4) */
	{"{" HEAD ",'buses':[" MB1 "],'cloud':[]}", CW_ERR_CONFIG, "cloud: expected an object"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'branch_code':'TLV-001'}}", CW_ERR_CONFIG,
	 "cloud.url: missing"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://c.example'}}", CW_ERR_CONFIG,
	 "cloud.branch_code: missing"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'http://c.example','branch_code':'B'}}",
	 CW_ERR_CONFIG, "cloud.url: http:// is refused"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'ftp://c.example','branch_code':'B'}}",
	 CW_ERR_CONFIG, "cloud.url: expected an URL starting with https://"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://u:p@c.example','branch_code':'B'}}",
	 CW_ERR_CONFIG, "cloud.url: expected https://host[:port][/path] without spaces, credentials"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://','branch_code':'B'}}",
	 CW_ERR_CONFIG, "cloud.url: expected a host name"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://c','branch_code':'B','mqtt':1}}",
	 CW_ERR_CONFIG, "cloud.mqtt: unknown key"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://c','branch_code':'B','heartbeat_s':1}}",
	 CW_ERR_CONFIG, "cloud.heartbeat_s: expected an integer 5..3600, got 1"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://c','branch_code':'B','backoff_max_ms':999}}",
	 CW_ERR_CONFIG, "cloud.backoff_max_ms: expected an integer 1000..3600000, got 999"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://c','branch_code':'B',"
	 "'batch_max_entries':1001}}",
	 CW_ERR_CONFIG, "cloud.batch_max_entries: expected an integer 1..1000, got 1001"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://c','branch_code':'B',"
	 "'batch_max_bytes':2000000}}",
	 CW_ERR_CONFIG, "cloud.batch_max_bytes: expected an integer 4096..1048576, got 2000000"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://c','branch_code':'B',"
	 "'mac_address':'b8:27:eb:12:34'}}",
	 CW_ERR_CONFIG, "cloud.mac_address: expected six hex pairs"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://c','branch_code':'B',"
	 "'ca_file':'certs/ca.pem'}}",
	 CW_ERR_CONFIG, "cloud.ca_file: expected an absolute path"},
	{"{" HEAD ",'buses':[" MB1 "],'cloud':{'url':'https://c','branch_code':'B',"
	 "'insecure_http':'yes'}}",
	 CW_ERR_CONFIG, "cloud.insecure_http: expected true or false"},
};

START_TEST(bad_input_names_the_key)
{
	const struct bad_case *c = &bad_cases[_i];
	char err[512];
	int rc = parse_q(c->json, err, sizeof(err));

	ck_assert_msg(rc == c->rc, "case %d: rc %d (%s), want %d", _i, rc, err, c->rc);
	ck_assert_msg(strstr(err, c->msg) != NULL, "case %d: message \"%s\" lacks \"%s\"", _i, err,
		      c->msg);
}
END_TEST

START_TEST(token_never_in_message)
{
	char err[512];
	/* too short, and with a space: neither message may echo it */
	ck_assert_int_eq(parse_q("{'chain_id':'c','branch_id':'b','device_id':'d','data_dir':'/x',"
				 "'api':{'admin_token':'SeCrEt'},'buses':[" MB1 "]}",
				 err, sizeof(err)),
			 CW_ERR_CONFIG);
	ck_assert_ptr_null(strstr(err, "SeCrEt"));
	ck_assert_int_eq(parse_q("{'chain_id':'c','branch_id':'b','device_id':'d','data_dir':'/x',"
				 "'api':{'admin_token':'SeCrEt SeCrEt SeCrEt'},'buses':[" MB1 "]}",
				 err, sizeof(err)),
			 CW_ERR_CONFIG);
	ck_assert(strstr(err, "api.admin_token") != NULL);
	ck_assert_ptr_null(strstr(err, "SeCrEt"));
}
END_TEST

/* Writes text to dir/name with mode; path written into out. */
static void write_file(const char *dir, const char *name, const char *text, mode_t mode,
		       char *out, size_t cap)
{
	FILE *f;

	snprintf(out, cap, "%s/%s", dir, name);
	f = fopen(out, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(out, mode), 0);
}

/* Parses HEAD with api {'admin_token_file': tokfile} plus extra api keys. */
static int parse_token_file(const char *tokfile, const char *extra, char *err, size_t errlen)
{
	char json[1024];

	snprintf(json, sizeof(json),
		 "{'chain_id':'c','branch_id':'b','device_id':'d','data_dir':'/x',"
		 "'api':{'admin_token_file':'%s'%s},'buses':[" MB1 "]}",
		 tokfile, extra);
	return parse_q(json, err, errlen);
}

START_TEST(admin_token_file)
{
	char dir[256], tok[512], big[CW_FILE_TOKEN_MAX + 2], err[1024], logpath[512],
		logbuf[4096] = "";
	int saved;

	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);
	/* the first line, CRLF dropped, the rest ignored */
	write_file(dir, "ok.token", "Tok3n-0123456789abc\r\nsecond line\n", 0640, tok, sizeof(tok));
	ck_assert_msg(parse_token_file(tok, "", err, sizeof(err)) == CW_OK, "%s", err);
	ck_assert_str_eq(cfg.admin_token, "Tok3n-0123456789abc");
	ck_assert_str_eq(cfg.admin_token_file, tok);
	/* and through a config file with comments, as the package ships it */
	{
		char conf[512], text[1024];
		snprintf(text, sizeof(text),
			 "// edge\n{\"chain_id\":\"c\",\"branch_id\":\"b\",\"device_id\":\"d\","
			 "\"data_dir\":\"/x\", /* no secret here */\n"
			 "\"api\": {\"admin_token_file\": \"%s\"},\n"
			 "\"buses\": [{\"name\":\"bus0\",\"port\":\"/dev/ttyUSB0\","
			 "\"protocol\":\"modbus\",\"boards\":[{\"address\":1,\"locks\":2}]}]}\n",
			 tok);
		write_file(dir, "edge.json", text, 0644, conf, sizeof(conf));
		ck_assert_msg(cw_edge_config_load(conf, &cfg, err, sizeof(err)) == CW_OK, "%s",
			      err);
		ck_assert_str_eq(cfg.admin_token, "Tok3n-0123456789abc");
	}

	/* exactly one of the two keys */
	ck_assert_int_eq(parse_token_file(tok, ",'admin_token':'0123456789abcdef'", err,
					  sizeof(err)),
			 CW_ERR_CONFIG);
	ck_assert_str_eq(err, "api: admin_token and admin_token_file are both given; keep one");

	/* refusals name the key and the file, never the token */
	write_file(dir, "short.token", "SeCrEt\n", 0600, tok, sizeof(tok));
	ck_assert_int_eq(parse_token_file(tok, "", err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "api.admin_token_file: ") && strstr(err, tok) &&
			      strstr(err, "got 6"),
		      "%s", err);
	ck_assert_ptr_null(strstr(err, "SeCrEt"));
	write_file(dir, "space.token", "SeCrEt SeCrEt SeCrEt\n", 0600, tok, sizeof(tok));
	ck_assert_int_eq(parse_token_file(tok, "", err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "api.admin_token_file: ") && strstr(err, "without spaces"), "%s",
		      err);
	ck_assert_ptr_null(strstr(err, "SeCrEt"));
	write_file(dir, "empty.token", "\nSeCrEt-SeCrEt-SeCrEt\n", 0600, tok, sizeof(tok));
	ck_assert_int_eq(parse_token_file(tok, "", err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "got 0"), "%s", err);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_file(dir, "big.token", big, 0600, tok, sizeof(tok));
	ck_assert_int_eq(parse_token_file(tok, "", err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "api.admin_token_file: ") && strstr(err, "more than the limit"),
		      "%s", err);
	snprintf(tok, sizeof(tok), "%s/missing.token", dir);
	ck_assert_int_eq(parse_token_file(tok, "", err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "api.admin_token_file: ") && strstr(err, tok) &&
			      strstr(err, "No such file"),
		      "%s", err);
	ck_assert_int_eq(parse_token_file("", "", err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "api.admin_token_file: expected a non-empty string"), "%s", err);

	/* readable by others: loaded, with a warning naming the file (not the
	 * token); readable by the group (0640, as packaged): no warning */
	snprintf(logpath, sizeof(logpath), "%s/stderr.log", dir);
	saved = cw_test_stderr_to(logpath);
	ck_assert_int_ge(saved, 0);
	write_file(dir, "group.token", "Tok3n-0123456789abc\n", 0640, tok, sizeof(tok));
	ck_assert_int_eq(parse_token_file(tok, "", err, sizeof(err)), CW_OK);
	write_file(dir, "world.token", "Tok3n-0123456789abc\n", 0644, tok, sizeof(tok));
	ck_assert_int_eq(parse_token_file(tok, "", err, sizeof(err)), CW_OK);
	ck_assert_int_gt(cw_test_stderr_back(saved, logpath, logbuf, sizeof(logbuf)), 0);
	ck_assert_msg(strstr(logbuf, "event=file.token_permissions") && strstr(logbuf, tok) &&
			      !strstr(logbuf, "group.token") && !strstr(logbuf, "Tok3n"),
		      "%s", logbuf);
	cw_test_rmrf(dir);
}
END_TEST

/* A FIFO named as the token file is refused at once (an open without
 * O_NONBLOCK would wait for a writer forever); a token file the group can
 * write loads with a warning: the group could set the admin token. */
START_TEST(admin_token_file_fifo_and_group_write)
{
	char dir[256], tok[512], err[1024], logpath[512], logbuf[4096] = "";
	int saved;

	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);
	snprintf(tok, sizeof(tok), "%s/fifo.token", dir);
	ck_assert_int_eq(mkfifo(tok, 0600), 0);
	alarm(5); /* a hang fails the test instead of stalling the suite */
	ck_assert_int_eq(parse_token_file(tok, "", err, sizeof(err)), CW_ERR_CONFIG);
	alarm(0);
	ck_assert_msg(strstr(err, "api.admin_token_file: ") && strstr(err, tok) &&
			      strstr(err, "not a regular file"),
		      "%s", err);

	snprintf(logpath, sizeof(logpath), "%s/stderr.log", dir);
	saved = cw_test_stderr_to(logpath);
	ck_assert_int_ge(saved, 0);
	write_file(dir, "gw.token", "Tok3n-0123456789abc\n", 0660, tok, sizeof(tok));
	ck_assert_int_eq(parse_token_file(tok, "", err, sizeof(err)), CW_OK);
	ck_assert_int_gt(cw_test_stderr_back(saved, logpath, logbuf, sizeof(logbuf)), 0);
	ck_assert_msg(strstr(logbuf, "event=file.token_permissions") && strstr(logbuf, tok) &&
			      strstr(logbuf, "mode=660") && strstr(logbuf, "can write") &&
			      !strstr(logbuf, "Tok3n"),
		      "%s", logbuf);
	cw_test_rmrf(dir);
}
END_TEST

START_TEST(cloud_section)
{
	char err[512];

	/* without it the device runs alone */
	ck_assert_int_eq(parse_q("{" HEAD ",'buses':[" MB1 "]}", err, sizeof(err)), CW_OK);
	ck_assert(!cfg.cloud_enabled);
	/* defaults */
	ck_assert_int_eq(parse_q("{" HEAD ",'device_name':'Kiosk','buses':[" MB1 "],"
				 "'cloud':{'url':'https://cloud.example.com/','branch_code':'TLV-001',"
				 "'enrollment_code':'K7-secret-code'}}",
				 err, sizeof(err)),
			 CW_OK);
	ck_assert(cfg.cloud_enabled);
	ck_assert_str_eq(cfg.cloud.url, "https://cloud.example.com"); /* no trailing slash */
	ck_assert_str_eq(cfg.cloud.branch_code, "TLV-001");
	ck_assert_str_eq(cfg.cloud.enrollment_code, "K7-secret-code");
	ck_assert_str_eq(cfg.cloud.ca_file, "");
	ck_assert_str_eq(cfg.cloud.mac_address, "");
	ck_assert_int_eq(cfg.cloud.heartbeat_s, 30);
	ck_assert_int_eq(cfg.cloud.batch_max_entries, 500);
	ck_assert_uint_eq(cfg.cloud.batch_max_bytes, 512 * 1024);
	ck_assert(!cfg.cloud.insecure_http);
	ck_assert_str_eq(cfg.cloud.data_dir, "/tmp/cw");
	ck_assert_str_eq(cfg.cloud.device_name, "Kiosk");
	ck_assert_int_gt(strlen(cfg.cloud.firmware_version), 0);
	/* every key */
	ck_assert_int_eq(parse_q("{" HEAD ",'buses':[" MB1 "],"
				 "'cloud':{'url':'http://127.0.0.1:8443','branch_code':'B',"
				 "'insecure_http':true,'enrollment_code':'','ca_file':'/etc/ca.pem',"
				 "'heartbeat_s':5,'batch_max_entries':1000,'batch_max_bytes':4096,"
				 "'mac_address':'B8:27:eb:12:34:56','backoff_max_ms':3000}}",
				 err, sizeof(err)),
			 CW_OK);
	ck_assert_int_eq(cfg.cloud.backoff_cap_ms, 3000);
	ck_assert_str_eq(cfg.cloud.url, "http://127.0.0.1:8443");
	ck_assert(cfg.cloud.insecure_http);
	ck_assert_str_eq(cfg.cloud.enrollment_code, "");
	ck_assert_str_eq(cfg.cloud.ca_file, "/etc/ca.pem");
	ck_assert_int_eq(cfg.cloud.heartbeat_s, 5);
	ck_assert_int_eq(cfg.cloud.batch_max_entries, 1000);
	ck_assert_uint_eq(cfg.cloud.batch_max_bytes, 4096);
	ck_assert_str_eq(cfg.cloud.mac_address, "B8:27:eb:12:34:56");
	/* the enrollment code is a secret: never in a message */
	ck_assert_int_eq(parse_q("{" HEAD ",'buses':[" MB1 "],"
				 "'cloud':{'url':'https://c','branch_code':'B',"
				 "'enrollment_code':'SeCrEt\\u0001'}}",
				 err, sizeof(err)),
			 CW_ERR_CONFIG);
	ck_assert(strstr(err, "cloud.enrollment_code") != NULL);
	ck_assert_ptr_null(strstr(err, "SeCrEt"));
}
END_TEST

START_TEST(too_many_locks_for_auto_numbering)
{
	/* 8 buses x 16 boards x 32 locks > 512 carts */
	char *buf = malloc(65536);
	char err[512];
	size_t n = 0;

	ck_assert_ptr_nonnull(buf);
	n += (size_t)snprintf(buf + n, 65536 - n, "{" HEAD ",'buses':[");
	for (int b = 0; b < 2; b++) {
		n += (size_t)snprintf(buf + n, 65536 - n,
				      "%s{'name':'b%d','port':'/dev/p%d','protocol':'modbus','boards':[",
				      b ? "," : "", b, b);
		for (int d = 0; d < 9; d++)
			n += (size_t)snprintf(buf + n, 65536 - n, "%s{'address':%d,'locks':32}",
					      d ? "," : "", d + 1);
		n += (size_t)snprintf(buf + n, 65536 - n, "]}");
	}
	snprintf(buf + n, 65536 - n, "]}");
	ck_assert_int_eq(parse_q(buf, err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "more than 512 locks") != NULL, "%s", err);
	free(buf);
}
END_TEST

START_TEST(load_file_errors)
{
	char dir[256], path[512], err[1024];
	FILE *f;

	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);

	/* missing file: CW_ERR_IO naming the path */
	snprintf(path, sizeof(path), "%s/nope.json", dir);
	ck_assert_int_eq(cw_edge_config_load(path, &cfg, err, sizeof(err)), CW_ERR_IO);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);

	/* a directory is not a config */
	ck_assert_int_eq(cw_edge_config_load(dir, &cfg, err, sizeof(err)), CW_ERR_IO);

	/* more than 1 MiB */
	snprintf(path, sizeof(path), "%s/big.json", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputc('{', f);
	for (int i = 0; i < 1024 * 1024; i++)
		fputc(' ', f);
	fputc('}', f);
	fclose(f);
	ck_assert_int_eq(cw_edge_config_load(path, &cfg, err, sizeof(err)), CW_ERR_TOOBIG);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);

	/* half-written: the good config cut in the middle */
	char *good = q("{" HEAD ",'buses':[" MB1 "]}");
	snprintf(path, sizeof(path), "%s/half.json", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fwrite(good, 1, strlen(good) / 2, f);
	fclose(f);
	ck_assert_int_eq(cw_edge_config_load(path, &cfg, err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, "not valid JSON") && strstr(err, "line 1 column"), "%s", err);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);

	/* the same, whole */
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(good, f);
	fclose(f);
	ck_assert_msg(cw_edge_config_load(path, &cfg, err, sizeof(err)) == CW_OK, "%s", err);
	ck_assert_int_eq(cfg.ncarts, 16);
	free(good);
	cw_test_rmrf(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, minimal_gets_defaults);
	tcase_add_test(tc, auto_numbering_spans_buses_and_boards);
	tcase_add_test(tc, golden_example_file);
	tcase_add_test(tc, every_key_overrides);
	tcase_add_loop_test(tc, bad_input_names_the_key, 0,
			    (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(tc, token_never_in_message);
	tcase_add_test(tc, admin_token_file);
	tcase_add_test(tc, admin_token_file_fifo_and_group_write);
	tcase_add_test(tc, cloud_section);
	tcase_add_test(tc, too_many_locks_for_auto_numbering);
	tcase_add_test(tc, load_file_errors);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
