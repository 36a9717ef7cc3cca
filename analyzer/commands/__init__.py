"""What a user types: the perfsentinel command and its subcommands."""
