"""`python -m runner.cli`: the `airlock` command."""

from runner.cli import main

raise SystemExit(main())
