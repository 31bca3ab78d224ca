"""`python -m mrirecon` is the same as the `mrirecon` command (used by torchrun)."""

from mrirecon.cli import main

raise SystemExit(main())
