"""``python -m entitlements``: the staff command line."""

from entitlements.cli.main import main

raise SystemExit(main())
