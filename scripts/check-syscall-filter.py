#!/usr/bin/python3
"""Runs a command under the system call filter of packaging/tether.service, as systemd would.

    python3 scripts/check-syscall-filter.py [--unit packaging/tether.service] -- node bin/tether.js daemon ...

Reads the unit's SystemCallFilter= lines (an allow list, then ~ lines taking groups out of it)
and SystemCallErrorNumber=, expands the @groups with `systemd-analyze syscall-filter` (the
groups of the systemd installed here), loads the same seccomp filter with libseccomp
(Debian: python3-seccomp) and execs the command. So the daemon can be tried under its unit's
filter without a running systemd. Exit code 3 when the filter cannot be built here.
"""
import errno
import os
import re
import subprocess
import sys


def group_members(name, cache={}):
    if name in cache:
        return cache[name]
    out = subprocess.run(['systemd-analyze', 'syscall-filter', name], check=True, capture_output=True, text=True).stdout
    members = set()
    for line in out.splitlines()[1:]:
        entry = line.strip()
        if not entry or entry.startswith('#'):
            continue
        members |= group_members(entry) if entry.startswith('@') else {entry}
    cache[name] = members
    return members


def expand(entries):
    calls = set()
    for entry in entries:
        calls |= group_members(entry) if entry.startswith('@') else {entry}
    return calls


def unit_filter(path):
    allow, deny, errno_name = None, set(), None
    for raw in open(path):
        line = raw.strip()
        m = re.match(r'SystemCallFilter=(.*)$', line)
        if m:
            value = m.group(1).strip()
            if value.startswith('~'):
                calls = expand(value[1:].split())
                if allow is None:
                    deny |= calls
                else:
                    allow -= calls
            else:
                allow = (allow or set()) | expand(value.split())
        m = re.match(r'SystemCallErrorNumber=(\w+)$', line)
        if m:
            errno_name = m.group(1)
    if allow is None:
        raise SystemExit('the unit has no SystemCallFilter= allow list')
    return allow, errno_name


def main():
    args = sys.argv[1:]
    unit = os.path.join(os.path.dirname(__file__), '..', 'packaging', 'tether.service')
    if args[:1] == ['--unit']:
        unit, args = args[1], args[2:]
    if args[:1] == ['--']:
        args = args[1:]
    if not args:
        raise SystemExit(__doc__)
    try:
        import seccomp
    except ImportError:
        print('check-syscall-filter: python3-seccomp is not installed', file=sys.stderr)
        sys.exit(3)
    allow, errno_name = unit_filter(unit)
    # systemd kills on a filtered call unless SystemCallErrorNumber= names an errno.
    default = seccomp.ERRNO(getattr(errno, errno_name)) if errno_name else seccomp.KILL_PROCESS
    f = seccomp.SyscallFilter(defaction=default)
    allowed = 0
    for name in sorted(allow):
        try:
            f.add_rule(seccomp.ALLOW, name)
            allowed += 1
        except (RuntimeError, ValueError):
            pass  # not a system call of this architecture
    f.load()
    print(f'check-syscall-filter: {allowed} system calls allowed, others fail with {errno_name or "SIGSYS"}', file=sys.stderr)
    os.execvp(args[0], args)


main()
