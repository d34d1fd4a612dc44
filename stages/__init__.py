"""One module per subcommand: a frozen config dataclass plus run(config)."""
