#include "keepalive.h"
#include <Arduino.h>
#include <avr/pgmspace.h>
#include "board.h"
#include "device_config.h"
#include "firmata_constants.h"
#include "keepalive_frame.h"
#include "noinit_state.h"
#include "serial_link.h"
#include "sleep_manager.h"
#include "watchdog.h"

// Message types.
#define MSG_HELLO_REQUEST 0x01
#define MSG_PING 0x02
#define MSG_STATE_READ 0x03
#define MSG_STATE_WRITE 0x04
#define MSG_CONFIG_SET 0x05
#define MSG_CONFIG_GET 0x06
#define MSG_BEATS 0x07
#define MSG_HELLO 0x41
#define MSG_PONG 0x42
#define MSG_STATE_DATA 0x43
#define MSG_SLEEPING 0x44
#define MSG_AWAKE 0x45
#define MSG_CONFIG 0x46
#define MSG_ERROR 0x47
#define MSG_BEAT 0x48

#define ERR_BAD_VERSION 1
#define ERR_BAD_CRC 2
#define ERR_UNKNOWN_TYPE 3
#define ERR_BAD_LENGTH 4
#define ERR_OUT_OF_RANGE 5

#define PONG_LEASE_ACTIVE 0x01
#define PONG_SLEEP_PENDING 0x02
#define PONG_STATE_VALID 0x04
#define PONG_HOST_LOST 0x08

#define CAPABILITIES 0x1F  // watchdog, sleep, state registers, pin restore, beats
#define BEAT_INTERVAL_MIN_MS 100  // BEATS interval_ms 1-99 is refused
#define STATE_CHUNK_MAX 16

static const char firmware_name[] PROGMEM = TETHER_FW_NAME;

static uint8_t boot_reset_cause;
static uint8_t hello_flags;

static bool host_seen;   // a PING arrived since boot
static bool host_lost;   // and then none for host_timeout_ms
static bool lost_since_ping;
static uint32_t last_ping_ms;

static bool lease_active;
static uint32_t lease_start_ms;
static uint32_t lease_length_ms;

static uint32_t quiet_since_ms;  // last RX byte or wake-up

// BEATS schedule. Ordinary RAM, so a reset stops the beats; cleared too when the device
// sleeps and when the host is lost.
static bool beats_active;
static uint16_t beats_seq;          // of the BEATS that set up the schedule
static uint16_t beats_interval_ms;  // at least BEAT_INTERVAL_MIN_MS while active
static uint32_t beats_start_ms;     // when the BEATS arrived
static uint32_t beats_for_ms;       // beats run until this long after beats_start_ms
static uint32_t beat_due_ms;        // when the last beat was due (beats_start_ms at first)

void keepalive_begin(uint8_t reset_cause, uint8_t boot_flags) {
  boot_reset_cause = reset_cause;
  hello_flags = boot_flags;
  quiet_since_ms = millis();
}

void keepalive_note_rx() { quiet_since_ms = millis(); }

bool keepalive_is_ping(const uint8_t *body, uint8_t length) {
  return length >= 3 && body[0] == FIRMATA_SYSEX_TETHER && (body[2] == MSG_PING || body[2] == MSG_BEATS);
}

void keepalive_send_hello(bool reply) {
  frame_begin(MSG_HELLO);
  frame_u7(TETHER_FW_MAJOR);
  frame_u7(TETHER_FW_MINOR);
  frame_u32(device_config_boot_id());
  frame_u7(boot_reset_cause);
  frame_u7(hello_flags | (reply ? HELLO_FLAG_REPLY : 0));
  frame_u14(g_config.watchdog_ms);
  frame_u7(g_config.policy);
  frame_u32(g_config.host_timeout_ms);
  frame_u7(CAPABILITIES);
  frame_u7(TETHER_STATE_SIZE);
  frame_str_P(firmware_name);
  frame_end();
}

static void send_error(uint8_t code, uint8_t type) {
  frame_begin(MSG_ERROR);
  frame_u7(code);
  frame_u7(type);
  frame_end();
}

static void send_config() {
  frame_begin(MSG_CONFIG);
  frame_u14(g_config.watchdog_ms);
  frame_u7(g_config.policy);
  frame_u32(g_config.host_timeout_ms);
  frame_u32(g_config.sleep_ms);
  frame_u32(g_config.awake_ms);
  frame_end();
}

static void send_state(uint8_t offset, uint8_t length) {
  frame_begin(MSG_STATE_DATA);
  frame_u7(offset);
  frame_u7(length);
  for (uint8_t i = 0; i < length; i++) frame_byte(g_noinit.registers[offset + i]);
  frame_end();
}

static bool lease_running(uint32_t now) {
  if (lease_active && now - lease_start_ms >= lease_length_ms) lease_active = false;
  return lease_active;
}

static bool state_range_ok(uint8_t offset, uint8_t length) {
  return length >= 1 && length <= STATE_CHUNK_MAX && offset + length <= TETHER_STATE_SIZE;
}

// PONG and BEAT carry the same fields.
static void send_heartbeat(uint8_t type, uint16_t seq, uint32_t now) {
  bool lease = lease_running(now);
  uint8_t flags = 0;
  if (lease) flags |= PONG_LEASE_ACTIVE;
  else if (g_config.policy == POLICY_SLEEP) flags |= PONG_SLEEP_PENDING;
  if (noinit_valid()) flags |= PONG_STATE_VALID;
  if (lost_since_ping) flags |= PONG_HOST_LOST;

  frame_begin(type);
  frame_u14(seq);
  frame_u32(now);
  frame_u32(device_config_boot_id());
  frame_u7(flags);
  frame_u32(lease ? lease_length_ms - (now - lease_start_ms) : 0);
  frame_end();
}

// PING, and BEATS (a PING that also sets up the beats schedule).
static void handle_ping(FrameReader *r, uint8_t type) {
  uint16_t seq = frame_read_u14(r);
  uint32_t lease_ms = frame_read_u32(r);
  uint16_t interval_ms = 0;
  uint32_t for_ms = 0;
  if (type == MSG_BEATS) {
    interval_ms = frame_read_u14(r);
    for_ms = frame_read_u32(r);
  }
  // Refused before anything changes: no lease, no presence, no PONG, beats as they were.
  if (r->out_of_range || (interval_ms != 0 && interval_ms < BEAT_INTERVAL_MIN_MS)) {
    send_error(ERR_OUT_OF_RANGE, type);
    return;
  }
  uint32_t now = millis();
  host_seen = true;
  host_lost = false;
  last_ping_ms = now;
  lease_active = lease_ms != 0;
  lease_start_ms = now;
  lease_length_ms = lease_ms;

  send_heartbeat(MSG_PONG, seq, now);
  lost_since_ping = false;

  if (type == MSG_BEATS) {  // a later BEATS replaces the schedule; a plain PING leaves it
    beats_active = interval_ms != 0 && for_ms != 0;
    beats_seq = seq;
    beats_interval_ms = interval_ms;
    beats_start_ms = now;
    beats_for_ms = for_ms;
    beat_due_ms = now;
  }
}

static void handle_state_write(FrameReader *r) {
  uint8_t offset = frame_read_u7(r);
  uint8_t length = frame_read_u7(r);
  if (r->remaining != 2 * length) {
    send_error(ERR_BAD_LENGTH, MSG_STATE_WRITE);
    return;
  }
  if (!state_range_ok(offset, length)) {
    send_error(ERR_OUT_OF_RANGE, MSG_STATE_WRITE);
    return;
  }
  // Decode into a scratch copy first: a bad septet must leave the registers untouched.
  uint8_t data[STATE_CHUNK_MAX];
  for (uint8_t i = 0; i < length; i++) data[i] = frame_read_byte(r);
  if (r->out_of_range) {
    send_error(ERR_OUT_OF_RANGE, MSG_STATE_WRITE);
    return;
  }
  for (uint8_t i = 0; i < length; i++) g_noinit.registers[offset + i] = data[i];
  noinit_commit();
  send_state(offset, length);
}

static void handle_config_set(FrameReader *r) {
  DeviceConfig c;
  uint16_t watchdog_ms = frame_read_u14(r);
  c.watchdog_ms = watchdog_round_ms(watchdog_ms);
  c.policy = frame_read_u7(r);
  c.host_timeout_ms = frame_read_u32(r);
  c.sleep_ms = frame_read_u32(r);
  c.awake_ms = frame_read_u32(r);
  // A watchdog shorter than WATCHDOG_MIN_MS is refused, not rounded to "off".
  if (r->out_of_range || c.policy > POLICY_RESET || !watchdog_ms_allowed(watchdog_ms)) {
    send_error(ERR_OUT_OF_RANGE, MSG_CONFIG_SET);
    return;
  }
  g_config = c;
  device_config_store();
  watchdog_arm(g_config.watchdog_ms);
  send_config();
}

// Payload length a type requires; 0xFF for unknown types. STATE_WRITE's
// depends on its own length field and is checked by its handler.
static uint8_t payload_length(uint8_t type) {
  switch (type) {
    case MSG_HELLO_REQUEST:
    case MSG_CONFIG_GET:
      return 0;
    case MSG_PING:
      return 2 + 5;
    case MSG_BEATS:
      return 2 + 5 + 2 + 5;
    case MSG_STATE_READ:
    case MSG_STATE_WRITE:
      return 2;  // minimum for STATE_WRITE
    case MSG_CONFIG_SET:
      return 2 + 1 + 5 + 5 + 5;
    default:
      return 0xFF;
  }
}

void keepalive_handle_frame(const uint8_t *body, uint8_t length) {
  // body: 0D VER TYPE payload... CRC_LO CRC_HI
  uint8_t type = length >= 3 ? body[2] : 0;
  if (length >= 2 && body[1] != KEEPALIVE_VERSION) {
    send_error(ERR_BAD_VERSION, type);
    return;
  }
  if (length < 5) {
    send_error(ERR_BAD_LENGTH, type);
    return;
  }
  uint8_t crc = frame_crc(body + 1, length - 3);
  if (body[length - 2] != (crc & 0x7F) || body[length - 1] != (crc >> 7)) {
    send_error(ERR_BAD_CRC, type);
    return;
  }
  uint8_t required = payload_length(type);
  if (required == 0xFF) {
    send_error(ERR_UNKNOWN_TYPE, type);
    return;
  }
  uint8_t payload = length - 5;
  bool length_ok = type == MSG_STATE_WRITE ? payload >= required : payload == required;
  if (!length_ok) {
    send_error(ERR_BAD_LENGTH, type);
    return;
  }

  FrameReader reader;
  frame_reader_init(&reader, body + 3, payload);
  switch (type) {
    case MSG_HELLO_REQUEST:
      keepalive_send_hello(true);
      break;
    case MSG_PING:
    case MSG_BEATS:
      handle_ping(&reader, type);
      break;
    case MSG_STATE_READ: {
      uint8_t offset = frame_read_u7(&reader);
      uint8_t count = frame_read_u7(&reader);
      if (state_range_ok(offset, count)) send_state(offset, count);
      else send_error(ERR_OUT_OF_RANGE, type);
      break;
    }
    case MSG_STATE_WRITE:
      handle_state_write(&reader);
      break;
    case MSG_CONFIG_SET:
      handle_config_set(&reader);
      break;
    case MSG_CONFIG_GET:
      send_config();
      break;
  }
}

// Once per pass: the next BEAT when it is due. Unsigned differences from the reference
// times, so millis() wrapping around is harmless.
static void beats_poll(uint32_t now) {
  if (!beats_active) return;
  if (now - beats_start_ms > beats_for_ms) {
    beats_active = false;
    return;
  }
  uint32_t late = now - beat_due_ms;
  if (late < beats_interval_ms) return;
  // Due. A beat more than one interval late is not made up: the next follows an interval after it.
  beat_due_ms = late >= 2UL * beats_interval_ms ? now : beat_due_ms + beats_interval_ms;
  send_heartbeat(MSG_BEAT, beats_seq, now);
}

static void sleep_now() {
  beats_active = false;  // the host asks again after AWAKE
  // sleep_ms 0: no timer, asleep until woken by the host.
  frame_begin(MSG_SLEEPING);
  frame_u32(g_config.sleep_ms);
  frame_u7(g_config.sleep_ms != 0 ? WAKE_TIMER | WAKE_SERIAL : WAKE_SERIAL);
  frame_end();
  serial_link_flush();  // the frame must be out before the UART stops

  SleepResult result = sleep_manager_sleep(g_config.sleep_ms, g_config.watchdog_ms);

  frame_begin(MSG_AWAKE);
  frame_u32(result.slept_ms);
  frame_u7(result.wake_cause);
  frame_end();
  quiet_since_ms = millis();  // stay awake at least awake_ms
}

void keepalive_poll() {
  uint32_t now = millis();
  bool lease = lease_running(now);
  if (host_seen && !host_lost && g_config.host_timeout_ms != 0 &&
      now - last_ping_ms >= g_config.host_timeout_ms) {
    host_lost = true;
    lost_since_ping = true;
    lease_active = lease = false;
    beats_active = false;
  }
  // Policy `reset`: a lost host stops the kicking, so the watchdog resets us; so
  // does a transmitter that stalled (the host can no longer hear us).
  watchdog_set_suspended((host_lost && g_config.policy == POLICY_RESET) || serial_link_stalled());
  watchdog_kick();

  if (g_config.policy == POLICY_SLEEP && !lease && now - quiet_since_ms >= g_config.awake_ms) {
    sleep_now();
    return;
  }
  // At most one keepalive frame of its own per pass: a BEAT, or SLEEPING above.
  beats_poll(now);
}
