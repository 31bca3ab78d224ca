"""`python -m mrirecon` is the same as the `mrirecon` command (used by torchrun)."""

from mrirecon.cli.app import main

raise SystemExit(main())
