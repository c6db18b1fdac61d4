/* test_kerong.c - Kerong KR-CU16 frame codec (src/cw_kerong.h). Pure: no I/O. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cw_error.h"
#include "cw_kerong.h"

/* The example frame of the original system: unlock lock 0 on board 0. */
static const uint8_t unlock00[] = {0x02, 0x00, 0x31, 0x03, 0x36};

START_TEST(encode_example_frame)
{
	uint8_t out[CW_KR_MAX_FRAME];
	int n = cw_kr_encode(out, sizeof(out), cw_kr_addr(0, 0), CW_KR_CMD_UNLOCK_ONE, NULL, 0);

	ck_assert_int_eq(n, 5);
	ck_assert_mem_eq(out, unlock00, sizeof(unlock00));
}
END_TEST

START_TEST(encode_status_reply)
{
	uint8_t out[CW_KR_MAX_FRAME], d[4];
	int n;

	cw_kr_status_pack(0x8001, 0x0100, d);
	n = cw_kr_encode(out, sizeof(out), cw_kr_addr(1, 0), CW_KR_REPLY_STATUS, d, 4);
	ck_assert_int_eq(n, CW_KR_STATUS_FRAME_LEN);
	/* 02 10 35 01 80 00 01 03 SUM; SUM = 0x02+0x10+0x35+0x01+0x80+0x00+0x01+0x03 = 0xcc */
	const uint8_t want[] = {0x02, 0x10, 0x35, 0x01, 0x80, 0x00, 0x01, 0x03, 0xcc};
	ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(encode_errors)
{
	uint8_t out[CW_KR_MAX_FRAME], d[CW_KR_MAX_DATA + 1] = {0};

	ck_assert_int_eq(cw_kr_encode(out, sizeof(out), 0, 0x37, d, CW_KR_MAX_DATA + 1), CW_ERR_INVAL);
	ck_assert_int_eq(cw_kr_encode(out, 4, 0, 0x31, NULL, 0), CW_ERR_TOOBIG);
	ck_assert_int_eq(cw_kr_encode(out, 8, 0, 0x35, d, 4), CW_ERR_TOOBIG);
	ck_assert_int_eq(cw_kr_encode(out, 9, 0, 0x35, d, 4), 9);
}
END_TEST

START_TEST(addr_nibbles)
{
	ck_assert_uint_eq(cw_kr_addr(0, 0), 0x00);
	ck_assert_uint_eq(cw_kr_addr(3, 11), 0x3b);
	ck_assert_uint_eq(cw_kr_addr(15, 15), 0xff);
}
END_TEST

START_TEST(data_lengths)
{
	ck_assert_uint_eq(cw_kr_data_len(0x35), 4);
	ck_assert_uint_eq(cw_kr_data_len(0x37), 1);
	ck_assert_uint_eq(cw_kr_data_len(0x38), 1);
	ck_assert_uint_eq(cw_kr_data_len(0x30), 0);
	ck_assert_uint_eq(cw_kr_data_len(0x31), 0);
	ck_assert_uint_eq(cw_kr_data_len(0x32), 0);
	ck_assert_uint_eq(cw_kr_data_len(0x33), 0);
}
END_TEST

START_TEST(decode_example_frame)
{
	struct cw_kr_frame f;
	size_t used = 99;

	ck_assert_int_eq(cw_kr_decode(unlock00, sizeof(unlock00), &f, &used), CW_OK);
	ck_assert_uint_eq(used, 5);
	ck_assert_uint_eq(f.addr, 0x00);
	ck_assert_uint_eq(f.cmd, CW_KR_CMD_UNLOCK_ONE);
	ck_assert_uint_eq(f.len, 0);
}
END_TEST

START_TEST(roundtrip_all_commands)
{
	static const uint8_t cmds[] = {0x30, 0x31, 0x32, 0x33, 0x35, 0x37, 0x38};
	uint8_t out[CW_KR_MAX_FRAME], d[4] = {0xde, 0xad, 0xbe, 0xef};
	struct cw_kr_frame f;
	size_t used;

	for (size_t i = 0; i < sizeof(cmds); i++) {
		size_t dl = cw_kr_data_len(cmds[i]);
		int n = cw_kr_encode(out, sizeof(out), 0x5a, cmds[i], d, dl);
		ck_assert_int_eq(n, (int)(5 + dl));
		ck_assert_int_eq(cw_kr_decode(out, (size_t)n, &f, &used), CW_OK);
		ck_assert_uint_eq(used, (size_t)n);
		ck_assert_uint_eq(f.addr, 0x5a);
		ck_assert_uint_eq(f.cmd, cmds[i]);
		ck_assert_uint_eq(f.len, dl);
		ck_assert_mem_eq(f.data, d, dl);
	}
}
END_TEST

START_TEST(decode_skips_leading_zero)
{
	uint8_t buf[] = {0x00, 0x00, 0x02, 0x00, 0x31, 0x03, 0x36, 0x02};
	struct cw_kr_frame f;
	size_t used;

	ck_assert_int_eq(cw_kr_decode(buf, sizeof(buf), &f, &used), CW_OK);
	ck_assert_uint_eq(used, 7); /* two zeros + frame; trailing STX left */
	ck_assert_uint_eq(f.cmd, 0x31);
	ck_assert_int_eq(cw_kr_decode(buf + used, sizeof(buf) - used, &f, &used), CW_ERR_AGAIN);
	ck_assert_uint_eq(used, 0);
}
END_TEST

START_TEST(decode_garbage_only)
{
	uint8_t buf[] = {0xff, 0x00, 0x55, 0x13, 0x37};
	struct cw_kr_frame f;
	size_t used;

	ck_assert_int_eq(cw_kr_decode(buf, sizeof(buf), &f, &used), CW_ERR_AGAIN);
	ck_assert_uint_eq(used, sizeof(buf));
	ck_assert_int_eq(cw_kr_decode(buf, 0, &f, &used), CW_ERR_AGAIN);
	ck_assert_uint_eq(used, 0);
}
END_TEST

START_TEST(decode_partial)
{
	uint8_t out[CW_KR_MAX_FRAME], d[4] = {1, 2, 3, 4};
	struct cw_kr_frame f;
	size_t used;
	int n = cw_kr_encode(out, sizeof(out), 0x10, CW_KR_REPLY_STATUS, d, 4);

	for (int cut = 0; cut < n; cut++) {
		ck_assert_int_eq(cw_kr_decode(out, (size_t)cut, &f, &used), CW_ERR_AGAIN);
		ck_assert_uint_eq(used, 0);
	}
	ck_assert_int_eq(cw_kr_decode(out, (size_t)n, &f, &used), CW_OK);
	ck_assert_mem_eq(f.data, d, 4);
}
END_TEST

START_TEST(decode_bad_checksum)
{
	uint8_t buf[] = {0x02, 0x00, 0x31, 0x03, 0x37, 0x02, 0x00, 0x31, 0x03, 0x36};
	struct cw_kr_frame f;
	size_t used;

	ck_assert_int_eq(cw_kr_decode(buf, sizeof(buf), &f, &used), CW_ERR_PROTO);
	ck_assert_uint_eq(used, 5); /* the whole bad frame is dropped */
	/* the next, good frame is then found */
	ck_assert_int_eq(cw_kr_decode(buf + used, sizeof(buf) - used, &f, &used), CW_OK);
	ck_assert_uint_eq(f.cmd, 0x31);
}
END_TEST

START_TEST(decode_missing_etx)
{
	/* 0x35 promises 4 data bytes; byte 7 must be ETX. */
	uint8_t buf[] = {0x02, 0x00, 0x35, 0xff, 0xff, 0xff, 0xff, 0x04, 0x00};
	struct cw_kr_frame f;
	size_t used;

	ck_assert_int_eq(cw_kr_decode(buf, sizeof(buf), &f, &used), CW_ERR_PROTO);
	ck_assert_uint_eq(used, 1); /* only the false STX is dropped */
	ck_assert_int_eq(cw_kr_decode(buf + 1, sizeof(buf) - 1, &f, &used), CW_ERR_AGAIN);
}
END_TEST

START_TEST(decode_resyncs_after_false_stx)
{
	/* garbage with a 0x02 inside, then a valid frame */
	uint8_t buf[] = {0x02, 0x99, 0x30, 0x77, 0x02, 0x00, 0x31, 0x03, 0x36};
	struct cw_kr_frame f;
	size_t off = 0, used;
	int rc;

	while ((rc = cw_kr_decode(buf + off, sizeof(buf) - off, &f, &used)) == CW_ERR_PROTO)
		off += used;
	ck_assert_int_eq(rc, CW_OK);
	ck_assert_uint_eq(off + used, sizeof(buf));
	ck_assert_uint_eq(f.addr, 0x00);
	ck_assert_uint_eq(f.cmd, 0x31);
}
END_TEST

START_TEST(decode_bad_args)
{
	struct cw_kr_frame f;
	size_t used;

	ck_assert_int_eq(cw_kr_decode(NULL, 0, &f, &used), CW_ERR_INVAL);
	ck_assert_int_eq(cw_kr_decode(unlock00, 5, NULL, &used), CW_ERR_INVAL);
	ck_assert_int_eq(cw_kr_decode(unlock00, 5, &f, NULL), CW_ERR_INVAL);
}
END_TEST

START_TEST(status_pack_unpack)
{
	uint8_t d[4];
	uint16_t hook, present;

	/* lock 1 (bit 0) and lock 16 (bit 15) closed; cart in lock 9 only */
	cw_kr_status_pack(0x8001, 0x0100, d);
	ck_assert_uint_eq(d[0], 0x01);
	ck_assert_uint_eq(d[1], 0x80);
	ck_assert_uint_eq(d[2], 0x00);
	ck_assert_uint_eq(d[3], 0x01);
	cw_kr_status_unpack(d, &hook, &present);
	ck_assert_uint_eq(hook, 0x8001);
	ck_assert_uint_eq(present, 0x0100);
	for (unsigned v = 0; v < 0x10000; v += 0x1111) {
		cw_kr_status_pack((uint16_t)v, (uint16_t)~v, d);
		cw_kr_status_unpack(d, &hook, &present);
		ck_assert_uint_eq(hook, v);
		ck_assert_uint_eq(present, (uint16_t)~v);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kerong");
	TCase *tc = tcase_create("codec");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, encode_example_frame);
	tcase_add_test(tc, encode_status_reply);
	tcase_add_test(tc, encode_errors);
	tcase_add_test(tc, addr_nibbles);
	tcase_add_test(tc, data_lengths);
	tcase_add_test(tc, decode_example_frame);
	tcase_add_test(tc, roundtrip_all_commands);
	tcase_add_test(tc, decode_skips_leading_zero);
	tcase_add_test(tc, decode_garbage_only);
	tcase_add_test(tc, decode_partial);
	tcase_add_test(tc, decode_bad_checksum);
	tcase_add_test(tc, decode_missing_etx);
	tcase_add_test(tc, decode_resyncs_after_false_stx);
	tcase_add_test(tc, decode_bad_args);
	tcase_add_test(tc, status_pack_unpack);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
