#include "sleep_manager.h"
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>
#include "watchdog.h"

extern volatile unsigned long timer0_millis;  // Arduino's millis() counter (wiring.c)

static volatile bool watchdog_ticked;
static volatile bool rx_changed;

ISR(WDT_vect) { watchdog_ticked = true; }
ISR(PCINT2_vect) { rx_changed = true; }

SleepResult sleep_manager_sleep(uint32_t max_ms, uint16_t watchdog_ms) {
  SleepResult result = {0, 0};
  uint8_t saved_tccr0b = TCCR0B;
  uint8_t saved_adcsra = ADCSRA;

  cli();
  TCCR0B = 0;                // timer 0 would keep millis() running in an emulator
  ADCSRA &= ~_BV(ADEN);      // the ADC draws current even in power-down
  watchdog_ticked = false;
  rx_changed = false;
  PCIFR = _BV(PCIF2);        // drop a stale pin-change flag
  PCMSK2 |= _BV(PCINT16);
  PCICR |= _BV(PCIE2);
  // Watchdog in interrupt-only mode (WDE clear): a timeout wakes, never resets.
  wdt_reset();
  WDTCSR = _BV(WDCE) | _BV(WDE);
  WDTCSR = _BV(WDIE) | _BV(WDP2);  // WDTO_250MS, SLEEP_CHUNK_MS
  set_sleep_mode(SLEEP_MODE_PWR_DOWN);

  for (;;) {
    // Interrupts are off from here to sleep_cpu(): sei() takes effect only
    // after the next instruction, so a wake-up cannot slip in between.
    cli();
    if (watchdog_ticked) {
      watchdog_ticked = false;
      result.slept_ms += SLEEP_CHUNK_MS;
    }
    if (rx_changed) {
      result.wake_cause = WAKE_SERIAL;
      break;
    }
    if (max_ms != 0 && result.slept_ms >= max_ms) {
      result.wake_cause = WAKE_TIMER;
      break;
    }
    sleep_enable();
    sei();
    sleep_cpu();
    sleep_disable();
  }

  // Still with interrupts off.
  PCICR &= ~_BV(PCIE2);
  PCMSK2 &= ~_BV(PCINT16);
  watchdog_arm(watchdog_ms);  // back to reset mode, WDIE cleared
  TCCR0B = saved_tccr0b;
  ADCSRA = saved_adcsra;
  timer0_millis += result.slept_ms;
  sei();
  return result;
}
