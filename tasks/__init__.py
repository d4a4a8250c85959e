"""The reusable units that the flows and the command line call."""
