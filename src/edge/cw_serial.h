/* cw_serial.h - a raw serial port for the RS485 lock bus.
 *
 * 8 data bits, 1 stop bit, parity N/E/O, no flow control, raw mode. The
 * RS485 direction mode (TIOCSRS485) is requested but its failure is
 * tolerated: USB adapters switch direction in hardware and a pty has no such
 * mode. Reads wait with poll() up to a deadline on CLOCK_MONOTONIC. */
#ifndef CW_SERIAL_H
#define CW_SERIAL_H

#include <stddef.h>
#include <stdint.h>

struct cw_serial;

/* Opens path at baud (1200..230400) with parity 'N', 'E' or 'O'.
 * Returns CW_ERR_IO (port missing, not a tty) or CW_ERR_INVAL (bad baud or
 * parity). On success *out is owned by the caller (cw_serial_free). */
int cw_serial_new(const char *path, int baud, char parity, struct cw_serial **out);
void cw_serial_free(struct cw_serial *s);
int cw_serial_fd(const struct cw_serial *s);
/* True when the RS485 ioctl was accepted by the driver. */
int cw_serial_rs485_enabled(const struct cw_serial *s);

/* Writes all of buf, then waits until it left the UART (tcdrain). */
int cw_serial_write(struct cw_serial *s, const uint8_t *buf, size_t len);
/* Writes all of buf without waiting for it to leave the UART. The caller
 * knows when it will have: len characters after the write, the line being
 * idle (the drivers wait for a quiet line first). Saves the tcdrain ioctl
 * and, on a real UART, a wake-up per request. */
int cw_serial_write_nodrain(struct cw_serial *s, const uint8_t *buf, size_t len);
/* Reads what is available, waiting until deadline_us (cw_serial_now_us
 * clock) for the first byte. Returns the number of bytes (> 0),
 * CW_ERR_TIMEOUT if none came by the deadline, CW_ERR_IO on failure. */
int cw_serial_read(struct cw_serial *s, uint8_t *buf, size_t cap, int64_t deadline_us);
/* Drops pending input and output (tcflush TCIOFLUSH). */
int cw_serial_flush(struct cw_serial *s);

/* The same read on any non-blocking fd (the Modbus backend reads the port
 * that libmodbus opened). */
int cw_serial_read_fd(int fd, uint8_t *buf, size_t cap, int64_t deadline_us);
/* Reads the rest of a frame that is still arriving, in as few wake-ups as
 * possible: sleeps until due_us (when the bytes expected should all be in,
 * see cw_serial_due_us; capped at deadline_us), then reads up to cap bytes.
 * If nothing has come by then, waits for the next byte like
 * cw_serial_read_fd. Returns the number of bytes (> 0), CW_ERR_TIMEOUT if
 * none came by deadline_us, CW_ERR_IO on failure. Waking once per frame
 * instead of once per byte is what keeps the idle bus cheap: bytes trickle
 * in one character time apart (0.52 ms at 19200 baud). */
int cw_serial_read_due_fd(int fd, uint8_t *buf, size_t cap, int64_t due_us, int64_t deadline_us);
/* When `bytes` more characters, following each other from from_us, are all
 * in: bytes x char_us plus a margin of half a character (at least 200 us)
 * for a receiver or a scheduler running a little late. */
int64_t cw_serial_due_us(int64_t from_us, int bytes, int64_t char_us);

/* Reads and drops bytes until the line has been quiet for quiet_us, or until
 * deadline_us. Returns the number of bytes dropped. Used after a garbled
 * reply so that its tail does not poison the next transaction. */
int cw_serial_drain_fd(int fd, int64_t quiet_us, int64_t deadline_us);

/* Waits for a quiet line before transmitting: returns once no byte has
 * arrived for quiet_us, the first wait being first_wait_us (the rest of the
 * inter-frame gap; 0 = send now if nothing is pending). Bytes arriving
 * meanwhile (a late answer still on the wire) are read and dropped, so they
 * are neither cut in half by a flush nor taken for the next answer. Gives up
 * at deadline_us (a babbling line). Returns the number of bytes dropped; the
 * first keep_cap of them are copied to keep (may be NULL), *kept = count. */
int cw_serial_wait_quiet_fd(int fd, int64_t first_wait_us, int64_t quiet_us, int64_t deadline_us,
			    uint8_t *keep, size_t keep_cap, size_t *kept);

/* CLOCK_MONOTONIC in microseconds (inter-frame gaps are a few ms). */
int64_t cw_serial_now_us(void);
/* Sleeps until the monotonic time t_us (returns at once if past). */
void cw_serial_sleep_until_us(int64_t t_us);
/* Time one character takes on the wire at baud, 8N1 or 8E1/8O1, in us. */
int64_t cw_serial_char_us(int baud, char parity);

#endif
