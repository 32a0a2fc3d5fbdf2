"""The tally the client scripts print: one line per check, then `NAME: N passed, N failed`."""

import sys
import traceback


class Checks:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, what, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {detail}" if detail else ""))

    def run(self, what, fn):
        """Runs `fn` as one check: any exception it raises fails it, with its traceback."""
        try:
            fn()
        except Exception:  # noqa: BLE001 - every deviation is reported, none stops the run
            self.check(what, False)
            traceback.print_exc(file=sys.stdout)
        else:
            self.check(what, True)

    def summary(self):
        """The closing line; the exit status: 0 only if something was checked and all passed."""
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 and self.passed > 0 else 1
