"""One module per subcommand, each with `run(cfg)`."""
