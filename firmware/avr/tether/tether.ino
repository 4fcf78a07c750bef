// tether: Firmata 2.5 for the Arduino Uno with a keepalive extension
// (watchdog, lease, sleep, state that survives a reset). See shared/PROTOCOL.md.
#include "board.h"
#include "device_config.h"
#include "firmata_dispatch.h"
#include "firmata_parser.h"
#include "firmata_pins.h"
#include "keepalive.h"
#include "noinit_state.h"
#include "reset_cause.h"
#include "serial_link.h"
#include "watchdog.h"

// Bounds the bytes handled per loop pass so reporting and the watchdog
// kick keep running under a flood of input.
#define MAX_BYTES_PER_PASS 64
// Bounds the output of one pass too: once this much was sent, the rest of the
// input waits for the next pass (one query can still add its whole answer).
#define MAX_TX_BYTES_PER_PASS 64

#if !TETHER_PLAIN_FIRMATA
// The watchdog is kicked once per pass and nowhere else, so the longest pass must
// fit in the shortest period a host may set, twice over. Longest pass: the output
// budget, then the longest answer (the capability list, 155 bytes), the input
// reports (27 bytes) and a keepalive frame of keepalive_poll's own (at most 66 bytes:
// a BEAT is 25, SLEEPING 13, never both in one pass) leave at the baud
// rate; plus a CONFIG_SET stored in EEPROM (15 bytes of 3.4 ms).
#define WORST_PASS_TX_BYTES (MAX_TX_BYTES_PER_PASS + 155 + 27 + 66)
#define WORST_PASS_MS (WORST_PASS_TX_BYTES * 10000UL / SERIAL_LINK_BAUD + 15 * 34 / 10)
static_assert(2 * WORST_PASS_MS <= WATCHDOG_MIN_MS, "the main loop's longest pass does not fit the shortest watchdog period");
#endif

static FirmataParser parser;

void setup();
void loop();

#if TETHER_PLAIN_FIRMATA
// Test variant (build.sh --plain-firmata): behaves at boot as StandardFirmata
// does, so tests against it prove the case of a board running that sketch: it
// blinks its version on pin 13 for about 2 s before it reads serial (bytes wait
// in the RX buffer meanwhile), announces its version and firmware name unasked,
// then makes every digital pin a LOW output. Nothing survives a reset.
static void blink(uint8_t times) {
  for (uint8_t i = 0; i < times; i++) {
    digitalWrite(13, HIGH);
    delay(40);
    digitalWrite(13, LOW);
    delay(210);
  }
}

void setup() {
  serial_link_begin();
  pinMode(13, OUTPUT);
  blink(TETHER_FW_MAJOR);
  delay(250);
  blink(TETHER_FW_MINOR);
  firmata_parser_init(&parser);
  firmata_send_version();
  firmata_send_firmware_name();
  noinit_clear();
  pins_reset_to_defaults();
}
#else
void setup() {
  uint8_t cause = reset_cause();  // captured in .init3, watchdog already off
  device_config_begin();          // increments the boot id

  uint8_t flags = 0;
  bool soft_reset = (cause & (RESET_CAUSE_WATCHDOG | RESET_CAUSE_EXTERNAL)) &&
                    !(cause & (RESET_CAUSE_POWER_ON | RESET_CAUSE_BROWN_OUT));
  if (soft_reset && noinit_valid()) {
    pins_restore();
    flags = HELLO_FLAG_STATE_SURVIVED | HELLO_FLAG_PINS_RESTORED;
  } else {
    noinit_clear();
    pins_reset_to_defaults();
  }

  firmata_parser_init(&parser);
  serial_link_begin();
  firmata_send_version();
  firmata_send_firmware_name();
  keepalive_begin(cause, flags);
  keepalive_send_hello(false);
  watchdog_arm(g_config.watchdog_ms);
}
#endif

void loop() {
  uint16_t sent_before = serial_link_written();
  for (uint8_t n = 0; n < MAX_BYTES_PER_PASS; n++) {
    if ((uint16_t)(serial_link_written() - sent_before) >= MAX_TX_BYTES_PER_PASS) break;
    int byte = serial_link_read();
    if (byte < 0) break;
    switch (firmata_parser_feed(&parser, (uint8_t)byte)) {
      case FIRMATA_EVENT_COMMAND:
        keepalive_note_rx();
        firmata_dispatch_command(parser.command, parser.data);
        break;
      case FIRMATA_EVENT_SYSEX:
        // A host's PING (or BEATS) must not keep the device awake by itself: only the lease does.
        if (!keepalive_is_ping(parser.sysex, parser.sysex_length)) keepalive_note_rx();
        firmata_dispatch_sysex(parser.sysex, parser.sysex_length);
        break;
      default:
        break;
    }
  }
  pins_poll(millis());
#if !TETHER_PLAIN_FIRMATA
  keepalive_poll();
#endif
}
