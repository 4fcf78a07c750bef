#include "reset_cause.h"
#include <avr/io.h>
#include <avr/wdt.h>

// .noinit because .bss is zeroed in .init4, after the capture below.
static uint8_t captured_cause __attribute__((section(".noinit")));

// Runs in .init3, before the C runtime and before main(): after a watchdog
// reset the watchdog stays enabled at its shortest period, so it must be
// switched off before the runtime spends time clearing RAM. Naked and in an
// init section: the code falls through to .init4, there is no return.
extern "C" void reset_cause_capture() __attribute__((naked, used, section(".init3")));
extern "C" void reset_cause_capture() {
  uint8_t from_bootloader;
  // Optiboot clears MCUSR and hands its old value over in r2; read r2 first,
  // before the compiler could reuse it.
  asm volatile("mov %0, r2" : "=r"(from_bootloader));
  uint8_t cause = MCUSR;
  if (cause == 0) cause = from_bootloader;
  captured_cause = cause & 0x0F;
  MCUSR = 0;
  wdt_disable();
}

uint8_t reset_cause() { return captured_cause; }
