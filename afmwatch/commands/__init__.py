"""One module per subcommand: `add_arguments(parser)` and `run(args) -> int`. Heavy imports
(torch, readers) go inside `run`, so building the parser stays fast."""
