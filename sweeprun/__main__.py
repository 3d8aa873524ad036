"""``python -m sweeprun``."""

from sweeprun.cli import console_main

raise SystemExit(console_main())
