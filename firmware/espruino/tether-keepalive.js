/*
 * tether keepalive for Espruino: the device side of shared/PROTOCOL.md (version 1).
 *
 * Plain ES5 as Espruino runs it: no classes, arrow functions, let/const, template strings,
 * spread or regular expressions (the uploader's comment stripper relies on the last).
 * See firmware/espruino/README.md for the design: how frames share the console with the
 * REPL, where state is kept, what each Espruino API is used for.
 *
 * Espruino APIs used: E.on('init'|'kill'), E.enableWatchdog(s, false), E.kickWatchdog(),
 * E.getConsole(), E.reboot(), require('Storage').read/write/readJSON/writeJSON, getTime(),
 * setInterval/changeInterval/clearInterval, setTimeout/clearTimeout (main loop, sleep timer,
 * beats), setDeepSleep(),
 * setWatch/clearWatch, peek32/poke32 (STM32 RCC_CSR reset flags), process.env.BOARD,
 * Serial.write / Serial.on('data') / Serial.removeListener, load().
 *
 * Top level only defines `tether` and registers the init/kill handlers, so that `save()`
 * stores no running timers and every boot starts the keepalive through E.on('init').
 */
var tether = (function () {
  var FW_MAJOR = 1;
  var FW_MINOR = 0;

  var START_SYSEX = 0xf0;
  var END_SYSEX = 0xf7;
  var SYSEX_TETHER = 0x0d;
  var VERSION = 1;
  var MAX_BODY = 64;
  var STATE_SIZE = 32;
  var MAX_CHUNK = 16;

  var HELLO_REQUEST = 0x01;
  var PING = 0x02;
  var STATE_READ = 0x03;
  var STATE_WRITE = 0x04;
  var CONFIG_SET = 0x05;
  var CONFIG_GET = 0x06;
  var BEATS = 0x07;
  var HELLO = 0x41;
  var PONG = 0x42;
  var STATE_DATA = 0x43;
  var SLEEPING = 0x44;
  var AWAKE = 0x45;
  var CONFIG = 0x46;
  var ERROR = 0x47;
  var BEAT = 0x48;

  var ERR_VERSION = 1;
  var ERR_CRC = 2;
  var ERR_TYPE = 3;
  var ERR_LENGTH = 4;
  var ERR_RANGE = 5;

  var CAUSE_POWER_ON = 0x01;
  var CAUSE_EXTERNAL = 0x02;
  var CAUSE_BROWN_OUT = 0x04;
  var CAUSE_WATCHDOG = 0x08;

  var HELLO_STATE_SURVIVED = 0x01;
  var HELLO_REPLY = 0x04;

  var CAP_WATCHDOG = 0x01;
  var CAP_SLEEP = 0x02;
  var CAP_STATE = 0x04;
  var CAP_BEATS = 0x10;

  var PONG_LEASE = 0x01;
  var PONG_SLEEP_PENDING = 0x02;
  var PONG_STATE_VALID = 0x04;
  var PONG_HOST_LOST = 0x08;

  var WAKE_TIMER = 0x01;
  var WAKE_SERIAL = 0x02;

  var POLICY_STAY = 0;
  var POLICY_SLEEP = 1;
  var POLICY_RESET = 2;

  var WATCHDOG_STEPS = [250, 500, 1000, 2000, 4000, 8000];
  /* The shortest watchdog period a host may set (PROTOCOL.md); 1-249 is refused. */
  var WATCHDOG_MIN_MS = 250;
  /* The shortest beat interval a host may ask for (PROTOCOL.md, "Beats"); 1-99 is refused. */
  var BEAT_MIN_MS = 100;

  var CONFIG_FILE = 'tether.cfg';
  var STATE_FILE = 'tether.st';
  var STATE_MAGIC = 'TS1';

  /* STM32 RCC_CSR (reset flags) address by process.env.BOARD. */
  var RCC_CSR = { PICO_R1_3: 0x40023874, ESPRUINOWIFI: 0x40023874, ESPRUINOBOARD: 0x40021024 };
  var RCC_RMVF = 0x01000000;
  var RCC_BORRSTF = 0x02000000;
  var RCC_PINRSTF = 0x04000000;
  var RCC_PORRSTF = 0x08000000;
  var RCC_SFTRSTF = 0x10000000;
  var RCC_IWDGRSTF = 0x20000000;
  var RCC_WWDGRSTF = 0x40000000;

  /* Runtime state; null while stopped. */
  var s = null;

  // ---- CRC-8/SMBUS (poly 0x07, init 0, no reflection, no xor) -------------------------

  var CRC_TABLE = (function () {
    var table = [];
    for (var i = 0; i < 256; i++) {
      var c = i;
      for (var bit = 0; bit < 8; bit++) c = c & 0x80 ? ((c << 1) ^ 0x07) & 0xff : (c << 1) & 0xff;
      table.push(c);
    }
    return table;
  })();

  function crc8(bytes, start, end) {
    if (start === undefined) start = 0;
    if (end === undefined) end = bytes.length;
    var c = 0;
    for (var i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff];
    return c;
  }

  // ---- time -----------------------------------------------------------------------------

  function nowMs() {
    return getTime() * 1000;
  }

  function u32(v) {
    v = Math.floor(v);
    if (!(v > 0)) return 0;
    return v > 4294967295 ? 4294967295 : v;
  }

  // ---- output ---------------------------------------------------------------------------

  function port() {
    if (s && s.serial) return s.serial;
    var name = E.getConsole();
    return name ? global[name] : undefined;
  }

  /* Septet writers append to a plain array (Espruino's Serial.write takes arrays). */
  function w7(out, v) {
    out.push(v & 0x7f);
  }
  function w14(out, v) {
    out.push(v & 0x7f, (v >> 7) & 0x7f);
  }
  function w32(out, v) {
    v = u32(v);
    out.push(v & 0x7f, (v >>> 7) & 0x7f, (v >>> 14) & 0x7f, (v >>> 21) & 0x7f, (v >>> 28) & 0x0f);
  }

  function send(type, payload) {
    var frame = [START_SYSEX, SYSEX_TETHER, VERSION, type];
    for (var i = 0; i < payload.length; i++) frame.push(payload[i]);
    var crc = crc8(frame, 2, frame.length);
    frame.push(crc & 0x7f, crc >> 7, END_SYSEX);
    var p = port();
    if (p) p.write(frame);
  }

  function sendError(code, type) {
    send(ERROR, [code & 0x7f, type & 0x7f]);
  }

  function sendHello(reply) {
    var p = [];
    w7(p, FW_MAJOR);
    w7(p, FW_MINOR);
    w32(p, s.bootId);
    w7(p, s.resetCause);
    w7(p, (s.stateSurvived ? HELLO_STATE_SURVIVED : 0) | (reply ? HELLO_REPLY : 0));
    w14(p, s.cfg.watchdogMs);
    w7(p, s.cfg.policy);
    w32(p, s.cfg.hostTimeoutMs);
    w7(p, capabilities());
    w7(p, STATE_SIZE);
    w7(p, s.name.length);
    for (var i = 0; i < s.name.length; i++) p.push(s.name.charCodeAt(i));
    send(HELLO, p);
  }

  function sendConfig() {
    var p = [];
    w14(p, s.cfg.watchdogMs);
    w7(p, s.cfg.policy);
    w32(p, s.cfg.hostTimeoutMs);
    w32(p, s.cfg.sleepMs);
    w32(p, s.cfg.awakeMs);
    send(CONFIG, p);
  }

  function sendState(offset, length) {
    var p = [offset, length];
    for (var i = 0; i < length; i++) {
      var b = s.regs[offset + i];
      p.push(b & 0x7f, b >> 7);
    }
    send(STATE_DATA, p);
  }

  /* Optional APIs: many Espruino builds lack some (Linux, nRF52, ESP32, ESP8266, RP2040 have no setDeepSleep). */
  function hasWatchdog() {
    return typeof E.enableWatchdog === 'function' && typeof E.kickWatchdog === 'function';
  }
  function hasDeepSleep() {
    return typeof setDeepSleep === 'function';
  }

  /* Beats need only setTimeout, which every build has. */
  function capabilities() {
    var caps = CAP_STATE | CAP_BEATS;
    if (hasWatchdog()) caps |= CAP_WATCHDOG;
    if (hasDeepSleep()) caps |= CAP_SLEEP;
    return caps;
  }

  function deepSleep(on) {
    if (hasDeepSleep()) setDeepSleep(on ? 1 : 0);
  }

  function kick() {
    if (s.wdMs && hasWatchdog()) E.kickWatchdog();
  }

  // ---- persistent configuration, boot id and registers ------------------------------------

  /* 0 stays 0 (off); at least WATCHDOG_MIN_MS rounds down to a step; callers refuse 1-249. */
  function roundWatchdog(ms) {
    var out = 0;
    for (var i = 0; i < WATCHDOG_STEPS.length; i++) if (ms >= WATCHDOG_STEPS[i]) out = WATCHDOG_STEPS[i];
    return out;
  }

  function defaults() {
    return { watchdogMs: 2000, policy: POLICY_STAY, hostTimeoutMs: 0, sleepMs: 8000, awakeMs: 1000 };
  }

  /*
   * A config read back from Storage, checked field by field (a hand-edited file, or one kept
   * from a board or module that could do more, must not wedge us): what this board cannot do
   * falls back to what it can.
   */
  function sanitize(c) {
    var d = defaults();
    if (!c || typeof c !== 'object') c = d;
    var wd = c.watchdogMs >= 0 ? Math.floor(c.watchdogMs) : d.watchdogMs;
    if (wd > 0 && wd < WATCHDOG_MIN_MS) wd = WATCHDOG_MIN_MS;
    var out = {
      watchdogMs: hasWatchdog() ? roundWatchdog(wd) : 0,
      policy: c.policy === 0 || c.policy === 1 || c.policy === 2 ? c.policy : d.policy,
      hostTimeoutMs: c.hostTimeoutMs >= 0 ? u32(c.hostTimeoutMs) : d.hostTimeoutMs,
      sleepMs: c.sleepMs >= 0 ? u32(c.sleepMs) : d.sleepMs,
      awakeMs: c.awakeMs >= 0 ? u32(c.awakeMs) : d.awakeMs
    };
    if (out.policy === POLICY_SLEEP && !hasDeepSleep()) out.policy = POLICY_STAY;
    return out;
  }

  function sameConfig(a, b) {
    return a.watchdogMs === b.watchdogMs && a.policy === b.policy && a.hostTimeoutMs === b.hostTimeoutMs && a.sleepMs === b.sleepMs && a.awakeMs === b.awakeMs;
  }

  /* One small Storage write; at boot (the boot id) and when the config really changes. */
  function storeConfig() {
    require('Storage').writeJSON(CONFIG_FILE, { v: 1, bootId: s.bootId, config: s.cfg });
  }

  function stateImage(regs) {
    var str = STATE_MAGIC;
    for (var i = 0; i < STATE_SIZE; i++) str += String.fromCharCode(regs[i]);
    return str + String.fromCharCode(crc8(regs, 0, STATE_SIZE));
  }

  /* Writes the registers to Storage unless it holds exactly them already (flash wears out). */
  function storeState() {
    var str = stateImage(s.regs);
    var storage = require('Storage');
    if (storage.read(STATE_FILE) === str) return;
    storage.write(STATE_FILE, str);
  }

  /*
   * Espruino clears every JS variable on any reset (even load()), so the registers are mirrored
   * in Storage on every write and read back at boot, unless the reset cause says the power was
   * lost (power-on, brown-out): that gives the AVR no-init semantics. With an unknown cause the
   * Storage copy is trusted.
   */
  function loadState(cause) {
    var regs = new Uint8Array(STATE_SIZE);
    var survived = false;
    if (!(cause & (CAUSE_POWER_ON | CAUSE_BROWN_OUT))) {
      var str = require('Storage').read(STATE_FILE);
      if (typeof str === 'string' && str.length === STATE_MAGIC.length + STATE_SIZE + 1 && str.substr(0, 3) === STATE_MAGIC) {
        var bytes = [];
        for (var i = 0; i < STATE_SIZE; i++) bytes.push(str.charCodeAt(3 + i) & 0xff);
        if (crc8(bytes, 0, STATE_SIZE) === str.charCodeAt(3 + STATE_SIZE)) {
          for (var j = 0; j < STATE_SIZE; j++) regs[j] = bytes[j];
          survived = true;
        }
      }
    }
    return { regs: regs, survived: survived };
  }

  // ---- reset cause ------------------------------------------------------------------------

  function readResetCause(opts) {
    try {
      if (typeof opts.resetCause === 'function') return opts.resetCause() & 0x0f;
      if (typeof ESP8266 !== 'undefined' && ESP8266.getResetInfo) {
        var r = ESP8266.getResetInfo().reason;
        if (r === 0) return CAUSE_POWER_ON;
        if (r === 1 || r === 3) return CAUSE_WATCHDOG;
        if (r === 6) return CAUSE_EXTERNAL;
        return 0;
      }
      var addr = RCC_CSR[process.env.BOARD];
      if (addr && typeof peek32 === 'function') {
        var f = peek32(addr);
        // RMVF clears the flags, so the next reset reports only its own cause.
        poke32(addr, f | RCC_RMVF);
        if (f & RCC_PORRSTF) return CAUSE_POWER_ON;
        if (f & (RCC_IWDGRSTF | RCC_WWDGRSTF)) return CAUSE_WATCHDOG;
        if (f & RCC_BORRSTF) return CAUSE_BROWN_OUT;
        if (f & RCC_SFTRSTF) return 0; // E.reboot(): a software reset is no protocol cause
        if (f & RCC_PINRSTF) return CAUSE_EXTERNAL;
      }
    } catch (e) {
      // Unknown board or API: the cause stays unknown.
    }
    return 0;
  }

  // ---- frame parser (never throws) ------------------------------------------------------------

  var P_IDLE = 0;
  var P_AFTER_START = 1;
  var P_IN_FRAME = 2;
  var P_DISCARD = 3;

  function byteIn(b) {
    b &= 0xff;
    if (s.pState === P_IN_FRAME) {
      if (b === END_SYSEX) {
        s.pState = P_IDLE;
        var body = s.body;
        s.body = [];
        handleFrame(body);
      } else if (b >= 0x80) {
        s.pState = P_IDLE;
        s.body = [];
        if (b === START_SYSEX) s.pState = P_AFTER_START;
      } else if (s.body.length >= MAX_BODY) {
        s.body = [];
        s.pState = P_DISCARD;
      } else {
        s.body.push(b);
      }
    } else if (s.pState === P_AFTER_START) {
      if (b === SYSEX_TETHER) {
        s.body = [b];
        s.pState = P_IN_FRAME;
      } else {
        s.pState = b === START_SYSEX ? P_AFTER_START : P_IDLE;
      }
    } else if (s.pState === P_DISCARD) {
      if (b === END_SYSEX) s.pState = P_IDLE;
      else if (b === START_SYSEX) s.pState = P_AFTER_START;
      else if (b >= 0x80) s.pState = P_IDLE;
    } else if (b === START_SYSEX) {
      s.pState = P_AFTER_START;
    }
  }

  /* Raw bytes: a string (what Serial 'data' events carry) or an array. */
  function feed(data) {
    if (!s) return;
    if (s.sleeping) wake(WAKE_SERIAL); // the UART was on after all (the wake byte itself is lost)
    try {
      var i;
      if (typeof data === 'string') for (i = 0; i < data.length; i++) byteIn(data.charCodeAt(i));
      else if (data && data.length !== undefined) for (i = 0; i < data.length; i++) byteIn(data[i]);
    } catch (e) {
      s.pState = P_IDLE;
      s.body = [];
    }
  }

  /* Frames carried through the REPL as hex text: `\x10tether.rx("F00D01...F7")`. */
  function rx(hex) {
    if (!s || typeof hex !== 'string') return;
    if (s.sleeping) wake(WAKE_SERIAL); // a whole line arrived: the console is awake anyway
    var bytes = [];
    for (var i = 0; i + 1 < hex.length; i += 2) {
      var b = parseInt(hex.substr(i, 2), 16);
      if (!isNaN(b)) bytes.push(b);
    }
    feed(bytes);
  }

  // ---- messages -------------------------------------------------------------------------------

  /* Payload length a type requires, -1 for unknown types (STATE_WRITE: its minimum). */
  function payloadLength(type) {
    if (type === HELLO_REQUEST || type === CONFIG_GET) return 0;
    if (type === PING) return 7;
    if (type === BEATS) return 14;
    if (type === STATE_READ || type === STATE_WRITE) return 2;
    if (type === CONFIG_SET) return 18;
    return -1;
  }

  function Reader(body) {
    return { b: body, i: 3, bad: false };
  }
  function r7(r) {
    return r.b[r.i++];
  }
  function r14(r) {
    var lo = r.b[r.i++];
    return lo + r.b[r.i++] * 128;
  }
  function r32(r) {
    var v = 0;
    var scale = 1;
    for (var k = 0; k < 5; k++) {
      var septet = r.b[r.i++];
      if (k === 4 && septet > 0x0f) r.bad = true;
      v += septet * scale;
      scale *= 128;
    }
    return v;
  }
  function rByte(r) {
    var lo = r.b[r.i++];
    var hi = r.b[r.i++];
    if (hi > 1) r.bad = true;
    return lo | ((hi & 1) << 7);
  }

  function rangeOk(offset, length) {
    return length >= 1 && length <= MAX_CHUNK && offset + length <= STATE_SIZE;
  }

  function handleFrame(body) {
    // body: 0D VER TYPE payload... CRC_LO CRC_HI
    var n = body.length;
    var type = n >= 3 ? body[2] : 0;
    // PING and BEATS are the host's presence, not activity: only the lease keeps us awake.
    if (type !== PING && type !== BEATS) s.quietSince = nowMs();
    if (n >= 2 && body[1] !== VERSION) return sendError(ERR_VERSION, type);
    if (n < 5) return sendError(ERR_LENGTH, type);
    var crc = crc8(body, 1, n - 2);
    if (body[n - 2] !== (crc & 0x7f) || body[n - 1] !== crc >> 7) return sendError(ERR_CRC, type);
    var need = payloadLength(type);
    if (need < 0) return sendError(ERR_TYPE, type);
    var len = n - 5;
    if (type === STATE_WRITE ? len < need : len !== need) return sendError(ERR_LENGTH, type);
    var r = Reader(body);
    if (type === HELLO_REQUEST) return sendHello(true);
    if (type === PING) return onPing(r);
    if (type === BEATS) return onBeats(r);
    if (type === STATE_READ) {
      var offset = r7(r);
      var count = r7(r);
      if (!rangeOk(offset, count)) return sendError(ERR_RANGE, type);
      return sendState(offset, count);
    }
    if (type === STATE_WRITE) return onStateWrite(r, len);
    if (type === CONFIG_SET) return onConfigSet(r);
    if (type === CONFIG_GET) return sendConfig();
  }

  function leaseActive(now) {
    if (s.leaseUntil !== 0 && now >= s.leaseUntil) s.leaseUntil = 0;
    return s.leaseUntil !== 0;
  }

  /* PONG and BEAT carry the same fields, read from the state in force at `now`. */
  function sendHeartbeat(type, seq, now) {
    var lease = leaseActive(now);
    var flags = PONG_STATE_VALID;
    if (lease) flags |= PONG_LEASE;
    else if (s.cfg.policy === POLICY_SLEEP) flags |= PONG_SLEEP_PENDING;
    if (s.lostSincePing) flags |= PONG_HOST_LOST;
    var p = [];
    w14(p, seq);
    w32(p, now - s.startedAt);
    w32(p, s.bootId);
    w7(p, flags);
    // Rounded: getTime() is fractional, and a PONG must report lease_ms exactly as asked.
    w32(p, lease ? Math.round(s.leaseUntil - now) : 0);
    send(type, p);
  }

  /* What PING and BEATS both do: the lease, the host's presence, the PONG. */
  function ping(seq, leaseMs, now) {
    s.hostSeen = true;
    s.hostLost = false;
    s.lastPing = now;
    s.leaseUntil = leaseMs > 0 ? now + leaseMs : 0;
    sendHeartbeat(PONG, seq, now);
    s.lostSincePing = false;
  }

  function onPing(r) {
    var seq = r14(r);
    var leaseMs = r32(r);
    if (r.bad) return sendError(ERR_RANGE, PING);
    ping(seq, leaseMs, nowMs());
  }

  /*
   * A PING that also asks for beats. interval_ms 1-99 is refused and changes nothing (no PONG,
   * the old schedule goes on); otherwise the new schedule replaces the old one, and interval 0
   * or for 0 just stops the beats.
   */
  function onBeats(r) {
    var seq = r14(r);
    var leaseMs = r32(r);
    var intervalMs = r14(r);
    var forMs = r32(r);
    if (r.bad || (intervalMs > 0 && intervalMs < BEAT_MIN_MS)) return sendError(ERR_RANGE, BEATS);
    var now = nowMs();
    ping(seq, leaseMs, now);
    stopBeats();
    if (intervalMs > 0 && forMs > 0) {
      s.beatSeq = seq;
      s.beatMs = intervalMs;
      s.beatsUntil = now + forMs;
      s.beatDue = now + intervalMs;
      s.beatTimer = setTimeout(beat, intervalMs);
    }
  }

  /*
   * One BEAT when due, then the next an interval after the one it was due at; a beat more than
   * an interval late is not made up (the next follows one interval after it). None past for_ms.
   */
  function beat() {
    if (!s) return;
    s.beatTimer = undefined;
    try {
      var now = nowMs();
      if (s.sleeping || s.hostLost || hostGone(now) || now > s.beatsUntil) return;
      sendHeartbeat(BEAT, s.beatSeq, now);
      var due = s.beatDue + s.beatMs;
      if (due <= now) due = now + s.beatMs;
      if (due > s.beatsUntil) return;
      s.beatDue = due;
      s.beatTimer = setTimeout(beat, due - now);
    } catch (e) {
      // A failing beat stops the beats; the host asks again.
    }
  }

  function stopBeats() {
    var t = s.beatTimer;
    s.beatTimer = undefined;
    if (t !== undefined) clearTimeout(t);
  }

  function onStateWrite(r, len) {
    var offset = r7(r);
    var length = r7(r);
    if (len !== 2 + 2 * length) return sendError(ERR_LENGTH, STATE_WRITE);
    if (!rangeOk(offset, length)) return sendError(ERR_RANGE, STATE_WRITE);
    var data = [];
    for (var i = 0; i < length; i++) data.push(rByte(r));
    if (r.bad) return sendError(ERR_RANGE, STATE_WRITE); // nothing stored
    var changed = false;
    for (var j = 0; j < length; j++) {
      if (s.regs[offset + j] !== data[j]) changed = true;
      s.regs[offset + j] = data[j];
    }
    if (changed) storeState();
    sendState(offset, length);
  }

  /*
   * Refused (ERROR out-of-range, nothing changes): a policy above reset, a watchdog of 1-249 ms,
   * and what this board cannot do (policy sleep without deep sleep, a watchdog without one).
   * Stored only when it differs from what is in force.
   */
  function onConfigSet(r) {
    var wd = r14(r);
    var c = { watchdogMs: roundWatchdog(wd), policy: r7(r), hostTimeoutMs: r32(r), sleepMs: r32(r), awakeMs: r32(r) };
    if (r.bad || c.policy > POLICY_RESET || (wd > 0 && wd < WATCHDOG_MIN_MS)) return sendError(ERR_RANGE, CONFIG_SET);
    if ((c.policy === POLICY_SLEEP && !hasDeepSleep()) || (wd > 0 && !hasWatchdog())) return sendError(ERR_RANGE, CONFIG_SET);
    if (!sameConfig(c, s.cfg)) {
      s.cfg = c;
      storeConfig();
      applyWatchdog();
    }
    sendConfig();
  }

  // ---- watchdog, main loop, sleep -------------------------------------------------------------

  /*
   * Manual-kick mode: only the main loop kicks, and only while it is healthy. Espruino cannot
   * turn a running watchdog off, so watchdog_ms 0 after it was armed keeps the old period.
   */
  function applyWatchdog() {
    var ms = s.cfg.watchdogMs;
    if (ms > 0 && hasWatchdog()) {
      E.enableWatchdog(ms / 1000, false);
      s.wdMs = ms;
    }
    kick();
    setLoopPeriod();
  }

  function awakeLoopMs() {
    var wd = s.wdMs || 1000;
    return Math.max(10, Math.min(100, Math.floor(wd / 4)));
  }

  /* Asleep, the loop only kicks the watchdog: as rarely as the watchdog allows. */
  function sleepLoopMs() {
    return s.wdMs ? Math.max(10, Math.floor(s.wdMs / 2)) : 1000;
  }

  function setLoopPeriod() {
    var ms = s.sleeping ? sleepLoopMs() : awakeLoopMs();
    if (s.loopId === undefined) s.loopId = setInterval(loop, ms);
    else if (ms !== s.loopMs) changeInterval(s.loopId, ms);
    s.loopMs = ms;
  }

  function healthy() {
    if (s.hostLost && s.cfg.policy === POLICY_RESET) return false;
    if (typeof s.opts.healthy === 'function') {
      try {
        return !!s.opts.healthy();
      } catch (e) {
        return false;
      }
    }
    return true;
  }

  function loop() {
    if (!s) return;
    try {
      step();
    } catch (e) {
      // A failing step must not leave the loop half done forever: it runs again next time.
    }
  }

  /* No PING (or BEATS) for host_timeout_ms since the last one. */
  function hostGone(now) {
    return s.hostSeen && !s.hostLost && s.cfg.hostTimeoutMs !== 0 && now - s.lastPing >= s.cfg.hostTimeoutMs;
  }

  function step() {
    var now = nowMs();
    if (!s.sleeping) {
      var lease = leaseActive(now);
      if (hostGone(now)) {
        s.hostLost = true;
        s.lostSincePing = true;
        s.leaseUntil = 0;
        lease = false;
        stopBeats();
      }
      if (!healthy()) {
        // No kick: the watchdog resets the board. Without a watchdog, reboot outright.
        if (!s.wdMs && s.hostLost && s.cfg.policy === POLICY_RESET) {
          if (typeof E.reboot === 'function') E.reboot();
          else load();
        }
        return;
      }
      kick();
      if (s.cfg.policy === POLICY_SLEEP && hasDeepSleep() && !lease && now - s.quietSince >= s.cfg.awakeMs) sleepNow(now);
      return;
    }
    kick();
  }

  function sleepNow(now) {
    var p = [];
    w32(p, s.cfg.sleepMs);
    // sleep_ms 0: no timer, asleep until woken.
    w7(p, s.cfg.sleepMs > 0 ? WAKE_TIMER | WAKE_SERIAL : WAKE_SERIAL);
    // Espruino enters STOP only once the TX buffer is empty, so the frame gets out.
    send(SLEEPING, p);
    stopBeats(); // after AWAKE the host asks again
    s.sleeping = true;
    s.sleptAt = now;
    s.pState = P_IDLE;
    s.body = [];
    if (s.rxPin !== undefined && typeof setWatch === 'function') {
      // The UART is off in deep sleep: the start bit of the host's wake byte wakes us.
      s.watchId = setWatch(function () {
        s.watchId = undefined;
        wake(WAKE_SERIAL);
      }, s.rxPin, { edge: 'falling', repeat: false });
    }
    if (s.cfg.sleepMs > 0) {
      s.wakeTimer = setTimeout(function () {
        s.wakeTimer = undefined;
        wake(WAKE_TIMER);
      }, s.cfg.sleepMs);
    }
    setLoopPeriod();
    deepSleep(true);
  }

  function wake(cause) {
    if (!s || !s.sleeping) return;
    s.sleeping = false;
    var watchId = s.watchId;
    var wakeTimer = s.wakeTimer;
    s.watchId = undefined;
    s.wakeTimer = undefined;
    deepSleep(false);
    if (watchId !== undefined && typeof clearWatch === 'function') clearWatch(watchId);
    if (wakeTimer !== undefined) clearTimeout(wakeTimer);
    var now = nowMs();
    var p = [];
    w32(p, now - s.sleptAt);
    w7(p, cause);
    send(AWAKE, p);
    s.quietSince = now; // stay awake at least awake_ms
    setLoopPeriod();
  }

  // ---- start / stop -----------------------------------------------------------------------------

  function boardName(opts) {
    var name = typeof opts.name === 'string' ? opts.name : 'tether-espruino ' + (process.env.BOARD || '');
    var out = '';
    for (var i = 0; i < name.length && out.length < 39; i++) {
      var c = name.charCodeAt(i);
      if (c >= 0x20 && c <= 0x7e) out += name.charAt(i);
    }
    return out;
  }

  /*
   * opts (all optional): name (HELLO name), serial (a Serial that carries raw frames when the
   * console is elsewhere; default: frames share the console), rx (the pin whose falling edge
   * wakes us from deep sleep; default B7, Serial1's RX on the Pico), resetCause (function
   * returning the HELLO reset_cause bits), healthy (function: false stops the watchdog kicks).
   */
  function start(opts) {
    if (s) stop();
    opts = opts || {};
    var storage = require('Storage');
    var saved = storage.readJSON(CONFIG_FILE, true) || {};
    var bootId = ((saved.bootId >= 0 ? Math.floor(saved.bootId) : 0) + 1) % 4294967296;
    var cause = readResetCause(opts);
    var state = loadState(cause);
    var now = nowMs();
    s = {
      opts: opts,
      cfg: sanitize(saved.config),
      bootId: bootId,
      resetCause: cause,
      regs: state.regs,
      stateSurvived: state.survived,
      name: boardName(opts),
      serial: opts.serial,
      rxPin: opts.rx !== undefined ? opts.rx : typeof B7 !== 'undefined' ? B7 : undefined,
      startedAt: now,
      quietSince: now,
      pState: P_IDLE,
      body: [],
      hostSeen: false,
      hostLost: false,
      lostSincePing: false,
      lastPing: 0,
      leaseUntil: 0,
      sleeping: false,
      sleptAt: 0,
      wdMs: 0,
      loopId: undefined,
      loopMs: 0,
      watchId: undefined,
      wakeTimer: undefined,
      beatTimer: undefined,
      beatSeq: 0,
      beatMs: 0,
      beatsUntil: 0,
      beatDue: 0,
      onData: undefined
    };
    storeConfig(); // the boot id: one small write per boot
    if (!state.survived) storeState(); // zeros: a stale copy must not come back later (written only if it differs)
    if (s.serial) {
      s.onData = function (data) {
        feed(data);
      };
      s.serial.on('data', s.onData);
    }
    sendHello(false);
    applyWatchdog();
  }

  /*
   * Stops everything; a running watchdog goes back to automatic kicking (reset()/upload safe).
   * Every step is tried on its own, so stop() always finishes: a failing one cannot leave the
   * module running.
   */
  function stop() {
    if (!s) return;
    var st = s;
    s = null;
    var steps = [
      function () {
        if (st.loopId !== undefined) clearInterval(st.loopId);
      },
      function () {
        if (st.watchId !== undefined && typeof clearWatch === 'function') clearWatch(st.watchId);
      },
      function () {
        if (st.wakeTimer !== undefined) clearTimeout(st.wakeTimer);
      },
      function () {
        if (st.beatTimer !== undefined) clearTimeout(st.beatTimer);
      },
      function () {
        if (st.sleeping) deepSleep(false);
      },
      function () {
        if (st.serial && st.onData) st.serial.removeListener('data', st.onData);
      },
      function () {
        if (st.wdMs && hasWatchdog()) E.enableWatchdog(st.wdMs / 1000, true);
      }
    ];
    for (var i = 0; i < steps.length; i++) {
      try {
        steps[i]();
      } catch (e) {
        // Go on with the rest.
      }
    }
  }

  return {
    options: {},
    start: start,
    stop: stop,
    rx: rx,
    feed: feed,
    crc8: crc8,
    running: function () {
      return s !== null;
    }
  };
})();

E.on('init', function () {
  tether.start(tether.options);
});
E.on('kill', function () {
  tether.stop();
});
