#!/usr/bin/env bash
# Builds the tether firmware for the Arduino Uno (ATmega328P @ 16 MHz) with
# plain avr-gcc and the Debian-packaged Arduino core, no IDE needed.
#
#   ./build.sh          build into build/ and update tether.hex
#   ./build.sh --check  rebuild in a temp dir; fail if tether.hex is stale
#   ./build.sh --plain-firmata FILE
#                       build a test variant without the keepalive extension
#                       (Firmata only, like StandardFirmata) into FILE
#   ./build.sh --baud N FILE
#                       build a variant talking at N baud (e.g. 115200, 1000000) into FILE
#
# The output depends only on the sources and the toolchain, not on where the
# checkout lives: every compile runs with relative file names.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SKETCH_DIR="$HERE/tether"
HEX="$HERE/tether.hex"
ARDUINO_AVR="${ARDUINO_AVR:-/usr/share/arduino/hardware/arduino/avr}"
CORE_DIR="$ARDUINO_AVR/cores/arduino"
VARIANT_DIR="$ARDUINO_AVR/variants/standard"

FLASH_MAX=32256  # 32 KiB minus the 512-byte Optiboot section
RAM_MAX=2048

die() { echo "build.sh: $*" >&2; exit 1; }

MODE=build
VARIANT_FLAGS=()
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  --plain-firmata)
    MODE=variant
    VARIANT_OUT="${2:-}"
    [ -n "$VARIANT_OUT" ] || die "--plain-firmata needs an output file"
    VARIANT_FLAGS=(-DTETHER_PLAIN_FIRMATA=1) ;;
  --baud)
    MODE=variant
    [[ "${2:-}" =~ ^[0-9]+$ ]] || die "--baud needs a number, e.g. --baud 115200 FILE"
    VARIANT_OUT="${3:-}"
    [ -n "$VARIANT_OUT" ] || die "--baud N needs an output file"
    VARIANT_FLAGS=(-DSERIAL_LINK_BAUD="$2"L) ;;
  -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option '$1' (use --check, --plain-firmata FILE, --baud N FILE or nothing)" ;;
esac

for tool in avr-gcc avr-g++ avr-gcc-ar avr-objcopy avr-size; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found. Install the AVR toolchain, e.g. 'apt-get install gcc-avr avr-libc binutils-avr arduino-core-avr'."
done
[ -f "$CORE_DIR/Arduino.h" ] ||
  die "Arduino AVR core not found at $CORE_DIR. Install 'arduino-core-avr' or set ARDUINO_AVR."

if [ "$MODE" = check ] || [ "$MODE" = variant ]; then
  OUT="$(mktemp -d)"
  trap 'rm -rf "$OUT"' EXIT
else
  OUT="$HERE/build"
  rm -rf "$OUT"
  mkdir -p "$OUT"
fi
mkdir -p "$OUT/core" "$OUT/sketch"

COMMON=(-mmcu=atmega328p -DF_CPU=16000000L -DARDUINO=10819 -DARDUINO_AVR_UNO -DARDUINO_ARCH_AVR
        -DDECIMAL_DIG=__DECIMAL_DIG__ -Os -flto -ffunction-sections -fdata-sections
        -Wall -Wno-unused-function "${VARIANT_FLAGS[@]}")
CFLAGS=("${COMMON[@]}" -std=gnu11)
CXXFLAGS=("${COMMON[@]}" -std=gnu++11 -fno-exceptions -fno-threadsafe-statics)
INCLUDES=(-I "$CORE_DIR" -I "$VARIANT_DIR")

JOBS="$(nproc 2>/dev/null || echo 2)"
pids=()
wait_all() {
  local failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  pids=()
  [ "$failed" = 0 ] || die "compilation failed"
}
run() {  # run a compile in the background, at most $JOBS at a time
  "$@" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$JOBS" ]; then wait_all; fi
}

# Arduino core, compiled from inside its directory so only relative names are seen.
(
  cd "$CORE_DIR"
  for src in *.c *.cpp *.S; do
    obj="$OUT/core/$src.o"
    case "$src" in
      *.c)   run avr-gcc "${CFLAGS[@]}" "${INCLUDES[@]}" -c "$src" -o "$obj" ;;
      *.cpp) run avr-g++ "${CXXFLAGS[@]}" "${INCLUDES[@]}" -c "$src" -o "$obj" ;;
      *.S)   run avr-gcc "${COMMON[@]}" -x assembler-with-cpp "${INCLUDES[@]}" -c "$src" -o "$obj" ;;
    esac
  done
  wait_all
)
rm -f "$OUT/core.a"
avr-gcc-ar rcs "$OUT/core.a" "$OUT"/core/*.o

# Sketch: the .ino is plain C++ once Arduino.h is included first (its
# prototypes are written out in the file, so no IDE preprocessing is needed).
(
  cd "$SKETCH_DIR"
  { echo '#include <Arduino.h>'; echo '#line 1 "tether.ino"'; cat tether.ino; } > "$OUT/sketch/tether.ino.cpp"
  run avr-g++ "${CXXFLAGS[@]}" "${INCLUDES[@]}" -iquote . -c "$OUT/sketch/tether.ino.cpp" -o "$OUT/sketch/tether.ino.o"
  for src in *.cpp; do
    run avr-g++ "${CXXFLAGS[@]}" "${INCLUDES[@]}" -c "$src" -o "$OUT/sketch/$src.o"
  done
  wait_all
)

avr-gcc -mmcu=atmega328p -Os -flto -fuse-linker-plugin -Wl,--gc-sections \
  -o "$OUT/tether.elf" "$OUT"/sketch/*.o "$OUT/core.a" -lm
avr-objcopy -O ihex -R .eeprom "$OUT/tether.elf" "$OUT/tether.hex"

# Sizes: flash = .text + .data (initialisers), RAM = .data + .bss + .noinit.
read -r text data bss noinit < <(avr-size -A "$OUT/tether.elf" |
  awk '$1==".text"{t=$2} $1==".data"{d=$2} $1==".bss"{b=$2} $1==".noinit"{n=$2} END{print t+0, d+0, b+0, n+0}')
flash=$((text + data))
ram=$((data + bss + noinit))
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", 100*a/b}'; }

if [ "$MODE" = variant ]; then
  cp "$OUT/tether.hex" "$VARIANT_OUT"
  echo "wrote variant (${VARIANT_FLAGS[*]}) to $VARIANT_OUT (flash $flash bytes)"
  exit 0
fi

if [ "$MODE" = check ]; then
  [ -f "$HEX" ] || die "no committed tether.hex to check; run ./build.sh"
  if cmp -s "$OUT/tether.hex" "$HEX"; then
    echo "tether.hex is up to date (flash $flash bytes, ram $ram bytes)"
    exit 0
  fi
  die "tether.hex differs from a fresh build of the sources: run firmware/avr/build.sh and commit tether.hex"
fi

cp "$OUT/tether.hex" "$HEX"
avr-size -C --mcu=atmega328p "$OUT/tether.elf" | sed '/^$/d'
echo "flash $flash bytes ($(pct "$flash" $FLASH_MAX)% of $FLASH_MAX), ram $ram bytes ($(pct "$ram" $RAM_MAX)% of $RAM_MAX)"
echo "wrote $HEX"
