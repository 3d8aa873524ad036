"""``python -m sweeprun``."""

from sweeprun._core.cli import console_main

raise SystemExit(console_main())
